#!/usr/bin/env bash
# Builds Prometheus (the server only) from the Go module proxy at the version pinned in versions.env,
# into its own cache folder next to the control plane's; an already-built binary is kept. Prints the
# bin folder. `make controlplane` calls it after build.sh; the harness (prometheus.py) calls it when
# the cache lacks the binary.
#
# Why a real Prometheus: the canary analysis talks to Prometheus's HTTP API, and its answers (vector
# shapes, NaN, error JSON) are what the client must be tested against. Why from the Go module: this
# machine has Go and the module proxy but no release downloads. Why its own folder: the control
# plane's folder names every version it holds, so adding Prometheus there would rebuild Kubernetes.
# The web UI's assets are not built (only the HTTP API is used); without the `builtinassets` tag the
# server serves the API as usual.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
dest="$cache_root/prometheus-v${PROMETHEUS_VERSION}"
bin="$dest/bin"
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN=local
log() { printf '[build-prometheus] %s\n' "$*" >&2; }

# Two test sessions starting at once must not build into the same folder together: one waits.
if command -v flock >/dev/null; then
  exec 9>"$dest/.build.lock"
  flock -n 9 || { log "another build holds $dest/.build.lock; waiting for it"; flock 9; }
fi

if [ ! -x "$bin/prometheus" ] && { [ -z "${PROMETHEUS_BINARY:-}" ] || [ ! -x "$PROMETHEUS_BINARY" ]; }; then
  # The module has no replace directives, so `go install mod@version` takes it with its own go.sum.
  log "building Prometheus v$PROMETHEUS_VERSION (the server only): several minutes on 2 cores"
  # The Go module v0.3MM.P is Prometheus 3.MM.P; the server reports the latter.
  minor=$(echo "$PROMETHEUS_VERSION" | cut -d. -f2); patch=$(echo "$PROMETHEUS_VERSION" | cut -d. -f3)
  ld="-s -w -X github.com/prometheus/common/version.Version=${minor:0:1}.$((10#${minor:1})).$patch"
  ld="$ld -X github.com/prometheus/common/version.Revision=modeldeploy-build"
  ld="$ld -X github.com/prometheus/common/version.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
  GOBIN="$bin" go install -ldflags "$ld" "github.com/prometheus/prometheus/cmd/prometheus@v$PROMETHEUS_VERSION"
fi

echo "$bin"
