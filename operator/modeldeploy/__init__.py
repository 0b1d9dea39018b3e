"""modeldeploy: a Kubernetes operator that takes a trained TensorFlow model from storage to an
optimized, verified model served by TensorFlow Serving, declared in one ModelDeployment resource."""

__version__ = "0.1.0"
