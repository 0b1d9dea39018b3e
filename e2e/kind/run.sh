#!/usr/bin/env bash
# The whole stack on kind, for users with Docker: build both images, load them into a kind cluster,
# install the chart, seed the `models` claim, apply the examples and wait until they are READY
# (the scenarios of e2e/test_examples.py, through KUBECONFIG). Needs docker, kind, helm, kubectl.
# It cannot run on the project's CI machine, which has no Docker engine (see README.md here).
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER=${CLUSTER:-modeldeploy}
TAG=${TAG:-0.1.0}
NS=${NS:-modeldeploy-demo}
OPERATOR_IMAGE=ghcr.io/modeldeploy/operator:$TAG
OPTIMIZER_IMAGE=ghcr.io/modeldeploy/optimizer:$TAG  # the default optimization.image of a ModelDeployment
export KUBECONFIG=${KUBECONFIG:-$PWD/.cache/kind-$CLUSTER.kubeconfig}
mkdir -p "$(dirname "$KUBECONFIG")"

docker build -t "$OPERATOR_IMAGE" -f Dockerfile .
docker build -t "$OPTIMIZER_IMAGE" -f Dockerfile.optimizer .
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config e2e/kind/kind-config.yaml ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$OPTIMIZER_IMAGE"

# The chart's namespace and the models' namespace both enforce the restricted Pod Security profile.
for ns in modeldeploy-system "$NS"; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
  kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted --overwrite
done
helm upgrade --install modeldeploy charts/modeldeploy-operator -n modeldeploy-system \
  --set image.tag="$TAG" --wait --timeout 5m

kubectl apply -n "$NS" -f examples/models-pvc.yaml
kubectl wait -n "$NS" job/seed-reference-models --for=condition=Complete --timeout=15m

examples=(digits-mlp digits-cnn)
for example in "${examples[@]}"; do kubectl apply -n "$NS" -f "examples/$example.yaml"; done
for example in "${examples[@]}"; do
  kubectl wait -n "$NS" "md/$example" --timeout=20m \
    --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=Ready
done
kubectl get md -n "$NS" -o wide
echo "OK: every example is READY. Delete the cluster with: kind delete cluster --name $CLUSTER"
