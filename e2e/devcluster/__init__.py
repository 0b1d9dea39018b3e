"""The local Kubernetes control plane for modeldeploy's tests, benchmarks and demo: test infrastructure,
not product (distribution `modeldeploy-devcluster`, installed from e2e/ with `pip install -e e2e`).

Why it exists: the operator is tested against a real API server, controller-manager and scheduler,
with kwok standing in for kubelets, all run as plain processes (no Docker). `controlplane.ControlPlane`
runs one cluster; `assets` finds or builds the pinned binaries; `certs` makes its PKI; `executor` plays
the kubelet for optimizer pods; `stack` runs the operator; `pytest_plugin` gives tests all of that as
fixtures; `cli` (`python -m devcluster up|down|status|demo`) is the human entry point. This package
imports modeldeploy (to run it); modeldeploy never imports this package.
"""
