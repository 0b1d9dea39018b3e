"""One optimization run, stage by stage: fetch, load, data, prune, quantize, check, evaluate, bundle, size, export.

Called by the CLI with validated Options. Everything is built in a private work folder (system
temp); the output location is touched only by the final `export` stage, after the conversion check
(`fidelity`: the candidate computes what the original does) and the quality gate have passed, so a
failed run leaves nothing where TF Serving looks. What can be checked without the model is checked
before it loads (minutes for a large one): the output folder, then the dataset files' arrays in
`fetch`; their fit to the model's input in `data`. Each stage is logged with its timing, and
report.json records them all but `export`, which writes and publishes it.

Memory: the peak of a run is the TFLite converter's, which holds several copies of the weights at
once (a 100 MB model peaks at about 1.8 GiB, `benchmarks/optimize.py`). So the `quantize` stage
first takes the Keras model's outputs for the conversion check and frees the model (one copy
fewer at the peak, and in `check` and `evaluate`), and collects the converter's garbage after it.
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from modeldeploy import __version__
from modeldeploy.contract.failures import Failure
from modeldeploy.contract.formats import ModelFormat, Quantization
from modeldeploy.contract.layout import REPORT_FILE, SIGNATURE_FILE, SUMS_FILE, TFLITE_FILE
from modeldeploy.contract.sums import tree_manifest, write_sums
from modeldeploy.optimize.accuracy import METRICS, Task
from modeldeploy.optimize.convert import (
    ModelSignature,
    export_saved_model,
    float32_compute,
    keras_signature,
    load_keras_model,
    locate_saved_model,
    saved_model_signature,
)
from modeldeploy.optimize.data import Dataset, fit_to_model, load_npz
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.evaluate import (
    GZIP_LEVEL,
    KerasPredictor,
    Latency,
    Predictor,
    SavedModelPredictor,
    Size,
    TFLitePredictor,
    ends_in_sigmoid,
    judge,
    measure_latency,
    outputs_of,
    require_applicable,
    scoring_for,
    size_of,
)
from modeldeploy.optimize.export import check_output, check_target, publish, remove_stale_staging
from modeldeploy.optimize.fidelity import CHECK_EXAMPLES, FidelityCheck, compare_outputs
from modeldeploy.optimize.logs import ProgressLog
from modeldeploy.optimize.options import Options
from modeldeploy.optimize.prune import PruneReport, prune
from modeldeploy.optimize.quantize import Encoding, artifact_format, choose_encoding, quantize, representative_sample
from modeldeploy.optimize.report import Evaluation, Report
from modeldeploy.optimize.reuse import recorded_options
from modeldeploy.optimize.signing import SignatureProblem, key_fingerprint, sign_folder, verify
from modeldeploy.optimize.storage import Fetched, display_uri, fetch

_NOT_FROM_SOURCE = shutil.ignore_patterns(TFLITE_FILE, REPORT_FILE, SUMS_FILE, SIGNATURE_FILE)


@dataclass(frozen=True)
class Outcome:
    report: Report
    path: Path


def _fetch_dataset(uri: str | None, work: Path, opts: Options, what: str) -> Fetched | None:
    if uri is None:
        return None
    return fetch(uri, work, pvc_root=opts.pvc_root, what=what)


def _read_dataset(fetched: Fetched | None) -> Dataset | None:
    """The arrays, checked on their own: before the model loads, so a bad file fails in seconds."""
    return None if fetched is None else load_npz(fetched.path, fetched.uri)


def _dataset(dataset: Dataset | None, signature: ModelSignature, task: Task | None, purpose: str) -> Dataset | None:
    if dataset is None:
        return None
    return fit_to_model(dataset, signature.input_shape, signature.input_dtype, signature.num_classes, task, purpose)


SYNTHETIC_EXAMPLES = 200
# An unknown input dimension (an image of any size, a sequence of any length) gets this size in
# generated inputs: 1 would be smaller than a 3x3 convolution without padding.
SYNTHETIC_UNKNOWN_DIM = 16


def _synthetic(signature: ModelSignature, count: int) -> np.ndarray[Any, Any]:
    shape = (count, *(SYNTHETIC_UNKNOWN_DIM if d is None else d for d in signature.input_shape))
    rng, dtype = np.random.default_rng(0), np.dtype(signature.input_dtype)
    if dtype.kind in "biu":
        # Integer inputs get 0s and 1s, mixed: a larger token id could be past an Embedding's
        # vocabulary (an error in TensorFlow; for uint8 images it means nearly black ones, still
        # varied), and random floats cast to integers are all 0, which would check the conversion
        # on a single input repeated.
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.random(shape).astype(dtype)


def _inputs(signature: ModelSignature, train: Dataset | None, evaluation_data: Dataset | None) -> tuple[Any, str]:
    """Real inputs when there are any (eval data, else train data), else generated ones; and which."""
    if evaluation_data is not None:
        return evaluation_data.x, "eval-data"
    if train is not None:
        return train.x, "train-data"
    return _synthetic(signature, SYNTHETIC_EXAMPLES), "synthetic"


@dataclass(frozen=True)
class _Loaded:
    signature: ModelSignature
    baseline_dir: Path  # the unoptimized model as a SavedModel: the reference for every comparison
    keras_model: Any  # None for a SavedModel source, and once freed before conversion
    sigmoid: bool = False  # the Keras model's last layer is a sigmoid (read before it is freed)


@dataclass(frozen=True)
class _Measured:
    evaluation: Evaluation | None
    latency_baseline: Latency
    latency_optimized: Latency
    latency_data: str
    fidelity: FidelityCheck


def run(opts: Options, log: ProgressLog) -> Outcome:
    """Run every stage; raise OptimizeError with the failure's class, or return the report."""
    started = time.monotonic()
    check_target(opts.output, opts.version)  # cheap: fail before minutes of work
    check_output(opts.output)
    signer = _signer(opts.signing_key)  # a bad signing key, too
    with tempfile.TemporaryDirectory(prefix="modeldeploy-optimize-") as tmp:
        work = Path(tmp)
        with log.stage("fetch", source=display_uri(opts.source)):
            source = fetch(
                opts.source, work / "source", pvc_root=opts.pvc_root, what="model", expected_sha256=opts.sha256
            )
            log.info("model fetched", stage="fetch", sha256=source.sha256, bytes=source.size_bytes)
            source_signer = _verify_source(opts, source, work, log)
            train_file = _fetch_dataset(opts.train_data, work / "train", opts, "train data")
            eval_file = _fetch_dataset(opts.eval_data, work / "eval", opts, "eval data")
            train_arrays, eval_arrays = _read_dataset(train_file), _read_dataset(eval_file)
        with log.stage("load", format=opts.format.value):
            loaded = _load(opts, source, work, log)
            signature = loaded.signature
            log.info(
                "model loaded",
                stage="load",
                input=f"{signature.input_name}{list(signature.input_shape)}",
                classes=signature.num_classes,
            )
        with log.stage("data"):
            # Fine-tuning reads class labels; int8 calibration reads x only (a regression model's too).
            labels = Task.CLASSIFICATION if opts.fine_tune_epochs else None
            train = _dataset(train_arrays, signature, labels, "fine-tuning")
            metric = METRICS[opts.metric]
            evaluation_data = _dataset(eval_arrays, signature, metric.task, f"metric {metric.name}")
            if evaluation_data is not None:
                require_applicable(metric, opts.top_k, signature.num_classes)
            log.info(
                "datasets checked",
                stage="data",
                train=len(train) if train is not None else "none",
                eval=len(evaluation_data) if evaluation_data is not None else "none",
            )
        optimized_dir, prune_report = loaded.baseline_dir, None
        if opts.prunes:
            with log.stage("prune", dense=opts.dense_sparsity, conv=opts.conv_sparsity, epochs=opts.fine_tune_epochs):
                optimized_dir, prune_report = _prune(opts, loaded, train, work, log)
        elif opts.fine_tune_epochs > 0:
            log.info("fine-tuning skipped: nothing is pruned", stage="prune")
        tflite, representative_from, encoding = None, None, None
        original: npt.NDArray[Any] | OptimizeError | None = None  # None: the check runs the original itself
        if opts.quantization is not Quantization.NONE:
            with log.stage("quantize", mode=opts.quantization.value):
                # The converter holds several copies of the weights at once; the Keras model would
                # be one more. Its outputs for the conversion check are taken now and it is freed
                # (a failure to run it is the check's to report, after conversion as before).
                original, loaded = _original_outputs_now(loaded, train, evaluation_data)
                gc.collect()  # a Keras model is a web of reference cycles: only the collector frees its weights
                tflite, representative_from = _quantize(opts, optimized_dir, train, evaluation_data)
                gc.collect()  # the converter's SavedModel and graphs are reference cycles: free them now
                log.info("model.tflite built", stage="quantize", bytes=len(tflite))
                if prune_report is not None:
                    tflite, encoding = _sparse_encoding(opts, optimized_dir, tflite, signature, train, evaluation_data)
                    log.info(
                        f"{'sparse' if encoding.sparse else 'dense'} encoding kept: {encoding.reason}",
                        stage="quantize",
                        dense_bytes=encoding.dense_bytes,
                        sparse_bytes=encoding.sparse_bytes,
                    )
        with log.stage("check", artifact="model.tflite" if tflite is not None else "SavedModel"):
            fidelity = _check_conversion(opts, loaded, optimized_dir, tflite, train, evaluation_data, original)
            log.info(fidelity.message(), stage="check", passed=fidelity.passed)
        # Before the quality gate: a broken conversion must be named as such, not as lost accuracy.
        if not fidelity.passed:
            raise OptimizeError(Failure.CONVERSION_MISMATCH, fidelity.message())
        with log.stage("evaluate"):
            measured = _evaluate(opts, loaded, optimized_dir, tflite, train, evaluation_data, fidelity, log)
        failed = measured.evaluation.failure() if measured.evaluation is not None else None
        if failed is not None:
            raise OptimizeError(Failure.QUALITY_GATE_FAILED, failed)
        bundle = work / "bundle"
        with log.stage("bundle"):
            artifacts = _bundle(bundle, optimized_dir, tflite)
        with log.stage("size", gzip_level=GZIP_LEVEL):
            sizes = _sizes(loaded.baseline_dir, bundle, quantized=tflite is not None)
        # report.json holds every stage's timing but its own publication's (the log has that one).
        with log.stage("export", output=str(opts.output / str(opts.version))):
            report = _report(
                opts,
                source=source,
                signature=signature,
                sizes=sizes,
                representative_from=representative_from,
                prune_report=prune_report,
                measured=measured,
                artifacts=artifacts,
                data_sha256={
                    "train": train_file.sha256 if train_file is not None else None,
                    "eval": eval_file.sha256 if eval_file is not None else None,
                },
                encoding=encoding,
                log=log,
                started=started,
                signer=signer,
                source_signer=source_signer,
            )
            (bundle / REPORT_FILE).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
            if opts.signing_key is not None:
                _sign(bundle, opts.signing_key, log)  # model.sig, which SHA256SUMS then lists
            write_sums(bundle)
            for stale in remove_stale_staging(opts.output, opts.version):
                log.warning(f"removed a staging folder left by an interrupted run: {stale}", stage="export")
            path = publish(bundle, opts.output, opts.version)
    return Outcome(report=report, path=path)


