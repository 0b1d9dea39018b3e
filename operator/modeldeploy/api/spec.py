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
from modeldeploy.api.quantity import Quantity
from modeldeploy.contract.formats import ModelFormat, PruningSchedule, Quantization

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


class ResourceRequirements(ApiModel):
    """Compute resources of a container, as in a Pod spec."""

    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Minimum resources, e.g. {cpu: 500m, memory: 512Mi}."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Maximum resources. The CPU limit also sizes TF Serving's thread pools.",
    )


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

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.schedule) || self.schedule != 'PolynomialDecay' || self.fineTuneEpochs > 0",
            "pruning.schedule PolynomialDecay ramps the sparsity during fine-tuning: it needs fineTuneEpochs > 0",
            ".schedule",
        ),
        Rule(
            "self.denseBlockSize in [1, 4, 16]",
            "pruning.denseBlockSize must be 1, 4 or 16",
            ".denseBlockSize",
        ),
    )

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
    schedule: PruningSchedule | None = Field(
        default=None,
        description=(
            "How the sparsity reaches its target: PolynomialDecay ramps it from 0 along a cubic curve "
            "over the first two thirds of the fine-tuning steps (the network adapts as weights go), "
            "OneShot prunes to the target at once before fine-tuning. Unset: PolynomialDecay when "
            "fineTuneEpochs > 0, else OneShot."
        ),
    )
    keep_classifier_dense: bool = Field(
        default=False,
        description=(
            "Leave the kernel of the model's output layer (the final classifier) unpruned: its few "
            "weights decide between classes, so pruning them costs much accuracy for little size."
        ),
    )

    dense_block_size: int = Field(
        default=1,
        ge=1,
        le=16,
        description=(
            "Prune dense kernels in blocks of this many consecutive inputs of one unit: 1 (weight by "
            "weight), 4 or 16. TFLite executes 1x16 blocks sparse in int8 and 1x4 blocks in float, "
            "so the published model.tflite keeps the sparse weights in memory; unstructured "
            "sparsity only shrinks the compressed size."
        ),
    )

    @model_validator(mode="after")
    def _check_schedule(self) -> Pruning:
        if self.schedule == PruningSchedule.POLYNOMIAL_DECAY and self.fine_tune_epochs == 0:
            raise ValueError(self.cel_rules[0].message)
        if self.dense_block_size not in (1, 4, 16):
            raise ValueError(self.cel_rules[1].message)
        return self


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
    image: str = Field(default=DEFAULT_OPTIMIZER_IMAGE, min_length=1, description="The optimizer's container image.")
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

    name: str = Field(min_length=1, description="Variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: Passthrough | None = Field(
        default=None, description="A Pod-spec valueFrom (secretKeyRef, configMapKeyRef, fieldRef...)."
    )


class Serving(ApiModel):
    """The TensorFlow Serving Deployment."""

    image: str = Field(
        default=DEFAULT_TF_SERVING_IMAGE, min_length=1, description="TF Serving image (pin an exact tag)."
    )
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Replicas when autoscaling is off (kubectl scale md NAME --replicas=N sets it).",
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
    env: list[EnvVar] = Field(default_factory=list, description="Extra environment of the TF Serving container.")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector.")
    tolerations: list[Passthrough] = Field(default_factory=list, description="Pod tolerations.")
    affinity: Passthrough | None = Field(default=None, description="Pod affinity.")
    image_pull_secrets: list[str] = Field(default_factory=list, description="Names of Secrets used to pull the images.")
    service_account_name: str | None = Field(default=None, description="ServiceAccount of the serving pods.")
    pod_labels: Labels = Field(default_factory=dict, description="Extra labels on the serving pods.")
    pod_annotations: Annotations = Field(default_factory=dict, description="Extra annotations on the serving pods.")


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
