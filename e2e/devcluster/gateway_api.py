"""The Gateway API's standard-channel CRDs on the local control plane, at the pinned version.

Why it exists: the operator's HTTPRoute (rollout.trafficRouting.gatewayAPI) must be checked against
the real CRD's schema and CEL rules, not a hand-written imitation, and the operator must behave
when the kind is absent. The CRDs come from the Go module sigs.k8s.io/gateway-api (version in
versions.env, GATEWAY_API_VERSION), fetched once by `gateway_api.sh` into
~/.cache/modeldeploy/gateway-api-v<version>/crds (`make controlplane` runs it; so does
`crds_dir` when the folder is missing). No Gateway controller runs: routes are stored and
validated, never programmed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from devcluster.assets import AssetsError, cache_root, read_versions
from devcluster.controlplane import ControlPlane
from devcluster.stack import wait_for

FETCH_SCRIPT = Path(__file__).resolve().parent / "gateway_api.sh"
GROUP = "gateway.networking.k8s.io"
HTTPROUTES_CRD = f"httproutes.{GROUP}"


def version() -> str:
    pinned = read_versions().gateway_api
    if not pinned:
        raise AssetsError("versions.env lacks GATEWAY_API_VERSION")
    return pinned


def crds_dir(*, fetch_missing: bool = True) -> Path:
    """The folder of the pinned standard-channel CRD files; fetched (Go module proxy) when missing."""
    folder = cache_root() / f"gateway-api-v{version()}" / "crds"
    if (folder / f"{GROUP}_httproutes.yaml").is_file():
        return folder
    if not fetch_missing:
        raise AssetsError(f"{folder} has no Gateway API CRDs; run `make controlplane` (or bash {FETCH_SCRIPT})")
    result = subprocess.run(["bash", str(FETCH_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise AssetsError(f"{FETCH_SCRIPT} failed with exit code {result.returncode}; run it by hand to see why")
    return Path(result.stdout.strip().splitlines()[-1])


def crd_names(folder: Path) -> list[str]:
    """The CustomResourceDefinitions the folder holds (its other files are admission policies)."""
    files = [p for p in folder.glob(f"{GROUP}_*.yaml") if "_vap_" not in p.name]
    return sorted(f"{p.name.split('_', 1)[1].removesuffix('.yaml')}.{GROUP}" for p in files)


def httproute_served(cp: ControlPlane) -> bool:
    """Does the API server's discovery list httproutes in gateway.networking.k8s.io/v1?"""
    done = cp.kubectl("api-resources", f"--api-group={GROUP}", "-o", "name", check=False)
    return done.returncode == 0 and HTTPROUTES_CRD in done.stdout.split()


def install(cp: ControlPlane, *, timeout: float = 120.0) -> list[str]:
    """Apply the CRDs (server-side, like the project's own) and wait until each is Established and
    HTTPRoute is in discovery. Idempotent. Returns the CRD names."""
    folder = crds_dir()
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(folder), timeout=timeout)
    names = crd_names(folder)
    cp.wait_established(*names, timeout=timeout)
    wait_for("HTTPRoute to be served", lambda: httproute_served(cp), timeout, interval=0.5)
    return names
