"""TensorFlow Serving's configuration, as the files and flags the server reads.

What TF Serving (2.x) does with them: the model config file overrides --model_name and
--model_base_path; --batching_parameters_file is a startup error without --enable_batching; a
monitoring config with `prometheus_config { enable: true }` serves /monitoring/prometheus/metrics
on the REST port; its thread pools are sized from the CPUs the process may run on, not the cgroup's
limit, so they are set from the container's CPU limit.
"""

from __future__ import annotations

import json

from modeldeploy.api.quantity import whole_cpus
from modeldeploy.api.spec import Serving
from modeldeploy.controller.builders.artifacts import Artifact

GRPC_PORT = 8500
REST_PORT = 8501
CONFIG_DIR = "/etc/tfserving"
MODEL_CONFIG_FILE = "models.config"
BATCHING_FILE = "batching.config"
MONITORING_FILE = "monitoring.config"
METRICS_PATH = "/monitoring/prometheus/metrics"


def _quote(text: str) -> str:
    # protobuf text format accepts JSON-style escaped strings
    return json.dumps(text)


def model_config(artifact: Artifact) -> str:
    """A ModelServerConfig that serves exactly the artifact's version, nothing else."""
    return (
        "model_config_list {\n"
        "  config {\n"
        f"    name: {_quote(artifact.model_name)}\n"
        f"    base_path: {_quote(artifact.base_path)}\n"
        '    model_platform: "tensorflow"\n'
        "    model_version_policy {\n"
        "      specific {\n"
        f"        versions: {artifact.version}\n"
        "      }\n"
        "    }\n"
        "  }\n"
        "}\n"
    )


def monitoring_config() -> str:
    return f"prometheus_config {{\n  enable: true\n  path: {_quote(METRICS_PATH)}\n}}\n"


def serving_cpus(serving: Serving) -> int | None:
    """Whole CPUs the server may use: the limit, else the request, else unknown."""
    resources = serving.resources
    cpu = resources.limits.get("cpu") or resources.requests.get("cpu")
    return whole_cpus(cpu) if cpu else None


def batching_config(serving: Serving) -> str:
    batching = serving.batching
    threads = batching.num_batch_threads or serving_cpus(serving) or 1
    lines = [
        f"max_batch_size {{ value: {batching.max_batch_size} }}",
        f"batch_timeout_micros {{ value: {batching.batch_timeout_micros} }}",
        f"max_enqueued_batches {{ value: {batching.max_enqueued_batches} }}",
        f"num_batch_threads {{ value: {threads} }}",
    ]
    lines += [f"allowed_batch_sizes: {size}" for size in batching.allowed_batch_sizes]
    return "\n".join(lines) + "\n"


def server_args(serving: Serving) -> list[str]:
    """Flags for tensorflow_model_server (the container command replaces the image entrypoint)."""
    args = [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={REST_PORT}",
        f"--model_config_file={CONFIG_DIR}/{MODEL_CONFIG_FILE}",
        f"--monitoring_config_file={CONFIG_DIR}/{MONITORING_FILE}",
    ]
    if serving.batching.enabled:
        args += ["--enable_batching=true", f"--batching_parameters_file={CONFIG_DIR}/{BATCHING_FILE}"]
    if serving.prefer_tflite:
        args.append("--prefer_tflite_model=true")
    cpus = serving_cpus(serving)
    if cpus is not None:
        args += [
            f"--tensorflow_intra_op_parallelism={cpus}",
            f"--tensorflow_inter_op_parallelism={cpus}",
            f"--rest_api_num_threads={max(4, 4 * cpus)}",
        ]
    return args
