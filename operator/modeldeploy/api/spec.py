"""The desired state of a ModelDeployment (`spec`), modelled once.

These pydantic models are the single source of truth: the CRD's OpenAPI schema (with defaults,
enums, ranges, descriptions and CEL rules) is generated from them, the operator parses every
object through them, and `modeldeploy render` validates offline with them. Cross-field rules are
declared as `Rule`s and checked by a Python validator with the same message the API server gives.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import Field, model_validator

from modeldeploy.api.base import ApiModel, Rule
from modeldeploy.api.quantity import Quantity, parse_quantity
from modeldeploy.contract.formats import ModelFormat, Quantization

DEFAULT_TF_SERVING_IMAGE = "tensorflow/serving:2.20.0"
DEFAULT_OPTIMIZER_IMAGE = "ghcr.io/modeldeploy/optimizer:0.1.0"
STORAGE_SCHEMES = ("pvc", "s3", "gs", "https", "file")
ARTIFACT_SCHEMES = ("pvc",)
_SCHEMES_TEXT = ", ".join(f"{s}://" for s in STORAGE_SCHEMES)
_STORAGE_RE = r"^(pvc|s3|gs|https|file)://.+"
_ARTIFACT_RE = r"^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/.*)?$"
# pvc://<claim name>/<path inside the claim>; the claim must be a DNS-1123 subdomain.
_PVC_RE = r"^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/.+"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SERVING_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$"
# The API server's rule for environment variable names: printable ASCII except '='.
ENV_NAME_RE = r"^[ -<>-~]+$"
ENV_MAX = 128  # variables; and a bound the API server needs to estimate the cost of the CEL rules
# An image reference (the distribution/reference grammar, without IPv6 hosts): [HOST[:PORT]/]PATH
# [:TAG][@DIGEST], repository path in lower case. Written without backslashes, so that the same
# text is a Python regex, a CEL string and a Go regexp.
_DOMAIN_PART = "([a-zA-Z0-9]|[a-zA-Z0-9][-a-zA-Z0-9]*[a-zA-Z0-9])"
_PATH_PART = "[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*"
IMAGE_RE = (
    f"^({_DOMAIN_PART}([.]{_DOMAIN_PART})*(:[0-9]+)?/)?{_PATH_PART}(/{_PATH_PART})*"
    "(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?"
    "(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
IMAGE_MAX = 512
_IMAGE_MESSAGE = "is not a valid image reference (e.g. tensorflow/serving:2.20.0, or REGISTRY/PATH@sha256:DIGEST)"

Uri = Annotated[str, Field(max_length=2048)]
Labels = dict[str, Annotated[str, Field(max_length=63)]]
Annotations = dict[str, str]
# Free-form Kubernetes objects passed through untouched (the API server validates them when the
# Pod or HPA is created); the generator marks them x-kubernetes-preserve-unknown-fields.
Passthrough = dict[str, Any]


def uri_scheme(uri: str) -> str:
    return uri.split("://", 1)[0] if "://" in uri else ""


def pvc_parts(uri: str) -> tuple[str, str]:
    """'pvc://models/a/b.keras' -> ('models', 'a/b.keras')."""
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, path.strip("/")


class Metric(StrEnum):
    ACCURACY = "accuracy"


class ServiceType(StrEnum):
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"
    LOAD_BALANCER = "LoadBalancer"


def _quantity_cel(value: str) -> str:
    return f"quantity(string({value}))"


class ResourceRequirements(ApiModel):
    """Compute resources of a container, as in a Pod spec."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
            f"{_quantity_cel('self.requests[k]')}.compareTo({_quantity_cel('self.limits[k]')}) <= 0)",
            "requests must not exceed limits (per resource)",
            ".requests",
        ),
    )

    requests: dict[str, Quantity] = Field(
        default_factory=dict, max_length=8, description="Minimum resources, e.g. {cpu: 500m, memory: 512Mi}."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=8,
        description="Maximum resources (at least the request of the same resource). The CPU limit also sizes "
        "TF Serving's thread pools.",
    )

    @model_validator(mode="after")
    def _check_requests_within_limits(self) -> ResourceRequirements:
        over = [
            f"{name} {value} > {self.limits[name]}"
            for name, value in self.requests.items()
            if name in self.limits and parse_quantity(value) > parse_quantity(self.limits[name])
        ]
        if over:
            raise ValueError(f"{self.cel_rules[0].message}: {', '.join(over)}")
        return self


