"""The release's facts in one place: the version and the image names that the workflows, the chart,
the Dockerfiles, pyproject.toml and the API's default optimizer image must agree on.

A script of the repository, not of the product. `.github/workflows/release.yml` runs it on a tag
(`check --tag`, `notes`, `pin-chart`); `tests/repo/test_release.py` runs the same checks on every
commit, so a bump that forgets one file fails here long before a tag does. It reads files as text
(Python constants with `ast`, YAML with PyYAML) and never imports the package, so the release job
needs PyYAML alone.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = Path("charts/modeldeploy-operator")
CRD_FILE = "modeldeploy.io_modeldeployments.yaml"
RELEASE_WORKFLOW = Path(".github/workflows/release.yml")
PACKAGE_INIT = Path("operator/modeldeploy/__init__.py")
SPEC = Path("operator/modeldeploy/api/spec.py")
KIND_SCRIPT = Path("e2e/kind/run.sh")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# The example build command each Dockerfile's header documents: `docker build [-f FILE] -t IMAGE:TAG .`
DOCKER_BUILD_TAG = re.compile(r"docker build\b.*?-t\s+(\S+):(\S+)")


@dataclass(frozen=True)
class ReleaseFacts:
    """What each file says, keyed by where it says it (a file and a field), so a mismatch names both."""

    versions: Mapping[str, str]
    operator_images: Mapping[str, str]
    optimizer_images: Mapping[str, str]


def disagreements(facts: ReleaseFacts, tag: str | None = None) -> list[str]:
    """One message per group of facts that do not all agree, and one if the tag is not v<version>."""
    problems = []
    for what, group in (
        ("version", facts.versions),
        ("operator image", facts.operator_images),
        ("optimizer image", facts.optimizer_images),
    ):
        if len(set(group.values())) > 1:
            places = "; ".join(f"{where}: {value!r}" for where, value in sorted(group.items()))
            problems.append(f"the {what} differs between files: {places}")
    if tag is not None:
        expected = {f"v{version}" for version in facts.versions.values()}
        if expected != {tag}:
            problems.append(f"tag {tag!r} does not match the version(s) {sorted(expected)} of the files")
    return problems


def _python_constant(path: Path, name: str) -> str:
    """A module-level string constant, read without importing the module."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and isinstance(node.value, ast.Constant):
                return str(node.value.value)
    raise ValueError(f"{path}: no string constant {name}")


def _split_image(reference: str, where: str) -> tuple[str, str]:
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        raise ValueError(f"{where}: {reference!r} is not REPOSITORY:TAG")
    return repository, tag


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _dockerfile_image(path: Path) -> tuple[str, str]:
    match = DOCKER_BUILD_TAG.search(path.read_text(encoding="utf-8"))
    if match is None:
        raise ValueError(f"{path.name}: its header has no `docker build ... -t IMAGE:TAG` line")
    return match.group(1), match.group(2)


def release_images(repo: Path) -> dict[str, dict[str, str]]:
    """The images release.yml builds: name -> {image, dockerfile} from its build matrix."""
    workflow = _load_yaml(repo / RELEASE_WORKFLOW)
    entries = workflow["jobs"]["images"]["strategy"]["matrix"]["include"]
    return {entry["name"]: {"image": entry["image"], "dockerfile": entry["dockerfile"]} for entry in entries}


def collect_facts(repo: Path = REPO) -> ReleaseFacts:
    """Read every file that names the version or an image."""
    chart = _load_yaml(repo / CHART / "Chart.yaml")
    values = _load_yaml(repo / CHART / "values.yaml")
    pyproject = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    spec = repo / SPEC
    optimizer_repo, optimizer_tag = _split_image(_python_constant(spec, "DEFAULT_OPTIMIZER_IMAGE"), "api/spec.py")
    built = release_images(repo)
    versions = {
        "pyproject.toml project.version": pyproject["project"]["version"],
        "modeldeploy/__init__.py __version__": _python_constant(repo / PACKAGE_INIT, "__version__"),
        "Chart.yaml version": str(chart["version"]),
        "Chart.yaml appVersion": str(chart["appVersion"]),
        "api/spec.py DEFAULT_OPTIMIZER_IMAGE tag": optimizer_tag,
    }
    if values["image"]["tag"]:
        versions["values.yaml image.tag"] = str(values["image"]["tag"])
    operator_images = {
        "values.yaml image.repository": values["image"]["repository"],
        "release.yml images[operator]": built["operator"]["image"],
    }
    optimizer_images = {
        "api/spec.py DEFAULT_OPTIMIZER_IMAGE": optimizer_repo,
        "release.yml images[optimizer]": built["optimizer"]["image"],
    }
    kind_script = (repo / KIND_SCRIPT).read_text(encoding="utf-8")
    default_tag = re.search(r"^TAG=\$\{TAG:-([^}]+)\}$", kind_script, re.M)
    if default_tag is None:
        raise ValueError(f"{KIND_SCRIPT}: no TAG=${{TAG:-VERSION}} line")
    versions[f"{KIND_SCRIPT} TAG"] = default_tag.group(1)
    for variable, images in (("OPERATOR_IMAGE", operator_images), ("OPTIMIZER_IMAGE", optimizer_images)):
        image = re.search(rf"^{variable}=(\S+):\$TAG\b", kind_script, re.M)
        if image is None:
            raise ValueError(f"{KIND_SCRIPT}: no {variable}=IMAGE:$TAG line")
        images[f"{KIND_SCRIPT} {variable}"] = image.group(1)
    for name, images in (("operator", operator_images), ("optimizer", optimizer_images)):
        dockerfile = built[name]["dockerfile"]
        image, tag = _dockerfile_image(repo / dockerfile)
        images[f"{dockerfile} build command"] = image
        versions[f"{dockerfile} build command tag"] = tag
    return ReleaseFacts(versions=versions, operator_images=operator_images, optimizer_images=optimizer_images)


