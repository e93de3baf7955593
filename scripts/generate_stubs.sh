#!/usr/bin/env bash
# Regenerates every committed stub from proto/. CI runs it and fails on drift.
# Usage: [PYTHON=python-with-grpcio-tools] scripts/generate_stubs.sh [OUT_ROOT]  (default: this repo)
#   framefleet/v1  Python (grpcio-tools' protoc and plugins)
#   clients/go/framefleetv1       Go (the same protoc, with protoc-gen-go and protoc-gen-go-grpc
#                                 from .tools/bin: scripts/install_tools.sh)
#   clients/rust/proto            the proto itself, vendored into the Rust crate, which generates
#                                 its stubs at build time (clients/rust/build.rs) from its own copy
#                                 so it builds outside this repository (cargo package, git deps)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo}
proto="$repo/proto/framefleet/v1/framefleet.proto"
protoc=("${PYTHON:-python3}" -m grpc_tools.protoc -I "$repo/proto")
tools="$repo/.tools/bin"

py_out="$out"
mkdir -p "$py_out/framefleet/v1"
"${protoc[@]}" --python_out="$py_out" --pyi_out="$py_out" --grpc_python_out="$py_out" "$proto"
printf '"""Generated from proto/framefleet/v1 by scripts/generate_stubs.sh; do not edit."""\n' \
  > "$py_out/framefleet/v1/__init__.py"

for plugin in protoc-gen-go protoc-gen-go-grpc; do
  if [ ! -x "$tools/$plugin" ]; then
    echo "generate_stubs: $tools/$plugin is missing: run scripts/install_tools.sh (make setup)" >&2
    exit 1
  fi
done
go_out="$out/clients/go"
go_module=github.com/framefleet/framefleet/clients/go
mkdir -p "$go_out/framefleetv1"
rm -f "$go_out"/framefleetv1/*.pb.go
"${protoc[@]}" \
  --plugin=protoc-gen-go="$tools/protoc-gen-go" --plugin=protoc-gen-go-grpc="$tools/protoc-gen-go-grpc" \
  --go_out="$go_out" --go_opt=module="$go_module" \
  --go-grpc_out="$go_out" --go-grpc_opt=module="$go_module" \
  "$proto"

rust_proto="$out/clients/rust/proto/framefleet/v1"
mkdir -p "$rust_proto"
cp "$proto" "$rust_proto/framefleet.proto"
