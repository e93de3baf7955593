#!/usr/bin/env bash
# System packages from Debian: Chromium's headless shell (Playwright drives it; it never
# downloads a browser), fonts for templates, and PostgreSQL for the store tests.
set -euo pipefail
packages=(chromium-headless-shell fonts-dejavu-core postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# An unprivileged user for the test that runs an agent, and so Chromium's sandbox, as non-root
# (tests/test_security_page.py); only root can add it, and only root's test run needs it.
if [ "$(id -u)" -eq 0 ] && ! id framefleet-test >/dev/null 2>&1; then
  useradd --system --no-create-home --shell /usr/sbin/nologin framefleet-test
fi
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
