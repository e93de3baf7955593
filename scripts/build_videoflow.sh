#!/usr/bin/env bash
# VideoFlow's browser runtime for VideoJSON jobs (README, "VideoJSON"): the npm packages pinned
# by agent/videoflow/package-lock.json, bundled by esbuild into agent/videoflow/dist/, which is
# not committed. Installs Debian's Node.js and npm first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../agent/videoflow"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm
fi
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
