"""The desired state of a ModelDeployment (`spec`), modelled once.

These pydantic models are the single source of truth: the CRD's OpenAPI schema (with defaults,
enums, ranges, descriptions and CEL rules) is generated from them, the operator parses every
object through them, and `modeldeploy render` validates offline with them. Cross-field rules are
declared as `Rule`s and checked by a Python validator with the same message the API server gives.
"""

from __future__ import annotations

import itertools
import re
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import Field, model_validator

from modeldeploy.api.base import ApiModel, Rule
from modeldeploy.api.quantity import Quantity, parse_quantity
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
# The API server's rule for environment variable names: printable ASCII except '='.
ENV_NAME_RE = r"^[ -<>-~]+$"
ENV_MAX = 128  # variables; and a bound the API server needs to estimate the cost of the CEL rules
# An image reference (the distribution/reference grammar, without IPv6 hosts): [HOST[:PORT]/]PATH
# [:TAG][@DIGEST], repository path in lower case. Written without backslashes, so that the same
# text is a Python regex, a CEL string and a Go regexp.
_DOMAIN_PART = "([a-zA-Z0-9]|[a-zA-Z0-9][-a-zA-Z0-9]*[a-zA-Z0-9])"
_PATH_PART = "[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*"
IMAGE_RE = (
    # A first component is a registry only with a dot, a port or as localhost (else it is a path
    # component, lower case): "Kfu/xiac" is no image a runtime can pull.
    f"^((localhost|{_DOMAIN_PART}([.]{_DOMAIN_PART})+)(:[0-9]+)?/|{_DOMAIN_PART}:[0-9]+/)?"
    f"{_PATH_PART}(/{_PATH_PART})*"
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
    TOP_K_ACCURACY = "topKAccuracy"
    AUC = "auc"
    MSE = "mse"
    MAE = "mae"


DEFAULT_TOP_K = 5
DEFAULT_MIN_SLICE_EXAMPLES = 30


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


_OBJECT_NAME = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"


class KeyReference(ApiModel):
    """One key of a Secret or of a ConfigMap in this namespace, mounted read-only as a file."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule("has(self.secretName) != has(self.configMapName)", "give exactly one of secretName and configMapName"),
    )

    secret_name: str | None = Field(
        default=None, max_length=253, pattern=_OBJECT_NAME, description="A Secret holding the PEM file."
    )
    config_map_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=_OBJECT_NAME,
        description="A ConfigMap holding the PEM file (public keys and certificates are not secret).",
    )
    key: str = Field(
        min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="The key holding the PEM file."
    )

    @model_validator(mode="after")
    def _check_one(self) -> KeyReference:
        if (self.secret_name is None) == (self.config_map_name is None):
            raise ValueError(self.cel_rules[0].message)
        return self


class SigstoreIdentity(ApiModel):
    """A keyless sigstore signer: the certificate Fulcio issued must name this identity and issuer.
    Verifying it needs the internet (the sigstore trust root and transparency log)."""

    identity: str = Field(
        min_length=1, max_length=1024, description="The signer's identity, e.g. an e-mail or a workflow URI."
    )
    oidc_issuer: str = Field(
        min_length=1, max_length=1024, description="The OIDC issuer of that identity, e.g. https://accounts.google.com."
    )


class ModelSignature(ApiModel):
    """The source model's OpenSSF model signature (a sigstore bundle over the sha256 of every file of
    the model), verified by the optimization Job before any work. A missing signature fails the Job
    with SignatureMissing, one that does not verify with SignatureInvalid; nothing is published."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "(has(self.publicKey) ? 1 : 0) + (has(self.certificateChain) ? 1 : 0) + (has(self.keyless) ? 1 : 0) == 1",
            "give exactly one of publicKey, certificateChain and keyless",
        ),
    )

    uri: Uri | None = Field(
        default=None,
        pattern=_STORAGE_RE,
        description=(
            "Where the signature is (the same schemes as storageUri). Default: storageUri + '.sig', "
            "e.g. pvc://models/digits.keras.sig."
        ),
    )
    public_key: KeyReference | None = Field(
        default=None, description="The PEM public key (ECDSA) the model must be signed with."
    )
    certificate_chain: KeyReference | None = Field(
        default=None,
        description=(
            "PEM CA certificates: the signing certificate in the signature must chain to them and be "
            "valid now; its subject is recorded as the signer."
        ),
    )
    keyless: SigstoreIdentity | None = Field(
        default=None,
        description="Keyless sigstore signing (needs the internet from the Job; not tested offline).",
    )

    @model_validator(mode="after")
    def _check_one(self) -> ModelSignature:
        if sum(x is not None for x in (self.public_key, self.certificate_chain, self.keyless)) != 1:
            raise ValueError(self.cel_rules[0].message)
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
    signature: ModelSignature | None = Field(
        default=None,
        description=(
            "Require an OpenSSF model signature on the source model and verify it before any work. "
            "Unset: the model is not checked for a signature."
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
    """The quality gate: the optimized model must stay within maxAccuracyDrop of the original, and
    its worst class or slice within maxSliceAccuracyDrop."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.maxSliceAccuracyDrop) || has(self.datasetUri)",
            "evaluation.maxSliceAccuracyDrop needs evaluation.datasetUri",
            ".maxSliceAccuracyDrop",
        ),
    )

    dataset_uri: Uri | None = Field(
        default=None,
        description=(
            "Evaluation data (.npz with arrays x and y, and optionally slice: a group label per example, "
            "integers or strings). Without it there is no quality gate."
        ),
    )
    metric: Metric = Field(
        default=Metric.ACCURACY,
        description=(
            "The metric compared. Classification (y holds class indices): accuracy, topKAccuracy (the "
            "true class among the topK highest scores), auc (binary models: area under the ROC curve). "
            "Regression (y holds float targets, one per output): mse, mae. A model with one output and y "
            "of 0s and 1s is a binary classifier unless the metric is mse or mae."
        ),
    )
    max_accuracy_drop: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description=(
            "Largest accepted drop of the metric, as a fraction (0.01 = one point); for mse and mae, the "
            "largest accepted rise relative to the original's value (0.01 = 1 % worse)."
        ),
    )
    top_k: int = Field(
        default=DEFAULT_TOP_K,
        ge=2,
        le=1000,
        description="k of topKAccuracy, 2 to 1000; the model must have more than k classes.",
    )
    max_slice_accuracy_drop: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description=(
            "Largest accepted drop of the metric on the worst class, or the worst value of the evaluation "
            "data's slice array, in maxAccuracyDrop's terms. Unset (the default): slices are measured and "
            "reported, not gated. Keep it above 1/minSliceExamples: one changed prediction moves a slice "
            "of n examples by 1/n."
        ),
    )
    min_slice_examples: int = Field(
        default=DEFAULT_MIN_SLICE_EXAMPLES,
        ge=1,
        le=1_000_000,
        description=(
            "Classes and slices with fewer evaluation examples are reported but not gated, so a tiny "
            "slice does not fail the gate on noise."
        ),
    )

    @model_validator(mode="after")
    def _check_slices(self) -> Evaluation:
        if self.max_slice_accuracy_drop is not None and not self.dataset_uri:
            raise ValueError(self.cel_rules[0].message)
        return self


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
            "or int8 (full integer, calibrated on the training or evaluation data). int8's speed-up "
            "over float32 TFLite depends on the CPU and on each layer: measured on an x86 CPU with "
            "AVX512-VNNI, 2.3-6x on layers that sum over many inputs (input channels x kernel area), "
            "none on shallow ones such as depthwise convolutions, 1.1-1.7x on MobileNet-like models "
            "as a whole; status.optimization gives the latency measured."
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


DEFAULT_RETAIN = 3
MAX_RETAIN = 100


class Artifacts(ApiModel):
    """Where optimized models are written and served from, and how many old ones are kept."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            f"!has(self.uri) || self.uri.matches('{_ARTIFACT_RE}')",
            "artifacts.uri must be pvc://CLAIM[/PREFIX]",
            ".uri",
        ),
    )

    uri: Uri | None = Field(
        default=None,
        description=(
            "pvc://CLAIM/PREFIX: the optimizer writes PREFIX/<artifact hash>/<version>/ on that claim "
            "and TF Serving mounts it read-only. The claim must be ReadWriteMany when pods may run on "
            "several nodes. Default for a pvc:// model: the same claim under modeldeploy/NAME; required "
            "for every other scheme."
        ),
    )
    retain: int = Field(
        default=DEFAULT_RETAIN,
        ge=0,
        le=MAX_RETAIN,
        description=(
            "How many earlier artifacts of this ModelDeployment stay on the claim, newest first, besides "
            "the one served and the one being built (0 to 100). Artifacts listed in status.history "
            "(spec.rollout.historyLimit of them) are kept too, so that an instant rollback finds them. When a "
            "new artifact becomes served, a cleanup Job removes the older ones; deleting the ModelDeployment "
            "removes them all."
        ),
    )
    signing_key_secret: str | None = Field(
        default=None,
        max_length=253,
        pattern=_OBJECT_NAME,
        description=(
            "A Secret in this namespace with signing.key (a PEM EC private key) and signing.pub (its "
            "public key): the optimizer signs each published version folder (model.sig) with the "
            "private key, and the serving pods' verify-model init container refuses a folder whose "
            "signature does not verify with the public key. Default: the operator's "
            "--default-signing-key-secret (the chart's signing.defaultKeySecret), if set."
        ),
    )

    @model_validator(mode="after")
    def _check_uri(self) -> Artifacts:
        if self.uri is not None and not re.match(_ARTIFACT_RE, self.uri):
            raise ValueError(self.cel_rules[0].message)
        return self


