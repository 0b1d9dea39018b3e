"""The operator's wheel and images hold the product only: no dev cluster, no demo, no test code.

Why: the local control plane, the test kubelet and the demo live in e2e/ as their own distribution
(modeldeploy-devcluster). A stray package-data glob, a `packages.find` that wanders, or a Dockerfile
COPY of e2e/ would quietly ship them again; this builds the real wheel and reads the Dockerfiles.
The wheel is built from a copy of exactly what the image's build context holds (.dockerignore), so a
stale build/ folder in the checkout cannot hide or add files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dockerfile_parse import parse
from repo_paths import REPO

DOCKERFILES = ("Dockerfile", "Dockerfile.optimizer")


def _context_entries() -> list[str]:
    """The top-level paths .dockerignore lets into the build context (`*` first, then `!path` lines)."""
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()]
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", ".dockerignore must start by excluding everything, then list what the images need"
    return [rule[1:].rstrip("/") for rule in rules if rule.startswith("!")]


@pytest.fixture(scope="module")
def wheel_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    source = tmp_path_factory.mktemp("context")
    for entry in _context_entries():
        path = REPO / entry
        if path.is_dir():
            shutil.copytree(path, source / entry, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(path, source / entry)
    out = tmp_path_factory.mktemp("wheel")
    # Build isolation: the backend pyproject.toml asks for, as a user's `pip wheel .` would get it.
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (wheel,) = out.glob("modeldeploy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_holds_only_the_modeldeploy_package_and_its_metadata(wheel_files: list[str]) -> None:
    outside = [name for name in wheel_files if not name.startswith(("modeldeploy/", "modeldeploy-0."))]
    assert not outside, f"files outside modeldeploy/ and the dist-info: {outside}"
    assert "modeldeploy/cli/__init__.py" in wheel_files and "modeldeploy/py.typed" in wheel_files


@pytest.mark.parametrize(
    "word", ["devcluster", "demo", "kwok", "build.sh", "build_prometheus", "metrics_exporter", "versions.env"]
)
def test_the_wheel_ships_no_dev_cluster_or_demo(wheel_files: list[str], word: str) -> None:
    assert not [name for name in wheel_files if word in name]


def test_the_wheel_ships_no_test_code(wheel_files: list[str]) -> None:
    tests = [
        name
        for name in wheel_files
        if "/tests/" in name or "conftest" in name or Path(name).name.startswith("test_") or "pytest" in name
    ]
    assert not tests


def test_the_build_context_leaves_e2e_and_tests_out() -> None:
    entries = _context_entries()
    assert not [entry for entry in entries if entry.split("/")[0] in ("e2e", "tests", "benchmarks")], entries


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_no_image_copies_e2e_or_tests(dockerfile: str) -> None:
    for stage in parse(REPO / dockerfile):
        for instruction in ("COPY", "ADD"):
            for value in stage.all(instruction):
                if "--from=" in value:  # from another stage, not from the build context
                    continue
                sources = [word for word in value.split()[:-1] if not word.startswith("--")]
                tops = [source.removeprefix("./").split("/")[0] or "." for source in sources]
                # "." would copy the whole context; the context itself leaves e2e/ out (test above).
                assert not set(tops) & {"e2e", "tests", "."}, f"{dockerfile}: {instruction} {value}"
