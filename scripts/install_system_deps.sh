#!/usr/bin/env bash
# System packages from Debian, listed here and nowhere else: the container image
# (deploy/Dockerfile) runs this script too, so a machine set up for development and the image
# install the same runtime packages (tests/test_image.py checks the Dockerfile does).
#   scripts/install_system_deps.sh --example  what `make example` needs: Python and Chromium
#   scripts/install_system_deps.sh            that, plus the test suite's (make setup, CI)
#   scripts/install_system_deps.sh --image    runtime + image packages (deploy/Dockerfile)
#   scripts/install_system_deps.sh --list [MODE]   print the packages, install nothing
# A package that cannot be installed is named, and the script exits non-zero.
set -euo pipefail
# What coordinator and agent need at run time: Chromium's headless shell (Playwright drives
# it; it never downloads a browser), fonts for templates, and libatomic, which Playwright's Node
# driver loads at start (a bare bookworm lacks it: the agent dies with "Connection closed while
# reading from the driver").
runtime=(chromium-headless-shell fonts-dejavu-core libatomic1)
# A machine that builds the venv itself (make example, make setup): the interpreter and venv.
venv=(python3 python3-venv)
# The image's own: the interpreter for the venv, an init that forwards signals, TLS roots.
image=(python3 tini ca-certificates)
# Development and CI only: PostgreSQL for the store tests; podman and its helpers for the
# container tests (tests/test_containers.py), with mmdebstrap to make their base image
# locally, since no registry is assumed.
test=(postgresql podman buildah runc uidmap fuse-overlayfs slirp4netns mmdebstrap)

mode=dev list=0
for arg in "$@"; do
  case $arg in
    --image) mode=image ;;
    --example) mode=example ;;
    --list) list=1 ;;
    *) echo "usage: $0 [--example|--image] [--list]" >&2; exit 2 ;;
  esac
done
case $mode in
  image) packages=("${runtime[@]}" "${image[@]}") ;;
  example) packages=("${runtime[@]}" "${venv[@]}") ;;
  dev) packages=("${runtime[@]}" "${venv[@]}" "${test[@]}") ;;
esac
if [ "$list" = 1 ]; then printf '%s\n' "${packages[@]}"; exit 0; fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
missing=()
for p in "${packages[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ -n "$sudo" ] && ! command -v sudo >/dev/null; then
    echo "install_system_deps: not root and no sudo: cannot install ${missing[*]}" >&2
    exit 1
  fi
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" || true
  failed=()
  for p in "${missing[@]}"; do
    installed "$p" || failed+=("$p")
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "install_system_deps: could not install ${failed[*]} (apt-get install failed)" >&2
    exit 1
  fi
fi

if [ "$mode" = dev ] && [ "$(id -u)" -eq 0 ]; then
  # An unprivileged user for the test that runs an agent, and so Chromium's sandbox, as non-root
  # (tests/test_security_page.py); only root can add it, and only root's test run needs it.
  id framefleet-test >/dev/null 2>&1 ||
    useradd --system --no-create-home --shell /usr/sbin/nologin framefleet-test
  # podman as root on this kind of machine: crun fails (setrlimit RLIMIT_NOFILE, then "cgroups
  # in hybrid mode"); runc with lower ulimits works. Written once, left alone if present.
  conf=/etc/containers/containers.conf
  if ! grep -qs '^runtime *= *"runc"' "$conf"; then
    if grep -qsv '^\s*\(#.*\)\?$' "$conf"; then
      echo "install_system_deps: $conf has settings of its own: add runtime = \"runc\" under" \
        "[engine] and default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]" \
        "under [containers] by hand" >&2
      exit 1
    fi
    mkdir -p /etc/containers
    cat >>"$conf" <<'CONF'
# framefleet (scripts/install_system_deps.sh): runc, and ulimits runc can set here.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
CONF
  fi
fi