def _verify_source(opts: Options, source: Fetched, work: Path, log: ProgressLog) -> str | None:
    """Check the source model's OpenSSF signature before any work; returns the signer, None when not asked."""
    if opts.source_trust is None or opts.source_signature is None:
        return None
    try:
        signature = fetch(opts.source_signature, work / "signature", pvc_root=opts.pvc_root, what="model signature")
    except OptimizeError as error:
        if error.failure is not Failure.FETCH_FAILED:
            raise
        raise OptimizeError(Failure.SIGNATURE_MISSING, error.message) from None
    if signature.path.is_dir():
        raise OptimizeError(
            Failure.SIGNATURE_MISSING, f"model signature {display_uri(opts.source_signature)} is a folder"
        )
    try:
        verified = verify(source.path, signature.path, opts.source_trust)
    except SignatureProblem as problem:
        failure = Failure.SIGNATURE_MISSING if problem.missing else Failure.SIGNATURE_INVALID
        raise OptimizeError(failure, f"model {display_uri(opts.source)}: {problem.message}") from None
    log.info("model signature verified", stage="fetch", signer=verified.signer)
    return verified.signer


def _load(opts: Options, source: Fetched, work: Path, log: ProgressLog) -> _Loaded:
    """The model and its signature, and the baseline SavedModel every comparison is made against."""
    if opts.format is ModelFormat.SAVEDMODEL:
        if opts.prunes:
            raise OptimizeError(
                Failure.UNSUPPORTED_MODEL,
                f"model {display_uri(opts.source)}: pruning needs the Keras model (.keras or .h5); "
                "a SavedModel can be quantized only",
            )
        baseline_dir = locate_saved_model(source.path, work / "source-unpacked", opts.source)
        return _Loaded(saved_model_signature(baseline_dir, opts.source), baseline_dir, None)
    model = load_keras_model(source.path, opts.format, work / "source-link", opts.source)
    model, policy = float32_compute(model, opts.source)
    if policy is not None:
        log.info(f"the model computes in {policy}: rebuilt computing in float32, same weights", stage="load")
    signature = keras_signature(model, opts.source)
    export_saved_model(model, signature, work / "baseline")
    return _Loaded(signature, work / "baseline", model, ends_in_sigmoid(model))