def changelog_section(text: str, version: str) -> str:
    """The body of `## [VERSION] ...` in a keep-a-changelog file, without its heading."""
    heading = re.compile(rf"^## \[{re.escape(version)}\][^\n]*\n", re.M)
    match = heading.search(text)
    if match is None:
        raise ValueError(f"CHANGELOG.md has no '## [{version}]' section")
    following = re.compile(r"^## |^\[[^\]]+\]: ", re.M).search(text, match.end())
    body = text[match.end() : following.start() if following else len(text)].strip()
    if not body:
        raise ValueError(f"CHANGELOG.md: the '## [{version}]' section is empty")
    return body + "\n"


def optimization_schema(crd: Any) -> Any:
    """The schema of `spec.optimization` in the ModelDeployment CRD (where the optimizer image defaults)."""
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec["properties"]["optimization"]


def pin_chart(chart: Path, version: str, operator_digest: str, optimizer_digest: str, optimizer_repo: str) -> None:
    """Pin a chart copy to the pushed images: values.yaml image.digest, and the optimizer image the CRD
    defaults `spec.optimization.image` to (the operator has no other default for it)."""
    for digest in (operator_digest, optimizer_digest):
        if not DIGEST.match(digest):
            raise ValueError(f"{digest!r} is not a sha256:<64 hex> digest")
    values_path = chart / "values.yaml"
    text = values_path.read_text(encoding="utf-8")
    # A text edit, not a YAML round trip: values.yaml's comments are the chart's documentation.
    # The first `  digest: ""` after `image:` and before the next top-level key.
    image_digest = re.compile(r'^(image:\n(?:[ ]{2}.*\n|[ ]*#.*\n|\n)*?[ ]{2}digest: )""', re.M)
    pinned, count = image_digest.subn(rf'\g<1>"{operator_digest}"', text)
    if count != 1 or yaml.safe_load(pinned)["image"]["digest"] != operator_digest:
        raise ValueError(f"{values_path}: found no empty image.digest to pin")
    values_path.write_text(pinned, encoding="utf-8")

    crd_path = chart / "crds" / CRD_FILE
    reference = f"{optimizer_repo}:{version}"
    text = crd_path.read_text(encoding="utf-8")
    pinned_crd = re.sub(rf"(?<=: ){re.escape(reference)}$", f"{reference}@{optimizer_digest}", text, flags=re.M)
    optimization = optimization_schema(yaml.safe_load(pinned_crd))
    defaults = {optimization["default"]["image"], optimization["properties"]["image"]["default"]}
    if defaults != {f"{reference}@{optimizer_digest}"}:
        raise ValueError(f"{crd_path}: the optimizer image defaults are {sorted(defaults)}, not {reference}")
    crd_path.write_text(pinned_crd, encoding="utf-8")


def main(argv: list[str] | None = None, repo: Path = REPO) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="fail when the files disagree on the version or an image name")
    check.add_argument("--tag", help="also require this git tag to be v<version>")
    notes = commands.add_parser("notes", help="print the CHANGELOG.md section of a tag (vX.Y.Z) or version")
    notes.add_argument("tag")
    pin = commands.add_parser("pin-chart", help="pin a chart copy to the pushed images' digests")
    pin.add_argument("chart", type=Path)
    pin.add_argument("--operator-digest", required=True)
    pin.add_argument("--optimizer-digest", required=True)
    args = parser.parse_args(argv)
    try:
        facts = collect_facts(repo)
        if args.command == "check":
            problems = disagreements(facts, args.tag)
            for problem in problems:
                print(f"release check: {problem}", file=sys.stderr)
            return 1 if problems else 0
        if args.command == "notes":
            changelog = (repo / "CHANGELOG.md").read_text(encoding="utf-8")
            sys.stdout.write(changelog_section(changelog, args.tag.removeprefix("v")))
            return 0
        problems = disagreements(facts)
        if problems:
            raise ValueError("; ".join(problems))
        version = next(iter(facts.versions.values()))
        optimizer_repo = next(iter(facts.optimizer_images.values()))
        pin_chart(args.chart, version, args.operator_digest, args.optimizer_digest, optimizer_repo)
        return 0
    except KeyError as error:
        print(f"release: a file lacks the key {error} (see collect_facts for which files are read)", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"release: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
