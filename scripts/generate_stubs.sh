#!/usr/bin/env bash
# Regenerates every committed stub from proto/. CI runs it and fails on drift.
# Usage: [PYTHON=python-with-grpcio-tools] scripts/generate_stubs.sh [OUT_ROOT]  (default: this repo)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo}
py_out="$out/clients/python"
mkdir -p "$py_out/framefleet/v1"
"${PYTHON:-python3}" -m grpc_tools.protoc -I "$repo/proto" \
  --python_out="$py_out" --pyi_out="$py_out" --grpc_python_out="$py_out" \
  "$repo/proto/framefleet/v1/framefleet.proto"
printf '"""Generated from proto/framefleet/v1 by scripts/generate_stubs.sh; do not edit."""\n' \
  > "$py_out/framefleet/v1/__init__.py"