def _prune(
    opts: Options, loaded: _Loaded, train: Dataset | None, work: Path, log: ProgressLog
) -> tuple[Path, PruneReport]:
    report = prune(
        loaded.keras_model,
        dense_sparsity=opts.dense_sparsity,
        conv_sparsity=opts.conv_sparsity,
        fine_tune_epochs=opts.fine_tune_epochs,
        train=train,
        log=log,
        schedule=opts.pruning_schedule,
        keep_classifier_dense=opts.keep_classifier_dense,
        dense_block=opts.dense_block_size,
    )
    for layer in report.layers:
        log.info(
            f"{layer.weight}: sparsity {layer.sparsity:.4f}", stage="prune", family=layer.family, target=layer.target
        )
    export_saved_model(loaded.keras_model, loaded.signature, work / "pruned")
    return work / "pruned", report


def _quantize(
    opts: Options, saved_model_dir: Path, train: Dataset | None, evaluation_data: Dataset | None
) -> tuple[bytes, str | None]:
    if opts.quantization is not Quantization.INT8:
        return quantize(saved_model_dir, opts.quantization), None
    calibration, source = (train, "train-data") if train is not None else (evaluation_data, "eval-data")
    if calibration is None:  # options_from_args refuses int8 without data; keep the message anyway
        raise OptimizeError(Failure.INVALID_ARGUMENTS, "int8 needs representative data: give --train-data")
    return quantize(saved_model_dir, opts.quantization, representative_sample(calibration.x)), source


