"""The only package that talks to the Kubernetes API server."""

from modeldeploy.k8s.client import ApiError, KubeClient, load_client

__all__ = ["ApiError", "KubeClient", "load_client"]
