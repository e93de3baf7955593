#!/usr/bin/env bash
# A Kubernetes API server for tests/test_kube.py (pytest -k kube), with nothing from outside the
# package registries: kube-apiserver built from k8s.io/kubernetes through a wrapper Go module,
# etcd from Debian, and the CRDs the chart uses from their projects' Go modules. Cached outside
# the repository (a clean clone builds once per machine):
#   $FRAMEFLEET_KUBE_CACHE (default ~/.cache/framefleet/kube)/bin/kube-apiserver
#   .../crds/*.yaml   KEDA's ScaledObject, the Prometheus operator's ServiceMonitor,
#                     cert-manager's Issuer
# The build takes about 6 minutes on 2 cores the first time; later runs return at once.
set -euo pipefail
KUBERNETES=v1.34.0
STAGING=v0.34.0      # the k8s.io/* staging modules released with $KUBERNETES
KEDA=github.com/kedacore/keda/v2@v2.17.2
PROMETHEUS_OPERATOR=github.com/prometheus-operator/prometheus-operator@v0.85.0
CERT_MANAGER=github.com/cert-manager/cert-manager@v1.18.2

cache=${FRAMEFLEET_KUBE_CACHE:-$HOME/.cache/framefleet/kube}
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
mkdir -p "$cache/bin" "$cache/crds"

if ! command -v etcd >/dev/null; then
  echo "install_kube: etcd-server (Debian)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null
fi

apiserver="$cache/bin/kube-apiserver"
if [ ! -x "$apiserver" ] || ! "$apiserver" --version 2>/dev/null | grep -q "$KUBERNETES"; then
  echo "install_kube: kube-apiserver $KUBERNETES (a few minutes, once)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mod=$("$go" mod download -json "k8s.io/kubernetes@$KUBERNETES" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # k8s.io/kubernetes replaces its staging modules with its own directories, which a module
  # that requires it cannot see: point each at the released module of the same version.
  {
    echo "module framefleet.local/kube"
    echo "go 1.24.0"
    echo "require k8s.io/kubernetes $KUBERNETES"
    grep -o 'k8s.io/[a-z-]* => ./staging' "$mod" | awk -v v="$STAGING" '{ print "replace " $1 " => " $1 " " v }'
  } >"$work/go.mod"
  cat >"$work/tools.go" <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOF
  (
    cd "$work"
    GOFLAGS=-mod=mod "$go" mod tidy -e >/dev/null 2>&1 || true
    GOFLAGS=-mod=mod "$go" build -trimpath -o "$apiserver.tmp" \
      -ldflags "-X k8s.io/component-base/version.gitVersion=$KUBERNETES" \
      k8s.io/kubernetes/cmd/kube-apiserver
  )
  mv "$apiserver.tmp" "$apiserver"
fi

# CRDs: the YAML each project ships in its module.
module_dir() { "$go" mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'; }
crd() {
  local spec=$1 file=$2 name=$3
  [ -s "$cache/crds/$name" ] && return
  echo "install_kube: $name from $spec"
  # cert-manager's file doubles as a Helm template: its templated lines (labels, comments) go.
  grep -v '{{' "$(module_dir "$spec")/$file" >"$cache/crds/$name.tmp"
  mv "$cache/crds/$name.tmp" "$cache/crds/$name"
}
crd "$KEDA" config/crd/bases/keda.sh_scaledobjects.yaml scaledobjects.yaml
crd "$PROMETHEUS_OPERATOR" example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml servicemonitors.yaml
crd "$CERT_MANAGER" deploy/crds/crd-issuers.yaml issuers.yaml
echo "install_kube: $cache"
