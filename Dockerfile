# syntax=docker/dockerfile:1
# The operator image: `modeldeploy run` (kopf + the Kubernetes client), without TensorFlow.
# Build from the repository root:  docker build -t ghcr.io/modeldeploy/operator:0.1.0 .
# The chart (charts/modeldeploy-operator) runs it as UID 1000 with a read-only root file system.
#
# checkov:skip=CKV_DOCKER_2: Kubernetes probes /healthz (the chart's liveness and readiness probes); a Docker HEALTHCHECK is ignored by Kubernetes.

# --- build: install the package and its run-time dependencies into a self-contained virtualenv -------
# The same pinned base in both stages: the virtualenv's interpreter path must match at run time.
FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/modeldeploy
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# No extras: the operator never imports TensorFlow (the optimizer image has it).
RUN /opt/modeldeploy/bin/pip install --no-compile . \
 && /opt/modeldeploy/bin/modeldeploy --version

# --- run: the base, the virtualenv, an unprivileged user; no compilers, no pip cache, no sources ------
FROM python:3.11.13-slim-bookworm
RUN groupadd --gid 1000 modeldeploy \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin modeldeploy
COPY --from=build /opt/modeldeploy /opt/modeldeploy
ENV PATH=/opt/modeldeploy/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Numeric, so the kubelet can verify runAsNonRoot without reading /etc/passwd.
USER 1000:1000
EXPOSE 8080 9090
ENTRYPOINT ["modeldeploy"]
CMD ["run"]