class RolloutStrategy(StrEnum):
    ROLLING_UPDATE = "RollingUpdate"
    CANARY = "Canary"


# A duration as people write it in manifests: 30s, 2m, 1h, or combined (1h30m). At most 24 h.
DURATION_RE = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
_DURATION_PART = re.compile(r"([0-9]+)([hms])")
_DURATION_UNITS = {"h": 3600, "m": 60, "s": 1}
MAX_PAUSE_SECONDS = 24 * 3600


def duration_seconds(text: str) -> int:
    """'1h30m' -> 5400; '' and '0s' -> 0."""
    return sum(int(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))


class CanaryStep(ApiModel):
    """One step of a canary rollout: send `weight` percent of the traffic to the new revision, then
    wait `pause` while the analysis keeps checking it."""

    weight: int = Field(ge=1, le=100, description="Percent of the traffic the canary gets during this step (1 to 100).")
    pause: str = Field(
        default="0s",
        max_length=16,
        pattern=DURATION_RE,
        description="How long the step lasts once the canary pods are ready, e.g. 30s, 2m, 1h30m (at most 24h).",
    )

    @model_validator(mode="after")
    def _check_pause(self) -> CanaryStep:
        if not self.pause or duration_seconds(self.pause) > MAX_PAUSE_SECONDS:
            raise ValueError(f"pause must be a duration such as 30s, 2m or 1h30m, at most 24h: {self.pause!r}")
        return self

    @property
    def pause_seconds(self) -> int:
        return duration_seconds(self.pause)


