#!/usr/bin/env bash
# System packages from Debian, listed here and nowhere else: the container image
# (deploy/Dockerfile) runs this script too, so a machine set up for development and the image
# install the same runtime packages (tests/test_image.py checks the Dockerfile does).
#   scripts/install_system_deps.sh            runtime + test packages (make setup, CI)
#   scripts/install_system_deps.sh --image    runtime + image packages (deploy/Dockerfile)
#   scripts/install_system_deps.sh --list [--image]   print the packages, install nothing
set -euo pipefail
# What coordinator and agent need at run time: Chromium's headless shell (Playwright drives
# it; it never downloads a browser) and fonts for templates.
runtime=(chromium-headless-shell fonts-dejavu-core)
# The image's own: the interpreter for the venv, an init that forwards signals, TLS roots.
image=(python3 tini ca-certificates)
# Development and CI only: PostgreSQL for the store tests.
test=(postgresql)

mode=dev list=0
for arg in "$@"; do
  case $arg in
    --image) mode=image ;;
    --list) list=1 ;;
    *) echo "usage: $0 [--image] [--list]" >&2; exit 2 ;;
  esac
done
if [ "$mode" = image ]; then packages=("${runtime[@]}" "${image[@]}"); else packages=("${runtime[@]}" "${test[@]}"); fi
if [ "$list" = 1 ]; then printf '%s\n' "${packages[@]}"; exit 0; fi

missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# An unprivileged user for the test that runs an agent, and so Chromium's sandbox, as non-root
# (tests/test_security_page.py); only root can add it, and only root's test run needs it.
if [ "$mode" = dev ] && [ "$(id -u)" -eq 0 ] && ! id framefleet-test >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin framefleet-test
fi
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
