#!/usr/bin/env bash
# Builds one of the agent's browser-side assets from npm packages pinned by its package-lock.json
# into DIR/dist/, which is not committed (`npm ci`, then the package's `build` script):
#   scripts/build_npm.sh framefleet/agent/videoflow   VideoFlow's runtime for VideoJSON jobs, bundled by esbuild
#   scripts/build_npm.sh framefleet/agent/hf_fonts    the @fontsource faces HyperFrames compositions resolve to
# Installs Debian's Node.js and npm first when they are missing.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
cd "$(dirname "$0")/../$1"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm
fi
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