class Comparison(StrEnum):
    BELOW = "Below"  # passes while value <= threshold (error ratios, latencies)
    ABOVE = "Above"  # passes while value >= threshold (success ratios, throughput)


class PrometheusCheck(ApiModel):
    """One PromQL query whose value must stay on the right side of a threshold."""

    name: str = Field(max_length=63, pattern=DNS_LABEL, description="A name for Events and status, e.g. error-ratio.")
    query: str = Field(
        min_length=1,
        max_length=4096,
        description=(
            "PromQL that returns one number (a scalar or a one-series vector: aggregate with sum(), max()...). "
            "${namespace}, ${name}, ${version} and ${revision} are replaced by the ModelDeployment's namespace "
            "and name, the canary's model version and its revision."
        ),
    )
    threshold: float = Field(description="The limit the value is compared with.")
    must_be: Comparison = Field(
        default=Comparison.BELOW,
        description="Below: the check passes while value <= threshold; Above: while value >= threshold.",
    )
    fail_on_no_data: bool = Field(
        default=False,
        description=(
            "When the query returns no sample (e.g. no request reached the canary yet): false, the check "
            "passes; true, it fails."
        ),
    )


class PrometheusAnalysis(ApiModel):
    """Checks against a Prometheus server during every canary step."""

    url: str = Field(
        max_length=2048,
        pattern=r"^https?://.+",
        description="The Prometheus server, e.g. http://prometheus.monitoring:9090 (its /api/v1/query is used).",
    )
    checks: list[PrometheusCheck] = Field(min_length=1, max_length=10, description="The queries and their limits.")
    interval_seconds: int = Field(
        default=30, ge=5, le=3600, description="How often the checks run while a step lasts (and once at its end)."
    )
    timeout_seconds: int = Field(default=5, ge=1, le=60, description="How long one query may take.")
    failure_limit: int = Field(
        default=0,
        ge=0,
        le=10,
        description=(
            "Failed measurements tolerated per check in a rollout before it aborts (0: the first failure "
            "aborts). An unreachable server or a query error counts as a failure."
        ),
    )


