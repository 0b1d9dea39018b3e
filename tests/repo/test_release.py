"""The release pipeline, checked without running it (GitHub Actions cannot run here).

`.github/workflows/release.yml` publishes what the repository names: the images it builds must be
the ones the chart and `api/spec.py` pull, at the version pyproject.toml, the chart and the
Dockerfiles give, with notes from CHANGELOG.md. `scripts/release.py` checks that agreement on a tag;
these tests run the same checks on every commit, show that a mismatch fails, and hold the workflows
to their supply-chain rules (actions pinned by commit, explicit permissions).
"""

from __future__ import annotations

import re
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema  # kubernetes-validate (dev group) brings it
import pytest
import yaml
from packaging.requirements import Requirement
from scripts import release

from repo_paths import CHART, REPO

WORKFLOWS = sorted((REPO / ".github").glob("**/*.yml"))
# `uses: owner/repo[/path]@<40 hex> # vX[.Y.Z]`: a tag can be moved, a commit cannot.
PINNED_USES = re.compile(r"^\s*(?:-\s+)?uses:\s+([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s+v\d+(\.\d+)*\s*$")


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_files_agree_on_the_version_and_the_image_names() -> None:
    facts = release.collect_facts(REPO)
    assert release.disagreements(facts) == []
    # Every source was read: a refactor that silently drops one would make the check vacuous.
    assert len(facts.versions) >= 8
    assert len(facts.operator_images) == 4
    assert len(facts.optimizer_images) == 4


def test_a_doctored_fact_is_named_with_every_place() -> None:
    facts = release.collect_facts(REPO)
    bumped = release.ReleaseFacts(
        versions={**facts.versions, "Chart.yaml appVersion": "9.9.9"},
        operator_images=facts.operator_images,
        optimizer_images={**facts.optimizer_images, "release.yml images[optimizer]": "ghcr.io/someone/optimizer"},
    )
    problems = release.disagreements(bumped)
    assert len(problems) == 2
    assert "version" in problems[0] and "Chart.yaml appVersion: '9.9.9'" in problems[0]
    assert "pyproject.toml project.version" in problems[0]
    assert "optimizer image" in problems[1] and "ghcr.io/someone/optimizer" in problems[1]


def test_the_tag_must_be_v_and_the_version() -> None:
    facts = release.collect_facts(REPO)
    version = facts.versions["pyproject.toml project.version"]
    assert release.disagreements(facts, f"v{version}") == []
    assert release.disagreements(facts, version) != []
    assert release.disagreements(facts, "v9.9.9") != []


VALUES = release.CHART / "values.yaml"
# The files collect_facts reads, copied so a test can doctor one of them.
RELEASE_FILES = (
    "pyproject.toml",
    "operator/modeldeploy/__init__.py",
    "operator/modeldeploy/api/spec.py",
    "charts/modeldeploy-operator/Chart.yaml",
    "charts/modeldeploy-operator/values.yaml",
    "Dockerfile",
    "Dockerfile.optimizer",
    ".github/workflows/release.yml",
    "e2e/kind/run.sh",
    "CHANGELOG.md",
)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    for name in RELEASE_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_the_check_passes_on_an_untouched_copy(repo_copy: Path) -> None:
    assert release.main(["check"], repo=repo_copy) == 0


@pytest.mark.parametrize(
    ("file", "old", "new", "named"),
    [
        (f"{VALUES}", "ghcr.io/modeldeploy/operator", "ghcr.io/other/operator", "operator image"),
        ("charts/modeldeploy-operator/Chart.yaml", 'appVersion: "', 'appVersion: "1', "Chart.yaml appVersion"),
        ("pyproject.toml", 'version = "', 'version = "2', "pyproject.toml project.version"),
        ("operator/modeldeploy/api/spec.py", "modeldeploy/optimizer:", "modeldeploy/optimiser:", "optimizer image"),
        ("Dockerfile.optimizer", "-t ghcr.io/modeldeploy/optimizer:", "-t ghcr.io/modeldeploy/optimizer:3", "tag"),
        ("e2e/kind/run.sh", "TAG=${TAG:-", "TAG=${TAG:-4", "e2e/kind/run.sh TAG"),
        (f"{release.RELEASE_WORKFLOW}", "image: ghcr.io/modeldeploy/operator", "image: ghcr.io/x/operator", "operator"),
    ],
    ids=[
        "values-repository",
        "chart-appVersion",
        "pyproject-version",
        "spec-image",
        "dockerfile",
        "kind-tag",
        "workflow-image",
    ],
)
def test_a_mismatch_in_any_file_fails_the_check(
    repo_copy: Path, file: str, old: str, new: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_in(repo_copy / file, old, new)
    assert release.main(["check"], repo=repo_copy) == 1
    assert named in capsys.readouterr().err


def test_release_notes_are_the_tag_s_changelog_section(capsys: pytest.CaptureFixture[str]) -> None:
    version = release.collect_facts(REPO).versions["pyproject.toml project.version"]
    assert release.main(["notes", f"v{version}"]) == 0
    notes = capsys.readouterr().out
    assert notes.strip() and f"## [{version}]" not in notes and "## [Unreleased]" not in notes
    assert "### " in notes, "keep-a-changelog groups changes under ### Added, ### Changed, ..."


def test_changelog_follows_keep_a_changelog() -> None:
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", text, re.M)
    assert headings[0][0] == "Unreleased"
    for version, rest in headings[1:]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), version
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", rest), f"## [{version}] needs ' - YYYY-MM-DD'"
        assert re.search(rf"^\[{re.escape(version)}\]: \S+", text, re.M), f"no link reference for [{version}]"


