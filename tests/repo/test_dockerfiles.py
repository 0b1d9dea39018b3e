"""The two Dockerfiles, checked without Docker (this machine has no engine, so they are never built here).

What can go wrong silently is the contract between an image and the package: an ENTRYPOINT naming a
console script that does not exist, a Job running a subcommand the image cannot resolve, the
operator image dragging TensorFlow in, or a base image that floats. These tests parse the files and
check each of those against pyproject.toml, `modeldeploy.cli.build_parser()` and the builders.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from dockerfile_parse import parse
from modeldeploy.api.resource import parse_model_deployment
from modeldeploy.cli import build_parser
from modeldeploy.controller.builders import render_all
from modeldeploy.controller.builders.job import build_job
from modeldeploy.controller.builders.security import RUN_AS_USER
from repo_paths import REPO

OPERATOR = REPO / "Dockerfile"
OPTIMIZER = REPO / "Dockerfile.optimizer"
#: An exact version tag (python:3.11.13-slim-bookworm) or a digest; never a floating python:3.11-slim.
PINNED_BASE = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?|@sha256:[0-9a-f]{64})$")


def exec_form(value: str | None) -> list[str]:
    """ENTRYPOINT/CMD in JSON (exec) form: no shell between the kubelet's signals and the process."""
    assert value is not None
    parsed = json.loads(value)
    assert isinstance(parsed, list) and all(isinstance(word, str) for word in parsed), value
    return parsed


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return dict(actions[0].choices)


@pytest.mark.parametrize("dockerfile", [OPERATOR, OPTIMIZER], ids=lambda p: p.name)
def test_image_is_multi_stage_pinned_and_non_root(dockerfile: Path) -> None:
    stages = parse(dockerfile)
    assert len(stages) >= 2, f"{dockerfile.name}: one stage builds, a slimmer one runs"
    for stage in stages:
        assert PINNED_BASE.match(stage.base), f"{dockerfile.name}: base {stage.base!r} is not pinned"
    names = {stage.name for stage in stages if stage.name}
    final = stages[-1]
    assert final.base == stages[0].base, "the virtualenv is copied between stages: same interpreter path"
    copied_from = [re.search(r"--from=(\S+)", value) for value in final.all("COPY")]
    assert any(match and match.group(1) in names for match in copied_from), "the final stage copies the build"
    assert not any(value.split()[0] in ("pip", "pip3") or "pip install" in value for value in final.all("RUN")), (
        "installing happens in the build stage only"
    )
    user = final.last("USER")
    assert user is not None, f"{dockerfile.name}: the final stage must set USER"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user!r}: numeric (runAsNonRoot can check it) and not root"
    expected = RUN_AS_USER if dockerfile.name == "Dockerfile.optimizer" else 1000
    assert int(uid) == expected, "the optimizer image runs as the builders' UID, the operator as the chart's (1000)"


def test_operator_image_has_no_tensorflow_and_runs_the_operator() -> None:
    stages = parse(OPERATOR)
    installs = " ".join(value for stage in stages for value in stage.all("RUN") if "pip install" in value)
    assert "pip install" in installs
    assert "[optimize]" not in installs and "tensorflow" not in installs.lower()
    final = stages[-1]
    entrypoint, cmd = exec_form(final.last("ENTRYPOINT")), exec_form(final.last("CMD"))
    assert entrypoint == ["modeldeploy"]
    assert cmd == ["run"]


def test_optimizer_image_installs_the_optimize_extra() -> None:
    stages = parse(OPTIMIZER)
    installs = " ".join(value for stage in stages for value in stage.all("RUN") if "pip install" in value)
    assert ".[optimize]" in installs
    final = stages[-1]
    assert exec_form(final.last("ENTRYPOINT")) == ["modeldeploy"]
    assert exec_form(final.last("CMD"))[0] == "optimize"


