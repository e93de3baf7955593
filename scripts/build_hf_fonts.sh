#!/usr/bin/env bash
# The faces HyperFrames compositions resolve their fonts to (agent/hf_fonts.py; README, "From
# HyperFrames"): the @fontsource packages pinned by agent/hf_fonts/package-lock.json, their
# faces copied by build.mjs into agent/hf_fonts/dist/, which is not committed. Installs Debian's
# Node.js and npm first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../agent/hf_fonts"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm
fi
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