def _sparse_encoding(
    opts: Options,
    saved_model_dir: Path,
    dense: bytes,
    signature: ModelSignature,
    train: Dataset | None,
    evaluation_data: Dataset | None,
) -> tuple[bytes, Encoding]:
    """The pruned model converted again with sparse encoding; `choose_encoding` keeps the better one."""
    calibration = train if train is not None else evaluation_data
    representative = (
        representative_sample(calibration.x)
        if opts.quantization is Quantization.INT8 and calibration is not None
        else None
    )
    try:
        sparse: bytes | None = quantize(saved_model_dir, opts.quantization, representative, sparse=True)
    except OptimizeError:
        sparse = None
    return choose_encoding(dense, sparse, opts.quantization, _inputs(signature, train, evaluation_data)[0])


def _candidate(loaded: _Loaded, optimized_dir: Path, tflite: bytes | None) -> Predictor:
    """What TF Serving will load: model.tflite when quantized, else the (pruned) SavedModel."""
    if tflite is not None:
        return TFLitePredictor(tflite)
    return SavedModelPredictor(optimized_dir, loaded.signature)


def _original(loaded: _Loaded) -> Predictor:
    """The original in its own runtime, after pruning: the Keras model in memory covers our
    SavedModel export too; a SavedModel source is its own serving signature."""
    if loaded.keras_model is not None:
        return KerasPredictor(loaded.keras_model)
    return SavedModelPredictor(loaded.baseline_dir, loaded.signature)