@pytest.mark.parametrize("dockerfile", [OPERATOR, OPTIMIZER], ids=lambda p: p.name)
def test_entry_points_exist_in_the_package(dockerfile: Path) -> None:
    final = parse(dockerfile)[-1]
    entrypoint, cmd = exec_form(final.last("ENTRYPOINT")), exec_form(final.last("CMD"))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint[0] in scripts, f"ENTRYPOINT {entrypoint[0]!r} is not a console script of pyproject.toml"
    module, _, function = scripts[entrypoint[0]].partition(":")
    assert importlib.util.find_spec(module) is not None and function == "main"
    commands = subcommands()
    assert cmd[0] in commands, f"CMD {cmd[0]!r}: `modeldeploy` has no such subcommand ({sorted(commands)})"
    if "--help" not in cmd:
        commands[cmd[0]].parse_args(cmd[1:])


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("digits-*.yaml")), ids=lambda p: p.stem)
def test_optimizer_job_runs_what_the_optimizer_image_provides(example: Path) -> None:
    """The Job the operator creates names the image's ENTRYPOINT and a subcommand that parses its args."""
    md = parse_model_deployment({**yaml.safe_load(example.read_text()), "metadata": {"name": example.stem}})
    container = build_job(md, None)["spec"]["template"]["spec"]["containers"][0]
    entrypoint = exec_form(parse(OPTIMIZER)[-1].last("ENTRYPOINT"))
    assert container["command"] == entrypoint
    subcommand, *args = container["args"]
    assert subcommand in subcommands()
    build_parser().parse_args([subcommand, *args])  # exits (SystemExit) on an unknown or malformed flag


S3_SAVEDMODEL = {
    "apiVersion": "modeldeploy.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "remote"},
    "spec": {
        "model": {"name": "remote", "storageUri": "s3://models/remote", "format": "savedmodel"},
        "optimization": {"enabled": False},
        "artifacts": {"uri": "pvc://models/artifacts"},
    },
}
MODEL_DEPLOYMENTS = {
    **{p.stem: yaml.safe_load(p.read_text()) for p in sorted((REPO / "examples").glob("digits-*.yaml"))},
    "s3-savedmodel": S3_SAVEDMODEL,
}


@pytest.mark.parametrize(
    "manifest",
    [pytest.param(md, id=name) for name, md in MODEL_DEPLOYMENTS.items()],
)
def test_every_modeldeploy_container_names_an_existing_subcommand(manifest: dict[str, object]) -> None:
    """Each container or init container the builders give the optimizer image runs a real subcommand."""
    commands = subcommands()
    for child in render_all(parse_model_deployment(manifest)):
        pod = child.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
            if container.get("command") == ["modeldeploy"]:
                subcommand = container["args"][0]
                assert subcommand in commands, f"{child['kind']} {container['name']}: `modeldeploy {subcommand}`"


def test_seed_job_command_exists_in_the_optimizer_image() -> None:
    """examples/models-pvc.yaml seeds the claim with `python -m modeldeploy.optimize.reference`."""
    documents = [d for d in yaml.safe_load_all((REPO / "examples" / "models-pvc.yaml").read_text()) if d]
    job = next(d for d in documents if d["kind"] == "Job")
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["python", "-m"], shlex.join(command)
    assert importlib.util.find_spec(command[2]) is not None, f"{command[2]} is not a module of the package"


#: The `optimize` extra's distributions (pyproject.toml) and the modules they bring, all absent from the
#: operator image. test_the_optimize_extra_is_fully_blocked keeps this in step with pyproject.toml.
OPTIMIZE_EXTRA = {
    "tensorflow-cpu": ("tensorflow", "keras", "tf_keras"),
    "tensorflow": (),  # the same modules as tensorflow-cpu: it replaces it on arm64
    "boto3": ("boto3", "botocore", "s3transfer"),
    "numpy": ("numpy",),
    "ai-edge-litert": ("ai_edge_litert",),
    "model-signing": ("model_signing", "sigstore", "sigstore_models"),
    "pyopenssl": ("OpenSSL",),
}
OPTIMIZE_EXTRA_MODULES = tuple(module for modules in OPTIMIZE_EXTRA.values() for module in modules)

_WITHOUT_EXTRA = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Absent())
from modeldeploy.cli import main
sys.exit(main({argv!r}))
"""


def test_the_optimize_extra_is_fully_blocked() -> None:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["optimize"]
    names = {re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower() for requirement in extra}
    assert names == set(OPTIMIZE_EXTRA), "update OPTIMIZE_EXTRA with the optimize extra's new packages"


@pytest.mark.parametrize("argv", [["--version"], ["run", "--help"]], ids=" ".join)
def test_operator_commands_work_without_the_optimize_extra(argv: list[str]) -> None:
    """What the operator image does: the package without TensorFlow, numpy or boto3 installed."""
    code = _WITHOUT_EXTRA.format(blocked=OPTIMIZE_EXTRA_MODULES, argv=argv)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
