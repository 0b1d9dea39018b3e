"""Fixtures for the optimizer tests: reference models trained once per session, a CLI runner.

Every test under tests/optimizer gets the `optimizer` marker and a few targeted warning filters
(TensorFlow and Keras warn from their own internals; the suite otherwise turns warnings into
errors). The reference models are trained once per session (about 15 s on 2 cores).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as the CLI does before TensorFlow loads
pytest.importorskip("tensorflow", reason="needs the optimize extra (TensorFlow)")

import tensorflow as tf

from modeldeploy.cli import main
from modeldeploy.optimize.reference import ReferenceModel, make_reference

# TensorFlow's Python logger binds its handler to the sys.stderr of its first use. Made here, that is
# pytest's session-long capture; made inside a test using capsys, it would be that test's stream,
# closed afterwards, and every later in-process run would print "--- Logging error ---" on stderr.
tf.get_logger()

HERE = Path(__file__).parent

# Warnings raised inside third-party code we call, each matched narrowly.
THIRD_PARTY_WARNINGS = (
    # Keras 3.15 saves variables through np.array(tf.Variable); NumPy 2 deprecates __array__
    # without a copy keyword (raised from keras/src/backend/tensorflow/core.py).
    r"ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning:keras",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.optimizer)
            for spec in THIRD_PARTY_WARNINGS:
                item.add_marker(pytest.mark.filterwarnings(spec))


REFERENCE_EPOCHS = 20


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ReferenceModel]:
    return make_reference(tmp_path_factory.mktemp("reference"), epochs=REFERENCE_EPOCHS)


@pytest.fixture(scope="session")
def mlp(reference: dict[str, ReferenceModel]) -> ReferenceModel:
    return reference["mlp"]


@pytest.fixture(scope="session")
def cnn(reference: dict[str, ReferenceModel]) -> ReferenceModel:
    return reference["cnn"]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    termination_path: Path

    @property
    def termination(self) -> dict[str, Any]:
        text = self.termination_path.read_text(encoding="utf-8")
        assert text.count("\n") == 1 and text.endswith("\n"), text
        assert len(text.encode()) < 4096
        document: dict[str, Any] = json.loads(text)
        return document


Optimize = Callable[..., Run]


@pytest.fixture
def optimize(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Optimize:
    """Run `modeldeploy optimize` in-process with the given flags; returns code, output, message."""
    counter = iter(range(1_000))

    def run(*args: str | Path) -> Run:
        termination = tmp_path / f"termination-{next(counter)}.log"
        argv = [str(arg) for arg in args]
        if "--termination-message-path" not in argv:
            argv += ["--termination-message-path", str(termination)]
        capsys.readouterr()
        code = main(["optimize", *argv])
        captured = capsys.readouterr()
        return Run(code=code, stdout=captured.out, stderr=captured.err, termination_path=termination)

    return run