class ModelSource(ApiModel):
    """Where the trained model is and how to read it."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            f"self.storageUri.matches('{_STORAGE_RE}')",
            f"storageUri must start with one of {_SCHEMES_TEXT}",
            ".storageUri",
        ),
        Rule(
            f"!self.storageUri.startsWith('pvc://') || self.storageUri.matches('{_PVC_RE}')",
            "a pvc:// storageUri must name a claim and a path: pvc://CLAIM/PATH",
            ".storageUri",
        ),
    )

    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=SERVING_NAME,
        description="The name clients use: TF Serving serves it at /v1/models/NAME.",
    )
    storage_uri: Uri = Field(
        description=(
            "Where the trained model is: pvc://CLAIM/PATH (a PersistentVolumeClaim in this namespace), "
            "s3://BUCKET/KEY, gs://BUCKET/KEY, https://HOST/PATH, or file://PATH (local development). "
            "For format savedmodel it names the SavedModel directory (the one holding saved_model.pb)."
        )
    )
    format: ModelFormat = Field(
        default=ModelFormat.KERAS,
        description="keras (a Keras 3 .keras file), h5 (a legacy Keras .h5 file) or savedmodel.",
    )
    version: int = Field(
        default=1,
        ge=1,
        le=2**31 - 1,
        description="The version number TF Serving serves. Raising it runs a new optimization and a rolling update.",
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[a-f0-9]{64}$",
        description=(
            "Expected sha256 of the model file (lower-case hex); for a SavedModel folder, of its sha256sum "
            "manifest. The optimizer refuses a model that differs."
        ),
    )
    credentials_secret: str | None = Field(
        default=None,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=(
            "A Secret in this namespace whose keys become environment variables of the pods that read "
            "the model (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for s3://; "
            "GOOGLE_OAUTH_ACCESS_TOKEN for a private gs:// bucket)."
        ),
    )

    @model_validator(mode="after")
    def _check_uri(self) -> ModelSource:
        if not re.match(_STORAGE_RE, self.storage_uri):
            raise ValueError(self.cel_rules[0].message)
        if self.storage_uri.startswith("pvc://") and not re.match(_PVC_RE, self.storage_uri):
            raise ValueError(self.cel_rules[1].message)
        return self


class Pruning(ApiModel):
    """Magnitude pruning, set separately for dense and convolutional layers (the seed's alpha and beta)."""

    dense_sparsity: float = Field(
        default=0.0,
        ge=0.0,
        le=0.95,
        description="Fraction of each Dense kernel's weights set to zero (alpha), 0 to 0.95; 0 = untouched.",
    )
    conv_sparsity: float = Field(
        default=0.0,
        ge=0.0,
        le=0.95,
        description="Fraction of each convolution kernel's weights set to zero (beta), 0 to 0.95.",
    )
    fine_tune_epochs: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Epochs of fine-tuning with the pruning masks held, on trainDataUri. 0 = no fine-tuning.",
    )
    train_data_uri: Uri | None = Field(
        default=None,
        description="Training data (.npz with arrays x and y) for fine-tuning and int8 calibration.",
    )


class Evaluation(ApiModel):
    """The quality gate: the optimized model must stay within maxAccuracyDrop of the original."""

    dataset_uri: Uri | None = Field(
        default=None,
        description="Evaluation data (.npz with arrays x and y). Without it there is no quality gate.",
    )
    metric: Metric = Field(default=Metric.ACCURACY, description="The metric compared: accuracy.")
    max_accuracy_drop: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="Largest accepted drop of the metric, as a fraction (0.01 = one point).",
    )