def _original_outputs(loaded: _Loaded, train: Dataset | None, evaluation_data: Dataset | None) -> npt.NDArray[Any]:
    """The original's outputs on the conversion check's inputs."""
    all_inputs, data = _inputs(loaded.signature, train, evaluation_data)
    try:
        return _original(loaded).predict(all_inputs[:CHECK_EXAMPLES])
    except (ValueError, RuntimeError) as exc:  # as in evaluate.score: the data does not fit the model
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OptimizeError(
            Failure.INVALID_DATASET, f"running the original model on {data} failed: {first[:300]}"
        ) from None


def _original_outputs_now(
    loaded: _Loaded, train: Dataset | None, evaluation_data: Dataset | None
) -> tuple[npt.NDArray[Any] | OptimizeError | None, _Loaded]:
    """Before conversion: the Keras model's outputs for the check (or why it could not run), and
    `loaded` without the Keras model, for the caller to drop the last reference to it. A SavedModel
    source has nothing to free."""
    if loaded.keras_model is None:
        return None, loaded
    try:
        outputs: npt.NDArray[Any] | OptimizeError = _original_outputs(loaded, train, evaluation_data)
    except OptimizeError as error:
        outputs = error
    return outputs, replace(loaded, keras_model=None)


def _check_conversion(
    opts: Options,
    loaded: _Loaded,
    optimized_dir: Path,
    tflite: bytes | None,
    train: Dataset | None,
    evaluation_data: Dataset | None,
    original: npt.NDArray[Any] | OptimizeError | None = None,
) -> FidelityCheck:
    """Run the original (unless its outputs were taken before conversion) and the candidate on the
    same inputs and apply `fidelity`'s rule."""
    if isinstance(original, OptimizeError):
        raise original
    expected = original if original is not None else _original_outputs(loaded, train, evaluation_data)
    candidate = _candidate(loaded, optimized_dir, tflite)
    all_inputs, data = _inputs(loaded.signature, train, evaluation_data)
    x = all_inputs[:CHECK_EXAMPLES]
    artifact = TFLITE_FILE if tflite is not None else "SavedModel"
    try:
        return compare_outputs(expected, candidate.predict(x), opts.quantization, artifact=artifact, data=data)
    except (ValueError, RuntimeError) as exc:  # the original ran on these inputs: the conversion broke
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OptimizeError(
            Failure.CONVERSION_MISMATCH, f"{artifact} ({opts.quantization.value}) fails on {data}: {first[:300]}"
        ) from None


def _evaluate(
    opts: Options,
    loaded: _Loaded,
    optimized_dir: Path,
    tflite: bytes | None,
    train: Dataset | None,
    evaluation_data: Dataset | None,
    fidelity: FidelityCheck,
    log: ProgressLog,
) -> _Measured:
    """Quality before and after (when there is eval data), latency per example of both."""
    metric = METRICS[opts.metric]
    baseline: Predictor = SavedModelPredictor(loaded.baseline_dir, loaded.signature)
    candidate = _candidate(loaded, optimized_dir, tflite)
    evaluation = None
    if evaluation_data is not None:
        before = outputs_of(baseline, evaluation_data.x, "baseline")
        after = outputs_of(candidate, evaluation_data.x, "optimized")
        # Decided on the original's outputs, then applied alike to both: a logit is read by its sign.
        scoring = scoring_for(metric, before, sigmoid=loaded.sigmoid, top_k=opts.top_k)
        judged = judge(
            metric,
            scoring,
            evaluation_data.y,
            before,
            after,
            slices=evaluation_data.slices,
            max_drop=opts.max_accuracy_drop,
            max_slice_drop=opts.max_slice_accuracy_drop,
            min_slice_examples=opts.min_slice_examples,
        )
        gate = judged.gate
        evaluation = Evaluation(
            metric=metric.name,
            examples=len(evaluation_data),
            data_uri=display_uri(evaluation_data.uri),
            gate=gate,
            slice_gate=judged.slices,
            metrics=judged.metrics,
            scoring=scoring,
        )
        log.info(gate.message(), stage="evaluate", before=round(gate.before, 4), after=round(gate.after, 4))
        log.info(judged.slices.message(), stage="evaluate", slices=len(judged.slices.classes + judged.slices.slices))
    else:
        log.warning("no --eval-data: quality not measured, no quality gate", stage="evaluate")
    latency_x, latency_data = _inputs(loaded.signature, train, evaluation_data)
    latency_baseline = measure_latency(baseline, latency_x)
    latency_optimized = measure_latency(candidate, latency_x)
    log.info(f"p50 {latency_baseline.p50_ms:.3f} ms -> {latency_optimized.p50_ms:.3f} ms per example", stage="evaluate")
    return _Measured(evaluation, latency_baseline, latency_optimized, latency_data, fidelity)