def test_changelog_section_extraction() -> None:
    text = "# Changelog\n\n## [Unreleased]\n\n## [1.1.0] - 2026-01-02\n### Fixed\n- b\n\n## [1.0.0] - 2026-01-01\n- a\n"
    assert release.changelog_section(text, "1.1.0") == "### Fixed\n- b\n"
    assert release.changelog_section(text, "1.0.0") == "- a\n"
    with pytest.raises(ValueError, match=r"no '## \[2.0.0\]' section"):
        release.changelog_section(text, "2.0.0")
    with pytest.raises(ValueError, match="empty"):
        release.changelog_section(text, "Unreleased")


def test_a_tag_without_a_changelog_section_fails(repo_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert release.main(["notes", "v9.9.9"], repo=repo_copy) == 1
    assert "CHANGELOG.md has no '## [9.9.9]' section" in capsys.readouterr().err


OPERATOR_DIGEST = "sha256:" + "a" * 64
OPTIMIZER_DIGEST = "sha256:" + "b" * 64


def test_pin_chart_pins_both_images_and_changes_nothing_else(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    facts = release.collect_facts(REPO)
    version = facts.versions["pyproject.toml project.version"]
    optimizer = facts.optimizer_images["api/spec.py DEFAULT_OPTIMIZER_IMAGE"]
    digests = ["--operator-digest", OPERATOR_DIGEST, "--optimizer-digest", OPTIMIZER_DIGEST]
    assert release.main(["pin-chart", str(chart), *digests]) == 0

    values = read_yaml(chart / "values.yaml")
    assert values["image"]["digest"] == OPERATOR_DIGEST
    before = (CHART / "values.yaml").read_text().splitlines()
    after = (chart / "values.yaml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [('  digest: ""', f'  digest: "{OPERATOR_DIGEST}"')]

    jsonschema.validate(values, read_yaml(CHART / "values.schema.json"))

    optimization = release.optimization_schema(read_yaml(chart / "crds" / release.CRD_FILE))
    pinned = f"{optimizer}:{version}@{OPTIMIZER_DIGEST}"
    assert optimization["default"]["image"] == pinned
    assert optimization["properties"]["image"]["default"] == pinned
    assert (chart / "crds" / release.CRD_FILE).read_text().count(OPTIMIZER_DIGEST) == 2


def test_pin_chart_refuses_a_bad_digest_or_a_pinned_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    args = ["pin-chart", str(chart), "--optimizer-digest", OPTIMIZER_DIGEST, "--operator-digest"]
    assert release.main([*args, "latest"]) == 1
    assert "'latest' is not a sha256:<64 hex> digest" in capsys.readouterr().err
    assert release.main([*args, OPERATOR_DIGEST]) == 0
    assert release.main([*args, OPERATOR_DIGEST]) == 1, "pinning twice must not stack digests"
    assert "found no empty image.digest" in capsys.readouterr().err


def uses_lines(path: Path) -> Iterator[str]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.match(r"^\s*(-\s+)?uses:", line) and "uses: ./" not in line:
            yield line


def test_workflows_exist_and_pin_every_action_by_commit() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "release.yml"}
    shas: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for line in uses_lines(path):
            match = PINNED_USES.match(line)
            assert match, f"{path.relative_to(REPO)}: {line.strip()!r} is not pinned as @<commit sha> # vX.Y.Z"
            action = "/".join(match.group(1).split("/")[:2])  # actions/cache/restore is actions/cache
            shas.setdefault(action, set()).add(match.group(2))
    assert shas, "no action found: the pattern no longer matches the workflows"
    drifting = {action: sorted(found) for action, found in shas.items() if len(found) > 1}
    assert not drifting, f"one action pinned at several commits: {drifting}"


@pytest.mark.parametrize("workflow", ["ci.yml", "release.yml"])
def test_workflows_declare_least_privilege_permissions(workflow: str) -> None:
    document = read_yaml(REPO / ".github" / "workflows" / workflow)
    top = document.get("permissions")
    assert top is not None, "a workflow without `permissions:` gets the repository's default token scopes"
    assert top in ({}, {"contents": "read"}), f"top-level permissions {top} grant more than reading"
    for name, job in document["jobs"].items():
        granted = job.get("permissions", top)
        assert isinstance(granted, dict), f"{name}: permissions {granted!r} (read-all/write-all) are not scoped"
        if granted.get("id-token") == "write":
            assert workflow == "release.yml", f"{name}: OIDC tokens only for releasing"


def test_the_workflows_python_is_the_images_python() -> None:
    base = re.search(r"^FROM python:(\d+\.\d+)\.", (REPO / "Dockerfile").read_text(), re.M)
    assert base
    release_env = read_yaml(REPO / ".github" / "workflows" / "release.yml")["env"]
    venv_action = read_yaml(REPO / ".github" / "actions" / "venv" / "action.yml")
    setup = next(s for s in venv_action["runs"]["steps"] if "setup-python" in s.get("uses", ""))
    assert release_env["PYTHON_VERSION"] == setup["with"]["python-version"] == base.group(1)


def test_the_optimize_extra_installs_on_both_image_architectures() -> None:
    """The optimizer image is built for amd64 and arm64: each needs a TensorFlow wheel that exists.
    tensorflow-cpu publishes Linux wheels for x86_64 only; on aarch64 the `tensorflow` wheel is the CPU build."""
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["optimize"]
    requirements = [Requirement(line) for line in extra]
    for machine, expected in (("x86_64", "tensorflow-cpu"), ("aarch64", "tensorflow")):
        environment = {"platform_machine": machine, "sys_platform": "linux", "platform_system": "Linux"}
        chosen = [r.name for r in requirements if r.marker is None or r.marker.evaluate(environment)]
        tensorflow = [name for name in chosen if name.startswith("tensorflow")]
        assert tensorflow == [expected], f"on linux/{machine} the optimize extra installs {tensorflow}"
    same = {str(r.specifier) for r in requirements if r.name in ("tensorflow", "tensorflow-cpu")}
    assert len(same) == 1, f"both architectures get the same TensorFlow versions: {same}"


def test_the_chart_readme_verifies_what_the_release_workflow_signs() -> None:
    """The identity users verify against is the certificate the release workflow gets: a wrong regexp
    would make every honest release fail verification, or a loose one accept foreign signers."""
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    identity = re.search(r"^IDENTITY='([^']+)'$", readme, re.M)
    issuer = re.search(r"^ISSUER=(\S+)$", readme, re.M)
    chart_ref = re.search(r"^CHART=(\S+)$", readme, re.M)
    assert identity and issuer and chart_ref, "the README's verify block lost IDENTITY, ISSUER or CHART"
    assert issuer.group(1) == "https://token.actions.githubusercontent.com"
    version = release.collect_facts(REPO).versions["pyproject.toml project.version"]
    signer = "https://github.com/modeldeploy/modeldeploy/" + str(release.RELEASE_WORKFLOW)
    pattern = re.compile(identity.group(1))
    assert pattern.match(f"{signer}@refs/tags/v{version}")
    for foreign in (
        f"{signer}@refs/heads/main",
        f"https://github.com/someone/modeldeploy/{release.RELEASE_WORKFLOW}@refs/tags/v{version}",
        f"https://github.com/modeldeploy/modeldeploy/.github/workflows/ci.yml@refs/tags/v{version}",
        f"{signer}@refs/tags/v{version}-evil",
    ):
        assert not pattern.match(foreign), foreign
    workflow_env = read_yaml(REPO / release.RELEASE_WORKFLOW)["env"]
    assert chart_ref.group(1) == f"{workflow_env['CHART_REGISTRY']}/{read_yaml(CHART / 'Chart.yaml')['name']}"
    for name, built in release.release_images(REPO).items():
        assert built["image"] == f"ghcr.io/modeldeploy/{name}", "the README's loop verifies ghcr.io/modeldeploy/$image"
