"""Benchmark of OpenSSF model signing: what signing and verifying a 100 MB model costs, next to the
wall time of optimizing that model.

Two measurements, printed as markdown tables:

1. A 100 MB version folder (random, incompressible bytes in a SavedModel-like layout): sha256 of
   every file (what SHA256SUMS alone costs), sign (`optimize/signing.sign_folder`), verify with the
   public key (what the verify-model init container does). Median of --runs runs.
2. A real optimization of a Keras MLP of about 100 MB (float32 weights; dynamic quantization, the
   conversion check on generated inputs), run by `modeldeploy optimize` twice: without signatures,
   then with the source signature verified and the published folder signed. The signature steps are
   timed on their own too, and compared with the unsigned run's wall time (goal: < 5 %).

    python benchmarks/signing.py [--runs 3] [--megabytes 100] [--skip-optimize]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from modeldeploy.contract.layout import SIGNATURE_FILE
from modeldeploy.contract.sums import tree_manifest, write_sums
from modeldeploy.optimize.signing import Trust, sign_folder, verify

MB = 1 << 20


def key_pair(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / "signing.key", folder / "signing.pub"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return private, public


def random_folder(folder: Path, megabytes: int) -> int:
    """A SavedModel-like layout: most bytes in the variables shard, some in the graph and model.tflite."""
    (folder / "variables").mkdir(parents=True)
    sizes = {
        "variables/variables.data-00000-of-00001": megabytes * MB * 3 // 4,
        "model.tflite": megabytes * MB // 5,
        "saved_model.pb": megabytes * MB // 20,
        "variables/variables.index": 4096,
        "report.json": 8192,
    }
    for name, size in sizes.items():
        with (folder / name).open("wb") as out:
            for start in range(0, size, 8 * MB):
                out.write(os.urandom(min(8 * MB, size - start)))
    return sum(sizes.values())


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def folder_table(runs: int, megabytes: int) -> None:
    rows: dict[str, list[float]] = {"sha256 of every file (SHA256SUMS alone)": [], "sign": [], "verify": []}
    size = 0
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-signing-") as tmp:
            root = Path(tmp)
            private, public = key_pair(root)
            folder = root / "1"
            size = random_folder(folder, megabytes)
            rows["sha256 of every file (SHA256SUMS alone)"].append(timed(lambda: tree_manifest(folder)))  # noqa: B023
            rows["sign"].append(timed(lambda: sign_folder(folder, private, folder / SIGNATURE_FILE)))  # noqa: B023
            write_sums(folder)
            trust = Trust(public_key=public)
            rows["verify"].append(timed(lambda: verify(folder, folder / SIGNATURE_FILE, trust)))  # noqa: B023
    print(f"\n{size / MB:.0f} MB version folder, {runs} runs (median, min, max seconds; MB/s at the median)\n")
    print("| step | median s | min s | max s | MB/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for step, values in rows.items():
        median = statistics.median(values)
        print(f"| {step} | {median:.3f} | {min(values):.3f} | {max(values):.3f} | {size / MB / median:.0f} |")


def big_mlp(path: Path, hidden: int) -> int:
    """A Keras MLP for 28x28 inputs whose float32 weights weigh about what was asked; returns its bytes."""
    import keras

    model = keras.Sequential(
        [
            keras.Input((784,), name="pixels"),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(path)
    return path.stat().st_size


def optimize(*args: str | Path) -> float:
    from modeldeploy.cli import main

    out = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out):
        code = main(["optimize", *map(str, args), "--termination-message-path", ""])
    elapsed = time.perf_counter() - started
    if code != 0:
        sys.exit(f"modeldeploy optimize failed ({code}):\n{out.getvalue()[-3000:]}")
    return elapsed


def optimization_table(megabytes: int) -> None:
    import model_signing

    # 784*h + h*h + 10*h float32 weights = megabytes
    hidden = int(((794**2 + 4 * megabytes * MB / 4) ** 0.5 - 794) / 2)
    with tempfile.TemporaryDirectory(prefix="bench-signing-") as tmp:
        root = Path(tmp)
        private, public = key_pair(root)
        model = root / "big.keras"
        size = big_mlp(model, hidden)
        signature = root / "big.keras.sig"
        sign_source = timed(
            lambda: model_signing.signing.Config().use_elliptic_key_signer(private_key=private).sign(model, signature)
        )
        common = ("--source", model, "--quantization", "dynamic", "--version", "1")
        plain = optimize(*common, "--output", root / "plain")
        signed = optimize(*common, "--output", root / "signed", "--source-public-key", public, "--signing-key", private)
        folder = root / "signed" / "1"
        published = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        verify_source = timed(lambda: verify(model, signature, Trust(public_key=public)))
        sign_published = timed(lambda: sign_folder(folder, private, root / "again.sig"))
        verify_published = timed(lambda: verify(folder, folder / SIGNATURE_FILE, Trust(public_key=public)))
    overhead = verify_source + sign_published + verify_published
    print(
        f"\nOptimizing a Keras MLP of {size / MB:.0f} MB ({hidden} units x 2; dynamic quantization; published "
        f"folder {published / MB:.0f} MB): the signature steps against the unsigned run's wall time\n"
    )
    print("| step | seconds | % of the optimization |")
    print("| --- | ---: | ---: |")
    for step, seconds in (
        ("(producer) sign the source .keras", sign_source),
        ("Job: verify the source signature", verify_source),
        ("Job: sign the published folder", sign_published),
        ("verify-model: verify the published folder", verify_published),
        ("all three in our path", overhead),
        ("optimization, unsigned (wall time)", plain),
        ("optimization, source verified + folder signed (wall time)", signed),
    ):
        print(f"| {step} | {seconds:.2f} | {100 * seconds / plain:.1f} % |")
    verdict = "met" if overhead / plain < 0.05 else "NOT met"
    print(f"\ngoal: signature steps < 5 % of the optimization's wall time: {100 * overhead / plain:.1f} % ({verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--skip-optimize", action="store_true", help="only the folder table")
    args = parser.parse_args()
    folder_table(args.runs, args.megabytes)
    if not args.skip_optimize:
        optimization_table(args.megabytes)


if __name__ == "__main__":
    main()
