"""Benchmark of `modeldeploy optimize` on the reference models: size, accuracy, latency, wall time.

For each reference model (the digits MLP and CNN, trained here without any download) and each
method, runs the real optimization pipeline and prints a markdown table:
raw and gzip size and how many times smaller than the baseline SavedModel, accuracy and its change
in points, p50 latency per example and the speed-up over the baseline SavedModel (its serving
signature called on one example; TFLite: interpreter invoke on one example), and the wall time of
the optimization itself (prune + fine-tune + quantize) and of the whole run. Then it checks the goals.

    python benchmarks/optimize.py [--cache .cache/reference-models] [--fine-tune-epochs 5]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from modeldeploy.optimize.logs import ProgressLog
from modeldeploy.optimize.options import ModelFormat, Options, Quantization
from modeldeploy.optimize.reference import ReferenceModel, make_reference


@dataclass(frozen=True)
class Method:
    name: str
    sparsity: float
    quantization: Quantization


METHODS = (
    Method("none", 0.0, Quantization.NONE),
    Method("prune 50%", 0.5, Quantization.NONE),
    Method("prune 80%", 0.8, Quantization.NONE),
    Method("dynamic", 0.0, Quantization.DYNAMIC),
    Method("float16", 0.0, Quantization.FLOAT16),
    Method("int8", 0.0, Quantization.INT8),
    Method("prune 80% + int8", 0.8, Quantization.INT8),
)

GOALS = "int8 >= 3.5x smaller raw; prune 80% + int8 >= 8x smaller gzip; drop <= 1 point; int8 p50 >= 2x faster"


@dataclass(frozen=True)
class Row:
    method: str
    format: str
    raw: int
    gzip: int
    raw_ratio: float
    gzip_ratio: float
    accuracy: float
    delta_points: float
    p50_us: float
    baseline_p50_us: float
    speedup: float
    optimize_s: float
    total_s: float


def reference_models(cache: Path) -> dict[str, ReferenceModel]:
    models = {}
    if all((cache / f"{name}.keras").is_file() for name in ("mlp", "cnn")) and (cache / "reference.json").is_file():
        import json

        manifest = json.loads((cache / "reference.json").read_text())
        for name, entry in manifest["models"].items():
            models[name] = ReferenceModel(
                name=name,
                keras_path=cache / f"{name}.keras",
                h5_path=cache / f"{name}.h5",
                train_path=cache / f"{name}-train.npz",
                eval_path=cache / f"{name}-eval.npz",
                eval_accuracy=float(entry["evalAccuracy"]),
                params=int(entry["params"]),
            )
        return models
    print(f"training the reference models into {cache} ...", file=sys.stderr, flush=True)
    return make_reference(cache)


def run_method(model: ReferenceModel, method: Method, epochs: int, work: Path) -> Row:
    from modeldeploy.optimize import pipeline

    output = work / model.name / method.name.replace(" ", "").replace("%", "").replace("+", "-")
    options = Options(
        source=str(model.keras_path),
        format=ModelFormat.KERAS,
        sha256=None,
        output=output,
        version=1,
        dense_sparsity=method.sparsity,
        conv_sparsity=method.sparsity,
        fine_tune_epochs=epochs if method.sparsity > 0 else 0,
        train_data=str(model.train_path),
        quantization=method.quantization,
        eval_data=str(model.eval_path),
        metric="accuracy",
        max_accuracy_drop=1.0,  # measure, do not gate
        pvc_root=work,
        termination_message_path=None,
        log_format="text",
    )
    log = ProgressLog(stream=io.StringIO())
    report = pipeline.run(options, log).report
    data = report.to_json()
    sizes = data["sizes"]
    evaluation = data["evaluation"]
    latency = data["latency"]
    stages = data["stages"]
    return Row(
        method=method.name,
        format=data["format"],
        raw=sizes["optimized"]["bytes"],
        gzip=sizes["optimized"]["gzipBytes"],
        raw_ratio=sizes["ratioRaw"],
        gzip_ratio=sizes["ratioGzip"],
        accuracy=evaluation["after"],
        delta_points=(evaluation["after"] - evaluation["before"]) * 100,
        p50_us=latency["optimized"]["p50Ms"] * 1000,
        baseline_p50_us=latency["baseline"]["p50Ms"] * 1000,
        speedup=latency["baseline"]["p50Ms"] / latency["optimized"]["p50Ms"],
        optimize_s=stages.get("prune", 0.0) + stages.get("quantize", 0.0),
        total_s=data["durationSeconds"],
    )


def float_tflite_row(model: ReferenceModel, work: Path, baseline: Row) -> Row:
    """For context, not a product mode: the same model as an unquantized float32 TFLite file.

    It separates the gain of the TFLite runtime (no TensorFlow graph call per request) from the
    gain of quantization.
    """
    import time

    import keras
    import numpy as np

    from modeldeploy.optimize.convert import export_saved_model, keras_signature
    from modeldeploy.optimize.evaluate import SavedModelPredictor, TFLitePredictor, measure_latency, size_of

    started = time.monotonic()
    keras_model = keras.models.load_model(model.keras_path, compile=False)
    signature = keras_signature(keras_model, str(model.keras_path))
    saved_model = work / f"{model.name}-float-savedmodel"
    export_saved_model(keras_model, signature, saved_model)
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model), signature_keys=["serving_default"])
    content = bytes(converter.convert())
    convert_s = time.monotonic() - started
    (work / f"{model.name}-float.tflite").write_bytes(content)
    size = size_of(work / f"{model.name}-float.tflite")
    with np.load(model.eval_path) as data:
        x, y = data["x"].astype("float32"), data["y"]
    predictor = TFLitePredictor(content)
    accuracy = float(np.mean(np.argmax(predictor.predict(x), axis=-1) == y))
    reference = SavedModelPredictor(saved_model, signature)
    base_p50 = measure_latency(reference, x).p50_ms * 1000
    p50 = measure_latency(predictor, x).p50_ms * 1000
    return Row(
        method="(context) tflite float32",
        format="tflite, no quantization",
        raw=size.bytes,
        gzip=size.gzip_bytes,
        raw_ratio=baseline.raw / size.bytes,
        gzip_ratio=baseline.gzip / size.gzip_bytes,
        accuracy=accuracy,
        delta_points=(accuracy - baseline.accuracy) * 100,
        p50_us=p50,
        baseline_p50_us=base_p50,
        speedup=base_p50 / p50,
        optimize_s=convert_s,
        total_s=time.monotonic() - started,
    )


def table(model: ReferenceModel, rows: list[Row], context: Row) -> str:
    base = rows[0]
    raw, gz, baseline_p50_us = base.raw, base.gzip, base.baseline_p50_us
    lines = [
        f"### {model.name.upper()} ({model.params:,} parameters; baseline SavedModel {raw:,} B raw, "
        f"{gz:,} B gzip, p50 {baseline_p50_us:.0f} µs)",
        "",
        "| method | artifact | raw bytes | gzip bytes | raw x smaller | gzip x smaller | accuracy | Δ points "
        "| p50 µs/example | speed-up | optimize s | run s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in [*rows, context]:
        lines.append(
            f"| {r.method} | {r.format} | {r.raw:,} | {r.gzip:,} | {r.raw_ratio:.2f} | {r.gzip_ratio:.2f} "
            f"| {r.accuracy:.4f} | {r.delta_points:+.2f} | {r.p50_us:.1f} | {r.speedup:.1f}x "
            f"| {r.optimize_s:.2f} | {r.total_s:.1f} |"
        )
    return "\n".join(lines)


def goals(name: str, rows: list[Row]) -> list[str]:
    by = {r.method: r for r in rows}
    checks = [
        (f"{name}: int8 raw {by['int8'].raw_ratio:.2f}x smaller (goal >= 3.5x)", by["int8"].raw_ratio >= 3.5),
        (
            f"{name}: prune 80% + int8 gzip {by['prune 80% + int8'].gzip_ratio:.2f}x smaller (goal >= 8x)",
            by["prune 80% + int8"].gzip_ratio >= 8,
        ),
        (f"{name}: int8 p50 {by['int8'].speedup:.1f}x faster (goal >= 2x)", by["int8"].speedup >= 2),
    ]
    worst = min(rows, key=lambda r: r.delta_points)
    checks.append(
        (
            f"{name}: largest accuracy drop {-worst.delta_points:.2f} points ({worst.method}; goal <= 1)",
            worst.delta_points >= -1.0,
        )
    )
    return [f"- {'met' if ok else 'MISSED'}: {text}" for text, ok in checks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(".cache/reference-models"), help="reference models")
    parser.add_argument("--fine-tune-epochs", type=int, default=5, help="fine-tuning epochs after pruning (5)")
    args = parser.parse_args(argv)

    models = reference_models(args.cache)
    report_lines = [f"Goals: {GOALS}.", ""]
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-") as tmp:
        for name in ("mlp", "cnn"):
            model = models[name]
            rows = []
            for method in METHODS:
                print(f"{name}: {method.name} ...", file=sys.stderr, flush=True)
                rows.append(run_method(model, method, args.fine_tune_epochs, Path(tmp)))
            context = float_tflite_row(model, Path(tmp), rows[0])
            report_lines += [table(model, rows, context), ""]
            verdicts += goals(name.upper(), rows)
    print("\n".join(report_lines + verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
