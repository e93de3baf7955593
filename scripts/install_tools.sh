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
# already at its pinned version is left alone. `make setup` runs this.
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

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [ ! -x "$go" ] && ! command -v "$go" >/dev/null; then
  echo "install_tools: Go not found (set GO=/path/to/go)" >&2
  exit 1
fi

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

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
