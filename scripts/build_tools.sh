#!/usr/bin/env bash
# Builds the lint tools pinned in tools.env (actionlint, which checks .github/workflows) from the Go
# module proxy into the same cache folder as the local control plane; an already-built tool is kept.
# Prints the bin folder. `make actionlint` calls it.
#
# Why from the Go module: the workflows cannot run here, and this machine has Go and the module
# proxy but no release downloads; the module's go.sum pins every dependency.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tools.env
source "$here/tools.env"

cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
bin="$cache_root/tools-actionlint-v${ACTIONLINT_VERSION}/bin"
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN=local
log() { printf '[build-tools] %s\n' "$*" >&2; }

if [ ! -x "$bin/actionlint" ]; then
  log "building actionlint v$ACTIONLINT_VERSION"
  GOBIN="$bin" go install \
    -ldflags "-s -w -X github.com/rhysd/actionlint.version=v$ACTIONLINT_VERSION" \
    "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
fi

echo "$bin"
