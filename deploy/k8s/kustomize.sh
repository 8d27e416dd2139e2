#!/usr/bin/env bash
# Render a kustomization offline: `bash deploy/k8s/kustomize.sh deploy/k8s/overlays/production`.
# Uses `kustomize` or `kubectl kustomize` when present; otherwise builds kustomize once from the Go module
# proxy into the per-machine cache (needs Go), so a fresh machine can run the deploy tests by itself.
set -euo pipefail
KUSTOMIZE_VERSION="${APEV_KUSTOMIZE_VERSION:-v5.5.0}"
cache="${APEV_CACHE_DIR:-$HOME/.cache/apev}/bin"
if command -v kustomize >/dev/null 2>&1; then
  exec kustomize build "$@"
elif [ -x "$cache/kustomize" ]; then
  exec "$cache/kustomize" build "$@"
elif command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
  exec kubectl kustomize "$@"
elif command -v go >/dev/null 2>&1; then
  echo "kustomize: building sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION into $cache (once)" >&2
  mkdir -p "$cache"
  GOBIN="$cache" GOFLAGS=-mod=mod go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
  exec "$cache/kustomize" build "$@"
else
  echo "kustomize: none of kustomize, kubectl or go is installed; install one (apt-get install golang-go)" >&2
  exit 127
fi
