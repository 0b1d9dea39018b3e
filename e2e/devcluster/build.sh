#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok, helm) from the Go module proxy at the versions pinned in versions.env, into a
# cache folder outside the repository. Already-built binaries are kept; prints the bin folder.
#
# Why from Go modules: this machine has no Docker engine and no download sites, only Go and the
# module proxy. k8s.io/kubernetes and etcd's server module carry replace directives, so
# `go install` refuses them; each is built from a throw-away wrapper module instead.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${MODELDEPLOY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modeldeploy}
dest="$cache_root/k8s-v${K8S_VERSION}_etcd-v${ETCD_VERSION}_kwok-v${KWOK_VERSION}_helm-v${HELM_VERSION}"
bin="$dest/bin"
mkdir -p "$bin"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false" GOTOOLCHAIN=local
log() { printf '[build-controlplane] %s\n' "$*" >&2; }

# Two test sessions starting at once must not build into the same folder together: one waits.
if command -v flock >/dev/null; then
  exec 9>"$dest/.build.lock"
  flock -n 9 || { log "another build holds $dest/.build.lock; waiting for it"; flock 9; }
fi

# Scratch wrapper modules, removed however the script ends.
scratch=()
trap 'rm -rf ${scratch[@]+"${scratch[@]}"}' EXIT
new_scratch() { work=$(mktemp -d); scratch+=("$work"); }  # sets $work (a $(...) call would lose scratch+=)

# A binary is there when the cache has it, or when KUBEBUILDER_ASSETS (the envtest convention: a folder
# of ready binaries) provides it; the harness then takes it from there, so it is not built.
have() { [ -x "$bin/$1" ] || { [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$1" ]; }; }
need() { for b in "$@"; do have "$b" || return 0; done; return 1; }

k8s_minor=$(echo "$K8S_VERSION" | cut -d. -f2)
if need kube-apiserver kube-controller-manager kube-scheduler kubectl; then
  log "building Kubernetes v$K8S_VERSION (apiserver, controller-manager, scheduler, kubectl): many minutes on 2 cores"
  new_scratch
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module modeldeploy.local/k8sbuild"
    echo "go 1.26"
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    # Every staging module the real go.mod replaces with ./staging/... gets its published v0 twin.
    grep -oE '^\s*k8s.io/[a-z0-9-]+ => \./staging/src/k8s.io/[a-z0-9-]+' "$gomod" | awk '{print $1}' | sort -u |
      while read -r m; do echo "replace $m => $m v0.$k8s_minor.$(echo "$K8S_VERSION" | cut -d. -f3)"; done
  } > "$work/go.mod"
  log "wrapper module replaces $(grep -c '^replace' "$work/go.mod") staging modules"
  echo 'package main' > "$work/main.go"
  ts=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=$ts -X $pkg.gitCommit=modeldeploy-build"
  done
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go build -ldflags "$ld" -o "$bin/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
fi

if need etcd; then
  log "building etcd v$ETCD_VERSION"
  new_scratch
  printf 'module modeldeploy.local/etcdbuild\ngo 1.26\nrequire go.etcd.io/etcd/server/v3 v%s\n' "$ETCD_VERSION" > "$work/go.mod"
  echo 'package main' > "$work/main.go"
  (cd "$work" && GOFLAGS="$GOFLAGS -mod=mod" go build -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
fi

if need kwok; then
  log "building kwok v$KWOK_VERSION"
  GOBIN="$bin" go install -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
fi

if need helm; then
  log "building helm v$HELM_VERSION"
  GOBIN="$bin" go install -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
fi

echo "$bin"
