#!/usr/bin/env bash
# The proto toolchain, pinned, for generating stubs, linting the proto and testing the clients:
#   .tools/bin/protoc-gen-go, protoc-gen-go-grpc  Go stubs (scripts/generate_stubs.sh)
#   .tools/bin/grpcurl                            tests/test_grpcurl.py
#   .tools/bin/buf                                `make buf-lint` (buf.yaml)
#   .tools/bin/helm                               `make lint`, tests/test_helm.py (deploy/helm)
#   protoc + well-known .proto files (Debian)     the Rust client's build.rs (tonic-prost-build)
# The Python and Go stubs use grpcio-tools' protoc (pinned in pyproject.toml): one protoc for
# every committed stub. Go tools (helm too, built from its module) come from the Go module proxy,
# buf from the npm registry
# (its package carries the binary); nothing is downloaded from anywhere else. Idempotent: a tool
# already at its pinned version is left alone. `make setup` runs this; `make example` does not
# (one local render needs none of it). Toolchains missing or too old are installed first: Go
# from the Go module proxy, Rust and Node.js from Debian. Anything that cannot be installed is
# named, and the script exits non-zero.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tools="$repo/.tools"
bin="$tools/bin"

PROTOC_GEN_GO=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
GRPCURL=github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
HELM=helm.sh/helm/v3/cmd/helm@v3.19.0
BUF_VERSION=1.75.0
APT_PACKAGES=(protobuf-compiler libprotobuf-dev)

mkdir -p "$bin"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

# apt-get install PACKAGE... unless installed; a package that does not install is named.
apt_install() {
  local missing=() failed=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  $sudo apt-get update -qq || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" || true
  for p in "${missing[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || failed+=("$p")
  done
  if [ ${#failed[@]} -gt 0 ]; then
    echo "install_tools: could not install ${failed[*]} (apt-get install failed)" >&2
    exit 1
  fi
}

# Whether version $1 >= $2 (dotted numbers).
at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]; }

# Go: the clients/go module's `go` line is the least version. A Go from 1.21 on fetches a newer
# toolchain itself, from the Go module proxy, when a go.mod asks for one; an older one (Debian
# bookworm's 1.19), or none, is replaced by the toolchain module golang.org/toolchain,
# downloaded through that older Go from the same proxy (sum-checked) into .tools/go.
GO_TOOLCHAIN=go1.26.8
go_wants=$(awk '$1 == "go" { print $2 }' "$repo/clients/go/go.mod")
go_version() { "$1" env GOVERSION 2>/dev/null | sed 's/^go//'; }
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ -x "$tools/go/bin/go" ]; then
  go="$tools/go/bin/go"
elif ! command -v "$go" >/dev/null || ! at_least "$(go_version "$go")" 1.21; then
  if ! command -v "$go" >/dev/null; then
    apt_install golang-go
    go=/usr/bin/go
  fi
  echo "install_tools: $GO_TOOLCHAIN (golang.org/toolchain) into .tools/go"
  cache="$tools/gomod"
  platform="$("$go" env GOOS)-$("$go" env GOARCH)"
  dir=$(GOMODCACHE="$cache" GOFLAGS=-modcacherw "$go" mod download -json \
    "golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.$platform" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  if [ -z "$dir" ] || [ ! -f "$dir/bin/go" ]; then
    echo "install_tools: could not download Go $GO_TOOLCHAIN from the Go module proxy" >&2
    exit 1
  fi
  rm -rf "$tools/go"
  mv "$dir" "$tools/go"
  rm -rf "$cache"
  # Module zips carry no file modes: the toolchain's programs are made executable here.
  chmod +x "$tools/go/bin/"* "$tools/go/pkg/tool/"*/*
  go="$tools/go/bin/go"
fi
if ! at_least "$(go_version "$go")" 1.21; then
  echo "install_tools: Go $go_wants or newer not found (set GO=/path/to/go)" >&2
  exit 1
fi

# Rust: the crate's rust-version is the least; Debian bookworm's rustc and cargo (1.63) are
# older, its rustc-web and cargo-web (from bookworm's updates) are new enough.
rust_wants=$(awk -F'"' '/^rust-version/ { print $2 }' "$repo/clients/rust/Cargo.toml")
cargo=${CARGO:-$(command -v cargo || echo "$HOME/.cargo/bin/cargo")}
rustc_version() { "$(dirname "$1")/rustc" --version 2>/dev/null | awk '{ print $2 }'; }
if ! command -v "$cargo" >/dev/null || ! at_least "$(rustc_version "$cargo")" "$rust_wants"; then
  apt_install cargo-web rustc-web
  cargo=/usr/bin/cargo
  if ! at_least "$(rustc_version "$cargo")" "$rust_wants"; then
    echo "install_tools: Rust $rust_wants or newer not found (Debian's cargo-web gave" \
      "$(rustc_version "$cargo")); set CARGO=/path/to/cargo" >&2
    exit 1
  fi
fi

# npm, for buf's package (and VideoFlow's bundle: scripts/build_npm.sh).
if ! command -v npm >/dev/null; then apt_install nodejs npm; fi

# go install PKG@VERSION unless .tools/bin/NAME was built from exactly that module version.
go_tool() {
  local spec=$1 name version
  name=$(basename "${spec%@*}")
  version=${spec#*@}
  if [ -x "$bin/$name" ] &&
    "$go" version -m "$bin/$name" 2>/dev/null | awk '$1 == "mod" { print $3 }' | grep -qx "$version"; then
    return
  fi
  echo "install_tools: $spec"
  GOBIN="$bin" GOFLAGS=-mod=mod "$go" install "$spec"
}

go_tool "$PROTOC_GEN_GO"
go_tool "$PROTOC_GEN_GO_GRPC"
go_tool "$GRPCURL"
go_tool "$HELM"

if ! "$bin/buf" --version 2>/dev/null | grep -qx "$BUF_VERSION"; then
  echo "install_tools: @bufbuild/buf@$BUF_VERSION"
  rm -rf "$tools/npm"
  npm install --silent --no-audit --no-fund --prefix "$tools/npm" "@bufbuild/buf@$BUF_VERSION"
  ln -sf "../npm/node_modules/@bufbuild/buf/bin/buf" "$bin/buf"
  "$bin/buf" --version >/dev/null
fi

apt_install "${APT_PACKAGES[@]}"