class Optimization(ApiModel):
    """The optimization Job: prune, quantize, evaluate, gate, write in TF Serving's layout."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.pruning.fineTuneEpochs == 0 || has(self.pruning.trainDataUri)",
            "pruning.fineTuneEpochs needs pruning.trainDataUri",
            ".pruning.fineTuneEpochs",
        ),
        Rule(
            "self.quantization != 'int8' || has(self.pruning.trainDataUri) || has(self.evaluation.datasetUri)",
            "quantization int8 needs representative data: pruning.trainDataUri or evaluation.datasetUri",
            ".quantization",
        ),
        Rule(f"self.image.matches('{IMAGE_RE}')", f"optimization.image {_IMAGE_MESSAGE}", ".image"),
    )

    enabled: bool = Field(
        default=True,
        description=(
            "Run the optimizer. When false, a savedmodel is served as it is; keras and h5 models are "
            "still converted to a SavedModel by the Job, since TF Serving cannot read them."
        ),
    )
    pruning: Pruning = Field(default_factory=Pruning, description="Magnitude pruning per layer family.")
    quantization: Quantization = Field(
        default=Quantization.NONE,
        description=(
            "Post-training quantization to a TFLite model: none, dynamic (int8 weights), float16, "
            "or int8 (full integer, calibrated on the training or evaluation data)."
        ),
    )
    evaluation: Evaluation = Field(default_factory=Evaluation, description="The accuracy quality gate.")
    image: str = Field(
        default=DEFAULT_OPTIMIZER_IMAGE,
        min_length=1,
        max_length=IMAGE_MAX,
        description="The optimizer's container image.",
    )
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "1", "memory": "2Gi"}, limits={"cpu": "2", "memory": "4Gi"}
        ),
        description="Resources of the optimization Job's container.",
    )
    active_deadline_seconds: int = Field(
        default=3600, ge=60, le=86400, description="The Job fails when it runs longer than this."
    )
    backoff_limit: int = Field(default=1, ge=0, le=10, description="Retries of a failed optimization pod.")

    @model_validator(mode="after")
    def _check_fine_tuning(self) -> Optimization:
        if self.pruning.fine_tune_epochs and not self.pruning.train_data_uri:
            raise ValueError(self.cel_rules[0].message)
        if (
            self.quantization == Quantization.INT8
            and not self.pruning.train_data_uri
            and not self.evaluation.dataset_uri
        ):
            raise ValueError(self.cel_rules[1].message)
        if not re.fullmatch(IMAGE_RE, self.image):
            raise ValueError(f"{self.cel_rules[2].message}: {self.image!r}")
        return self


class Batching(ApiModel):
    """TF Serving's server-side request batching (--enable_batching)."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "size(self.allowedBatchSizes) == 0 || "
            "self.allowedBatchSizes[size(self.allowedBatchSizes) - 1] == self.maxBatchSize",
            "batching.allowedBatchSizes must end with maxBatchSize",
            ".allowedBatchSizes",
        ),
    )

    enabled: bool = Field(default=False, description="Batch concurrent requests together.")
    max_batch_size: int = Field(default=32, ge=1, le=65536, description="Largest batch.")
    batch_timeout_micros: int = Field(
        default=1000, ge=0, le=10_000_000, description="How long a partial batch waits for more requests."
    )
    num_batch_threads: int | None = Field(
        default=None, ge=1, le=256, description="Threads running batches; default: the CPU limit."
    )
    max_enqueued_batches: int = Field(default=100, ge=1, le=1_000_000, description="Queue length in batches.")
    allowed_batch_sizes: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=list,
        max_length=32,
        description="Batch sizes padded to, ascending; the last must equal maxBatchSize. Empty = any.",
    )

    @model_validator(mode="after")
    def _check_sizes(self) -> Batching:
        sizes = self.allowed_batch_sizes
        if sizes and sizes[-1] != self.max_batch_size:
            raise ValueError(self.cel_rules[0].message)
        if sizes != sorted(set(sizes)):
            raise ValueError("batching.allowedBatchSizes must be strictly ascending")
        return self