class Analysis(ApiModel):
    """What must hold at every canary step; the first violation aborts the rollout."""

    max_restarts: int = Field(
        default=0, ge=0, le=100, description="Container restarts of canary pods tolerated (0: any restart aborts)."
    )
    prometheus: PrometheusAnalysis | None = Field(default=None, description="Optional metric checks.")


# The HTTPRoute CRD's Hostname pattern (Gateway API standard channel): checked here so that a bad
# host name is refused with the ModelDeployment, not later as a refused HTTPRoute.
GATEWAY_HOSTNAME = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class GatewayParentRef(ApiModel):
    """A Gateway (or another parent) the HTTPRoute attaches to."""

    name: str = Field(max_length=253, pattern=_OBJECT_NAME, description="The Gateway's name.")
    namespace: str | None = Field(
        default=None, max_length=63, pattern=DNS_LABEL, description="The Gateway's namespace (default: this one)."
    )
    section_name: str | None = Field(
        default=None, max_length=253, pattern=DNS_LABEL, description="A listener of the Gateway, by name."
    )


class GatewayAPIRouting(ApiModel):
    """Exact traffic percentages through a Gateway API HTTPRoute (REST traffic through the Gateway)."""

    parent_refs: list[GatewayParentRef] = Field(
        min_length=1, max_length=8, description="The Gateways the HTTPRoute attaches to."
    )
    hostnames: list[Annotated[str, Field(min_length=1, max_length=253, pattern=GATEWAY_HOSTNAME)]] = Field(
        default_factory=list,
        max_length=16,
        description=(
            "Host names the route matches (default: any): lower-case DNS names, optionally with a leading "
            "'*.' wildcard label, as the HTTPRoute's schema requires."
        ),
    )


class TrafficRouting(ApiModel):
    """How the canary's share of traffic is set. Default (nothing here): by replica counts behind the
    one Service, rounded to whole pods (status.rollout.achievedWeight says what was reached)."""

    gateway_api: GatewayAPIRouting | None = Field(
        default=None,
        alias="gatewayAPI",
        description=(
            "Also create an HTTPRoute (gateway.networking.k8s.io/v1) with weighted backends to a stable and "
            "a canary Service, for exact percentages. Needs the Gateway API CRDs in the cluster."
        ),
    )


