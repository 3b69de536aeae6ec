#!/usr/bin/env bash
# scripts/install-helm.sh — build Helm from source with the Go toolchain (no binary download, no
# Docker) and cache it; prints the path of the helm binary on stdout.
#
#   HELM_VERSION=v3.22.0        the version built (`go install helm.sh/helm/v3/cmd/helm@VERSION`)
#   HELM_CACHE_DIR=~/.cache/aepiot-stream/helm-$HELM_VERSION   where the binary is kept (GOBIN)
#
# The first build fetches Helm's modules through the Go module proxy and compiles them (minutes on
# a small machine); later calls return at once.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
HELM_CACHE_DIR="${HELM_CACHE_DIR:-$HOME/.cache/aepiot-stream/helm-$HELM_VERSION}"
HELM_BIN="$HELM_CACHE_DIR/helm"

log() { echo "install-helm: $*" >&2; }

if [[ -x "$HELM_BIN" ]] && "$HELM_BIN" version --short 2>/dev/null | grep -Fxq "$HELM_VERSION"; then
  echo "$HELM_BIN"
  exit 0
fi

command -v go >/dev/null || { log "error: Go is needed to build helm (https://go.dev/dl/)"; exit 1; }
mkdir -p "$HELM_CACHE_DIR"
log "building helm $HELM_VERSION with $(go version | awk '{print $3}') into $HELM_CACHE_DIR (first time only)"
start=$(date +%s)
# Stamp what Helm's release builds stamp (its Makefile): the version, and the Kubernetes version
# `helm template`/`lint` assume (client-go v0.X.Y → 1.X). Without them helm says "v3.22" and
# assumes Kubernetes 1.20.
gomod="$(cd / && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')"
k8s_minor="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod" | head -1)"
[[ -n "$k8s_minor" ]] || { log "error: no k8s.io/client-go version in $gomod"; exit 1; }
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
# CGO off: a static binary, no C toolchain involved.
GOBIN="$HELM_CACHE_DIR" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
log "built in $(( $(date +%s) - start )) s"
"$HELM_BIN" version --short >&2
echo "$HELM_BIN"
