"""Benchmark of the optimizer's size measurement: gzip level against time and measured size.

`report.json` gives every artifact's gzip size (what a registry or a volume copy moves). gzip -9 on
a pruned model is slow: long runs of zeros make its lazy matcher work hardest, and the size stage
took most of a pruned ResNet50 run. This script measures, on a pruned model's SavedModel and on its
dynamic-range model.tflite, the seconds and the bytes at each zlib level, and how far each level's
size is from gzip -9's, so the level the optimizer uses (`evaluate.GZIP_LEVEL`) is a measured choice.

    python benchmarks/sizes.py [--model resnet50|mlp] [--sparsity 0.8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

LEVELS = (9, 6, 1)


def _build(name: str) -> Any:
    import keras

    if name == "resnet50":
        return keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=10)
    from modeldeploy.optimize.reference import build_mlp

    return build_mlp()


def _prune_by_magnitude(model: Any, sparsity: float) -> None:
    """Zero the smallest weights of every kernel (the size effect of pruning, without training)."""
    for variable in model.trainable_variables:
        if "kernel" not in variable.path:
            continue
        values = np.asarray(variable.numpy())
        threshold = np.quantile(np.abs(values), sparsity)
        variable.assign(np.where(np.abs(values) <= threshold, 0.0, values).astype(values.dtype))


def _gzip_bytes(files: list[Path], level: int) -> tuple[int, float]:
    start = time.perf_counter()
    total = 0
    for file in files:
        compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                total += len(compressor.compress(chunk))
        total += len(compressor.flush())
    return total, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("resnet50", "mlp"), default="resnet50")
    parser.add_argument("--sparsity", type=float, default=0.8)
    args = parser.parse_args(argv)

    from modeldeploy.contract.formats import Quantization
    from modeldeploy.optimize.convert import export_saved_model, keras_signature
    from modeldeploy.optimize.quantize import quantize

    model = _build(args.model)
    _prune_by_magnitude(model, args.sparsity)
    with tempfile.TemporaryDirectory(prefix="modeldeploy-sizes-") as tmp:
        saved = Path(tmp) / "saved"
        export_saved_model(model, keras_signature(model, args.model), saved)
        tflite = Path(tmp) / "model.tflite"
        tflite.write_bytes(quantize(saved, Quantization.DYNAMIC))
        artifacts = {
            "SavedModel": sorted(p for p in saved.rglob("*") if p.is_file()),
            "model.tflite (dynamic)": [tflite],
        }
        print(f"{args.model}, {args.sparsity:.0%} of every kernel zeroed ({model.count_params():,} parameters)")
        print()
        print("| artifact | raw bytes | level | gzip bytes | vs level 9 | seconds | x faster than level 9 |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, files in artifacts.items():
            raw = sum(f.stat().st_size for f in files)
            reference_bytes, reference_seconds = 0, 0.0
            for level in LEVELS:
                size, seconds = _gzip_bytes(files, level)
                if level == LEVELS[0]:
                    reference_bytes, reference_seconds = size, seconds
                print(
                    f"| {name} | {raw:,} | {level} | {size:,} | {size / reference_bytes - 1:+.2%} "
                    f"| {seconds:.2f} | {reference_seconds / seconds:.1f}x |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
