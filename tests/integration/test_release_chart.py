"""The chart as the release workflow publishes it: `scripts/release.py pin-chart` pins a copy to the
pushed images' digests, then `helm lint --strict` and `helm package` (.github/workflows/release.yml).

The workflow cannot run here, so these steps run with the dev cluster's helm and API server: the
pinned package must lint, render the operator by digest, and carry a CRD whose optimizer image
default the API server accepts.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from scripts import release

from chart_support import CHART, CHART_NAME, operator_container
from devcluster.controlplane import ControlPlane
from repo_paths import REPO

pytestmark = pytest.mark.integration
OPERATOR_DIGEST = "sha256:" + "1" * 64
OPTIMIZER_DIGEST = "sha256:" + "2" * 64


@pytest.fixture
def pinned_package(control_plane: ControlPlane, tmp_path: Path) -> Path:
    """What the chart job pushes: the pinned copy, linted and packaged."""
    chart = tmp_path / CHART_NAME
    shutil.copytree(CHART, chart)
    digests = ["--operator-digest", OPERATOR_DIGEST, "--optimizer-digest", OPTIMIZER_DIGEST]
    assert release.main(["pin-chart", str(chart), *digests]) == 0
    lint = control_plane.helm("lint", "--strict", str(chart))
    assert "1 chart(s) linted, 0 chart(s) failed" in lint.stdout, lint.stdout
    version = version_of_the_repo()
    out = tmp_path / "out"
    control_plane.helm("package", str(chart), "--version", version, "--app-version", version, "-d", str(out))
    package = out / f"{CHART_NAME}-{version}.tgz"
    assert package.is_file()
    return package


def version_of_the_repo() -> str:
    return release.collect_facts(REPO).versions["pyproject.toml project.version"]


def render(cp: ControlPlane, chart: Path) -> list[dict[str, Any]]:
    out = cp.helm("template", "modeldeploy", str(chart), "-n", "modeldeploy-system", "--include-crds").stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_the_released_chart_runs_the_pushed_operator_image(control_plane: ControlPlane, pinned_package: Path) -> None:
    objects = render(control_plane, pinned_package)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    repository = release.collect_facts(REPO).operator_images["values.yaml image.repository"]
    assert operator_container(deployment)["image"] == f"{repository}@{OPERATOR_DIGEST}"
    skips = " ".join(deployment["metadata"].get("annotations", {}).values())
    assert "CKV_K8S_43" not in skips, "with a digest the chart lifts its image-digest suppression"
    # The unpinned chart renders the tag: the digest above is the pin's doing.
    (unpinned,) = [o for o in render(control_plane, CHART) if o["kind"] == "Deployment"]
    assert operator_container(unpinned)["image"] == f"{repository}:{version_of_the_repo()}"


def test_the_released_crd_defaults_to_the_pushed_optimizer_image(
    control_plane: ControlPlane, pinned_package: Path, tmp_path: Path
) -> None:
    (crd,) = [
        o
        for o in render(control_plane, pinned_package)
        if o["kind"] == "CustomResourceDefinition" and o["spec"]["group"] == "modeldeploy.io"
    ]
    facts = release.collect_facts(REPO)
    pinned = (
        f"{facts.optimizer_images['api/spec.py DEFAULT_OPTIMIZER_IMAGE']}:{version_of_the_repo()}@{OPTIMIZER_DIGEST}"
    )
    optimization = release.optimization_schema(crd)
    assert optimization["default"]["image"] == optimization["properties"]["image"]["default"] == pinned
    # The API server validates a CRD's defaults against its schema: a dry run of the pinned CRD over
    # the installed one must pass (it changes nothing on the shared control plane).
    path = tmp_path / "crd.yaml"
    path.write_text(yaml.safe_dump(crd))
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", str(path))
