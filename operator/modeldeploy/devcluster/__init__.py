"""The local Kubernetes control plane for integration tests and development (`modeldeploy dev-cluster`).

Why it exists: the operator is tested against a real API server, controller-manager and scheduler,
with kwok standing in for kubelets, all run as plain processes (no Docker). `harness.ControlPlane` runs
one cluster; `assets` finds or builds the pinned binaries; `certs` makes its PKI; `cli` is the human
entry point. Only tests, benchmarks and developers use this package; the operator itself never does.
"""