DEFAULT_HISTORY_LIMIT = 10


class Rollout(ApiModel):
    """How a new revision (a new model version, or any change of the serving pods) replaces the served one."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "self.strategy != 'Canary' || size(self.steps) > 0",
            "rollout.steps must list at least one step when strategy is Canary",
            ".steps",
        ),
        Rule(
            "self.steps.map(s, s.weight).isSorted() && "
            "self.steps.all(s, self.steps.exists_one(t, t.weight == s.weight))",
            "rollout.steps weights must increase",
            ".steps",
        ),
    )

    strategy: RolloutStrategy = Field(
        default=RolloutStrategy.ROLLING_UPDATE,
        description=(
            "RollingUpdate: the Deployment's rolling update, new pods take traffic as they become ready. "
            "Canary: a canary Deployment takes the steps' share of traffic while the analysis checks it; "
            "it is promoted when every step passes and removed (the stable version untouched) when one fails."
        ),
    )
    steps: list[CanaryStep] = Field(
        default_factory=list,
        max_length=20,
        description=(
            "Canary steps in order, weights increasing, e.g. [{weight: 10, pause: 2m}, {weight: 50, pause: 5m}]."
        ),
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=30,
        le=86400,
        description="How long the canary pods of a step may take to become ready before the rollout aborts.",
    )
    analysis: Analysis = Field(default_factory=Analysis, description="What must hold at every step.")
    traffic_routing: TrafficRouting = Field(
        default_factory=TrafficRouting, description="How the canary's share is set (default: replica ratio)."
    )
    history_limit: int = Field(
        default=DEFAULT_HISTORY_LIMIT,
        ge=1,
        le=50,
        description=(
            "How many served revisions status.history keeps (the audit trail, and what an instant rollback "
            "can return to without a new optimization Job)."
        ),
    )

    @model_validator(mode="after")
    def _check_steps(self) -> Rollout:
        if self.strategy == RolloutStrategy.CANARY and not self.steps:
            raise ValueError(self.cel_rules[0].message)
        weights = [s.weight for s in self.steps]
        if any(b <= a for a, b in itertools.pairwise(weights)):
            raise ValueError(f"{self.cel_rules[1].message}: {weights}")
        return self


class ModelDeploymentSpec(ApiModel):
    """The whole desired state."""

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "(has(self.artifacts) && has(self.artifacts.uri)) || self.model.storageUri.startsWith('pvc://')",
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
    rollout: Rollout = Field(
        default_factory=Rollout, description="How a new revision replaces the served one (rolling or canary)."
    )
    artifacts: Artifacts | None = Field(
        default=None,
        description=(
            "Where optimized models go (default for a pvc:// model: the same claim under modeldeploy/NAME; "
            "required for every other scheme) and how many earlier ones are kept."
        ),
    )

    @model_validator(mode="after")
    def _check_artifacts(self) -> ModelDeploymentSpec:
        no_uri = self.artifacts is None or self.artifacts.uri is None
        if no_uri and uri_scheme(self.model.storage_uri) not in ARTIFACT_SCHEMES:
            raise ValueError(self.cel_rules[0].message)
        return self

    @property
    def artifacts_retain(self) -> int:
        """How many earlier artifacts are kept (spec.artifacts.retain, default 3)."""
        return self.artifacts.retain if self.artifacts is not None else DEFAULT_RETAIN

    def artifacts_uri(self, name: str) -> str:
        """The artifact store, with the documented default applied."""
        if self.artifacts is not None and self.artifacts.uri is not None:
            return self.artifacts.uri.rstrip("/")
        claim, _ = pvc_parts(self.model.storage_uri)  # the validator guarantees pvc:// here
        return f"pvc://{claim}/modeldeploy/{name}"
