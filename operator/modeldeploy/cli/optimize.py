"""`modeldeploy optimize`: the optimization Job's command, also usable by hand on a laptop.

Only the flags live here; `modeldeploy.optimize.job` runs them. The flags stay plain strings so
that validation, and its one-line error with the exit code of its class, is the optimizer's.
"""

from __future__ import annotations

import argparse

from modeldeploy.contract.formats import ModelFormat, Quantization
from modeldeploy.optimize.accuracy import DEFAULT_TOP_K, METRICS
from modeldeploy.optimize.options import (
    DEFAULT_MAX_ACCURACY_DROP,
    DEFAULT_MIN_SLICE_EXAMPLES,
    DEFAULT_PVC_ROOT,
    DEFAULT_TERMINATION_MESSAGE_PATH,
    IN_POD_ENV,
    MAX_SPARSITY,
)

COMMAND = "optimize"
_HELP = "Prune, quantize and gate a trained model; write it in TF Serving's layout"


def _choices(kind: type[ModelFormat] | type[Quantization]) -> str:
    return "{" + ",".join(member.value for member in kind) + "}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags; kept as strings so validation (and its error reporting) is ours, not argparse's."""
    add = parser.add_argument
    add("--source", metavar="URI", help="model: file://, pvc://CLAIM/PATH, https://, s3://BUCKET/KEY")
    add("--format", metavar=_choices(ModelFormat), help="model format (default: from the source's suffix)")
    add("--sha256", metavar="HEX", help="expected sha256 of the model file (of the manifest for a folder)")
    add("--output", metavar="DIR", help="TF Serving base path; the result goes to DIR/<version>/")
    add("--version", dest="version", metavar="N", help="model version, a positive integer")
    add("--dense-sparsity", metavar="F", help=f"fraction of Dense weights to prune, 0..{MAX_SPARSITY} (0)")
    add("--conv-sparsity", metavar="F", help=f"fraction of convolution weights to prune, 0..{MAX_SPARSITY} (0)")
    add("--fine-tune-epochs", metavar="N", help="epochs of fine-tuning after pruning, masks kept (0)")
    add(
        "--pruning-schedule",
        metavar="{PolynomialDecay,OneShot}",
        help="how sparsity reaches its target: ramped during fine-tuning, or at once "
        "(PolynomialDecay with --fine-tune-epochs, else OneShot)",
    )
    add(
        "--keep-classifier-dense",
        action="store_true",
        help="leave the output layer's kernel unpruned (its few weights decide between classes)",
    )
    add(
        "--dense-block-size",
        metavar="{1,4,16}",
        help="prune dense kernels in 1xN blocks that TFLite executes sparse (16: int8, 4: float) (1)",
    )
    add("--train-data", metavar="URI", help=".npz with x, y: fine-tuning and int8 calibration")
    add("--quantization", metavar=_choices(Quantization), help="post-training quantization (none)")
    add("--eval-data", metavar="URI", help=".npz with x, y: quality before/after and the gate")
    add("--metric", metavar="{" + ",".join(METRICS) + "}", help="quality metric of the gate (accuracy)")
    add(
        "--max-accuracy-drop",
        metavar="F",
        help=f"largest allowed drop, as a fraction: 0.01 = 1 point; mse/mae: 1 %% worse ({DEFAULT_MAX_ACCURACY_DROP})",
    )
    add("--top-k", metavar="K", help=f"k of topKAccuracy: the true class among the k highest scores ({DEFAULT_TOP_K})")
    add(
        "--max-slice-accuracy-drop",
        metavar="F",
        help="largest allowed drop of the worst class or slice (the eval data's `slice` array); unset: not gated",
    )
    add(
        "--min-slice-examples",
        metavar="N",
        help=f"classes and slices with fewer examples are reported, not gated ({DEFAULT_MIN_SLICE_EXAMPLES})",
    )
    add(
        "--source-signature",
        metavar="URI",
        help="the source model's OpenSSF model signature (default: the source URI + .sig); "
        "verified before any work when a --source-public-key, -certificate-chain or -identity is given",
    )
    add("--source-public-key", metavar="PEM", help="the public key the source model must be signed with")
    add(
        "--source-certificate-chain",
        metavar="PEM",
        help="CA certificates the source signature's signing certificate must chain to",
    )
    add("--source-identity", metavar="ID", help="keyless sigstore: the signer's identity (needs the internet)")
    add("--source-oidc-issuer", metavar="URL", help="keyless sigstore: the identity's OIDC issuer")
    add(
        "--signing-key",
        metavar="PEM",
        help="sign the published version folder (model.sig) with this EC private key",
    )
    add("--pvc-root", metavar="DIR", default=str(DEFAULT_PVC_ROOT), help="where pvc://CLAIM is mounted")
    add(
        "--termination-message-path",
        metavar="PATH",
        help=f"one-line JSON summary for Kubernetes (default: {DEFAULT_TERMINATION_MESSAGE_PATH} in a pod, "
        f"i.e. when {IN_POD_ENV} is set, else none); skipped when its folder is missing, '' disables",
    )
    add("--log-format", metavar="{text,json}", default="text", help="progress log format on stdout")
    add(
        "--owner",
        metavar="NAMESPACE/NAME[/UID]",
        help="the ModelDeployment this artifact is for: written to DIR/owner.json, so the artifact "
        "cleanup removes only its own folders (the operator's Job sets it)",
    )
    add(
        "--reuse-complete-version",
        action="store_true",
        help="when DIR/<version> exists and matches its SHA256SUMS, report it instead of failing "
        "(the operator's Job sets it: a retried pod finds what its first attempt published)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `optimize` subcommand to the `modeldeploy` dispatcher."""
    parser = subparsers.add_parser(COMMAND, help=_HELP, description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.set_defaults(func=_run, usage_error=_usage_error)


def _run(args: argparse.Namespace) -> int:
    from modeldeploy.optimize.job import run

    return run(args)


def _usage_error(argv: list[str], message: str) -> int:
    """argparse's own complaint (an unknown flag, a missing value), reported like any bad flag."""
    from modeldeploy.optimize.job import usage_failure

    return usage_failure(argv, message)
