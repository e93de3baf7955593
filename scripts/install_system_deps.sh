#!/usr/bin/env bash
# System packages from Debian: Chromium's headless shell (Playwright drives it; it never
# downloads a browser), fonts for templates, and PostgreSQL for the store tests.
set -euo pipefail
packages=(chromium-headless-shell fonts-dejavu-core postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
