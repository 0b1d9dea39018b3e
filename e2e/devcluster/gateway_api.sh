#!/usr/bin/env bash
# Fetches the Gateway API's standard-channel CRDs (HTTPRoute and its siblings, and the
# ValidatingAdmissionPolicy that guards their upgrades) at the version pinned in versions.env, from
# the Go module proxy, into ~/.cache/modeldeploy/gateway-api-v<version>/crds. Prints that folder.
#
# Why from the Go module: the module sigs.k8s.io/gateway-api carries config/crd/standard/, the same
# files as the release's standard-install.yaml, and the module proxy is the one download this
# machine has. Already-fetched files are kept.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
dest="$cache_root/gateway-api-v${GATEWAY_API_VERSION}/crds"
log() { printf '[gateway-api] %s\n' "$*" >&2; }

if ! ls "$dest"/gateway.networking.k8s.io_httproutes.yaml >/dev/null 2>&1; then
  log "fetching sigs.k8s.io/gateway-api v$GATEWAY_API_VERSION (standard-channel CRDs)"
  mkdir -p "$cache_root"
  dir=$(cd "$cache_root" && GOTOOLCHAIN=local go mod download -json "sigs.k8s.io/gateway-api@v$GATEWAY_API_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  src="$dir/config/crd/standard"
  [ -f "$src/gateway.networking.k8s.io_httproutes.yaml" ] || { log "no HTTPRoute CRD in $src"; exit 1; }
  tmp=$(mktemp -d "$cache_root/.gateway-api.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  cp "$src"/*.yaml "$tmp/"
  chmod u+w "$tmp"/*.yaml  # the module cache is read-only
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest"
  mv "$tmp" "$dest"  # whole or nothing: a concurrent reader never sees half the files
  log "$(find "$dest" -name "*.yaml" | wc -l) files in $dest"
fi
echo "$dest"