def _bundle(bundle: Path, optimized_dir: Path, tflite: bytes | None) -> dict[str, str]:
    """Assemble the version folder's model files in the work folder; their sha256 by relative path."""
    shutil.copytree(optimized_dir, bundle, ignore=_NOT_FROM_SOURCE)
    if tflite is not None:
        (bundle / TFLITE_FILE).write_bytes(tflite)
    return dict(tree_manifest(bundle))


@dataclass(frozen=True)
class _Sizes:
    baseline: Size
    saved_model: Size
    optimized: Size


def _sizes(baseline_dir: Path, bundle: Path, *, quantized: bool) -> _Sizes:
    """Raw and gzip sizes of the baseline, the published SavedModel and model.tflite, in parallel
    (zlib releases the GIL: on two cores the stage takes the time of its largest artifact)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        baseline = pool.submit(size_of, baseline_dir)
        saved_model = pool.submit(size_of, bundle, frozenset({TFLITE_FILE}))
        tflite = pool.submit(size_of, bundle / TFLITE_FILE) if quantized else None
        saved = saved_model.result()
        return _Sizes(
            baseline=baseline.result(), saved_model=saved, optimized=tflite.result() if tflite is not None else saved
        )


def _sign(bundle: Path, private_key: Path, log: ProgressLog) -> None:
    started = time.monotonic()
    try:
        signed = sign_folder(bundle, private_key, bundle / SIGNATURE_FILE)
    except SignatureProblem as problem:
        raise OptimizeError(Failure.EXPORT_FAILED, problem.message) from None
    seconds = round(time.monotonic() - started, 3)
    log.info("version folder signed", stage="export", signer=signed.signer, seconds=seconds)


def _signer(private_key: Path | None) -> str | None:
    """The identity the folder will be signed as: the fingerprint of the key's public half."""
    if private_key is None:
        return None
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(private_key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise OptimizeError(Failure.EXPORT_FAILED, f"cannot read the signing key {private_key}: {exc}") from None
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key_fingerprint(public)


def _report(
    opts: Options,
    *,
    source: Fetched,
    signature: ModelSignature,
    sizes: _Sizes,
    representative_from: str | None,
    prune_report: PruneReport | None,
    measured: _Measured,
    artifacts: dict[str, str],
    data_sha256: dict[str, str | None],
    log: ProgressLog,
    started: float,
    signer: str | None = None,
    source_signer: str | None = None,
    encoding: Encoding | None = None,
) -> Report:
    import keras
    import tensorflow as tf

    return Report(
        version=opts.version,
        format=artifact_format(opts.quantization),
        source_uri=display_uri(opts.source),
        source_format=opts.format.value,
        source_sha256=source.sha256,
        source_bytes=source.size_bytes,
        baseline_size=sizes.baseline,
        optimized_size=sizes.optimized,
        saved_model_size=sizes.saved_model,
        requested_sparsity={"dense": opts.dense_sparsity, "conv": opts.conv_sparsity},
        prune=prune_report,
        quantization=opts.quantization.value,
        representative_data=representative_from,
        evaluation=measured.evaluation,
        latency_baseline=measured.latency_baseline,
        latency_optimized=measured.latency_optimized,
        latency_data=measured.latency_data,
        fidelity=measured.fidelity,
        artifacts=artifacts,
        artifact_sha256=artifacts.get(TFLITE_FILE) or artifacts["saved_model.pb"],
        stages=dict(log.timings),
        duration_seconds=round(time.monotonic() - started, 3),
        tool={"modeldeploy": __version__, "tensorflow": str(tf.__version__), "keras": str(keras.__version__)},
        options=recorded_options(opts),
        data_sha256=data_sha256,
        input_dtype=signature.input_dtype,
        signer=signer,
        source_signer=source_signer,
        tflite_encoding=encoding,
    )