class EnvVar(ApiModel):
    """An environment variable, as in a Pod spec."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        # The '=' check is CEL (for its message); the printable-ASCII pattern is the schema's (no CEL cost).
        Rule("!self.name.contains('=')", "env name must consist of printable ASCII characters other than '='", ".name"),
        Rule(
            "!has(self.value) || !has(self.valueFrom)",
            "env value and valueFrom are mutually exclusive",
            ".valueFrom",
        ),
    )

    name: str = Field(
        min_length=1,
        max_length=256,
        pattern=r"^[ -~]+$",
        description="Variable name (printable ASCII, no '=').",
    )
    value: str | None = Field(default=None, description="Literal value.")
    value_from: Passthrough | None = Field(
        default=None, description="A Pod-spec valueFrom (secretKeyRef, configMapKeyRef, fieldRef...)."
    )

    @model_validator(mode="after")
    def _check_env(self) -> EnvVar:
        if not re.fullmatch(ENV_NAME_RE, self.name):
            raise ValueError(f"{self.cel_rules[0].message}: {self.name!r}")
        if self.value is not None and self.value_from is not None:
            raise ValueError(self.cel_rules[1].message)
        return self


class Serving(ApiModel):
    """The TensorFlow Serving Deployment."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(f"self.image.matches('{IMAGE_RE}')", f"serving.image {_IMAGE_MESSAGE}", ".image"),
    )

    image: str = Field(
        default=DEFAULT_TF_SERVING_IMAGE,
        min_length=1,
        max_length=IMAGE_MAX,
        description="TF Serving image (pin an exact tag).",
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description=(
            "Replicas when autoscaling is off (kubectl scale md NAME --replicas=N sets it). While "
            "autoscaling.enabled the HPA owns the replica count: a change of this field (kubectl scale "
            "included) is refused; change autoscaling.minReplicas/maxReplicas instead."
        ),
    )
    resources: ResourceRequirements = Field(
        default_factory=lambda: ResourceRequirements(
            requests={"cpu": "500m", "memory": "512Mi"}, limits={"cpu": "1", "memory": "1Gi"}
        ),
        description="Resources of the TF Serving container.",
    )
    batching: Batching = Field(default_factory=Batching, description="Server-side request batching.")
    prefer_tflite: bool = Field(
        default=True,
        description="Serve model.tflite when the optimizer wrote one (TF Serving's --prefer_tflite_model).",
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=ENV_MAX, description="Extra environment of the TF Serving container."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: list[Passthrough] = Field(default_factory=list, description="Pod tolerations.")
    affinity: Passthrough | None = Field(default=None, description="Pod affinity.")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Names of Secrets used to pull the images.")
    service_account_name: str | None = Field(default=None, description="ServiceAccount of the serving pods.")
    pod_labels: Labels = Field(default_factory=dict, description="Extra labels on the serving pods.")
    pod_annotations: Annotations = Field(default_factory=dict, description="Extra annotations on the serving pods.")

    @model_validator(mode="after")
    def _check_image(self) -> Serving:
        if not re.fullmatch(IMAGE_RE, self.image):
            raise ValueError(f"{self.cel_rules[0].message}: {self.image!r}")
        return self


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler (autoscaling/v2) for the serving Deployment."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.minReplicas <= self.maxReplicas",
            "minReplicas must be less than or equal to maxReplicas",
            ".minReplicas",
        ),
    )

    enabled: bool = Field(default=True, description="Create an HPA; it then owns the replica count.")
    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(default=3, ge=1, le=1000, description="Most replicas.")
    target_cpu_utilization_percentage: int = Field(
        default=70,
        alias="targetCPUUtilizationPercentage",
        ge=1,
        le=100,
        description="Average CPU use (percent of requests) the HPA aims at.",
    )
    metrics: list[Passthrough] = Field(
        default_factory=list,
        description="autoscaling/v2 metrics, passed through; replaces the CPU target when set.",
    )
    behavior: Passthrough | None = Field(default=None, description="autoscaling/v2 behavior, passed through.")

    @model_validator(mode="after")
    def _check_range(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(self.cel_rules[0].message)
        return self


class Service(ApiModel):
    """The Service in front of TF Serving."""

    type: ServiceType = Field(default=ServiceType.CLUSTER_IP, description="ClusterIP, NodePort or LoadBalancer.")
    rest_port: int = Field(default=8501, ge=1, le=65535, description="Service port for REST (TF Serving's 8501).")
    grpc_port: int = Field(default=8500, ge=1, le=65535, description="Service port for gRPC (TF Serving's 8500).")
    annotations: Annotations = Field(default_factory=dict, description="Annotations on the Service.")


class Artifacts(ApiModel):
    """Where optimized models are written and served from."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            f"self.uri.matches('{_ARTIFACT_RE}')",
            "artifacts.uri must be pvc://CLAIM[/PREFIX]",
            ".uri",
        ),
    )

    uri: Uri = Field(
        description=(
            "pvc://CLAIM/PREFIX: the optimizer writes PREFIX/<artifact hash>/<version>/ on that claim "
            "and TF Serving mounts it read-only. The claim must be ReadWriteMany when pods may run on "
            "several nodes."
        )
    )

    @model_validator(mode="after")
    def _check_uri(self) -> Artifacts:
        if not re.match(_ARTIFACT_RE, self.uri):
            raise ValueError(self.cel_rules[0].message)
        return self


class ModelDeploymentSpec(ApiModel):
    """The whole desired state."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.artifacts) || self.model.storageUri.startsWith('pvc://')",
            "artifacts.uri is required when model.storageUri is not pvc://",
            ".artifacts",
        ),
        # A transition rule (oldSelf): the API server alone can check it, on updates, including the
        # scale subresource that `kubectl scale md` writes.
        Rule(
            "!self.autoscaling.enabled || !oldSelf.autoscaling.enabled || "
            "self.serving.replicas == oldSelf.serving.replicas",
            "serving.replicas cannot change while autoscaling.enabled: the HorizontalPodAutoscaler owns the "
            "replica count; change autoscaling.minReplicas/maxReplicas, or disable autoscaling",
            ".serving.replicas",
        ),
    )

    model: ModelSource = Field(description="The trained model.")
    optimization: Optimization = Field(
        default_factory=Optimization, description="Pruning, quantization and the quality gate."
    )
    serving: Serving = Field(default_factory=Serving, description="The TF Serving Deployment.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="The HPA.")
    service: Service = Field(default_factory=Service, description="The Service.")
    artifacts: Artifacts | None = Field(
        default=None,
        description=(
            "Where optimized models go. Default for a pvc:// model: the same claim under modeldeploy/NAME; "
            "required for every other scheme."
        ),
    )

    @model_validator(mode="after")
    def _check_artifacts(self) -> ModelDeploymentSpec:
        if self.artifacts is None and uri_scheme(self.model.storage_uri) not in ARTIFACT_SCHEMES:
            raise ValueError(self.cel_rules[0].message)
        return self

    def artifacts_uri(self, name: str) -> str:
        """The artifact store, with the documented default applied."""
        if self.artifacts is not None:
            return self.artifacts.uri.rstrip("/")
        claim, _ = pvc_parts(self.model.storage_uri)  # the validator guarantees pvc:// here
        return f"pvc://{claim}/modeldeploy/{name}"
