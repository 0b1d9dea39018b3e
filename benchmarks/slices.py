"""What an average hides: the worst class per optimization on the reference models.

Runs `modeldeploy optimize` (the real pipeline, gate wide open) on the digits MLP and CNN for each
quantization mode and for one-shot pruning without fine-tuning plus int8, and prints a markdown
table: overall accuracy before and after, and the class that lost most with its example count.
The sliced quality gate (`maxSliceAccuracyDrop`) judges exactly that worst class or slice.

    python benchmarks/slices.py [--epochs 20]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from modeldeploy.cli import main as modeldeploy
from modeldeploy.optimize.reference import make_reference

PRUNE = ["--dense-sparsity", "0.8", "--conv-sparsity", "0.5"]
METHODS: tuple[tuple[str, str, list[str]], ...] = (
    ("dynamic", "dynamic", []),
    ("float16", "float16", []),
    ("int8", "int8", []),
    ("prune conv 0.5, dense 0.8 + int8, no fine-tuning", "int8", PRUNE),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of the reference models")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="modeldeploy-slices-"))
    references = make_reference(root / "reference", epochs=args.epochs)
    print("| model | optimization | accuracy before -> after | worst class (examples): before -> after |")
    print("| --- | --- | --- | --- |")
    for name, reference in references.items():
        for index, (label, mode, extra) in enumerate(METHODS):
            out = root / f"{name}-{index}"
            flags = [
                "optimize", "--source", str(reference.keras_path), "--output", str(out), "--version", "1",
                "--quantization", mode, "--train-data", str(reference.train_path),
                "--eval-data", str(reference.eval_path), "--max-accuracy-drop", "1",
                "--termination-message-path", "", *extra,
            ]  # fmt: skip
            with contextlib.redirect_stdout(io.StringIO()):
                code = modeldeploy(flags)
            if code != 0:
                raise SystemExit(f"{name} {label}: exit code {code}")
            evaluation = json.loads((out / "1" / "report.json").read_text())["evaluation"]
            worst = evaluation["sliceGate"]["worstSlice"]
            print(
                f"| {name.upper()} | {label} | {evaluation['before']:.3f} -> {evaluation['after']:.3f} | "
                f"{worst['name']} ({worst['examples']}): {worst['before']:.3f} -> {worst['after']:.3f} |"
            )


if __name__ == "__main__":
    main()
