"""Find the control plane's binaries, building them once if nothing provides them.

Why it exists: the control plane, the pytest plugin and `python -m devcluster up` all need the same seven
binaries at the pinned versions, and must fail loudly (never skip) when they cannot have them. Lookup
order, per binary:

1. `TEST_ASSET_<NAME>` (envtest's convention, e.g. `TEST_ASSET_KUBE_APISERVER`): that file;
2. `KUBEBUILDER_ASSETS`: a folder of ready binaries (what `setup-envtest use -p path` prints);
3. the build cache, `~/.cache/modeldeploy/k8s-v…_etcd-v…_kwok-v…_helm-v…/bin` (`MODELDEPLOY_CACHE` or
   `XDG_CACHE_HOME` move it), filled by this package's `build.sh` (e2e/devcluster/build.sh) from the Go module proxy.

Whatever the first two do not provide is taken from the cache, and `build.sh` is run when the cache
lacks it (it builds only what is missing). envtest's folders hold only etcd, kube-apiserver and
kubectl, so the controller-manager, scheduler, kwok and helm still come from the cache then.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Every binary the local control plane needs.
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)

# Both ship inside this package (package data), so an installed devcluster builds without a checkout.
_HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = _HERE / "build.sh"
VERSIONS_FILE = _HERE / "versions.env"


class AssetsError(RuntimeError):
    """The binaries are neither provided nor buildable; the message says what to run."""


@dataclass(frozen=True)
class Versions:
    """The pinned versions, read from versions.env next to this module (the one place they live)."""

    kubernetes: str
    etcd: str
    kwok: str
    helm: str
    # Not part of cache_key: the Gateway API CRDs are files in their own folder (gateway_api.py).
    gateway_api: str | None = None

    @property
    def cache_key(self) -> str:
        """The cache folder's name; it names every version, so a bump never reuses a stale binary."""
        return f"k8s-v{self.kubernetes}_etcd-v{self.etcd}_kwok-v{self.kwok}_helm-v{self.helm}"


@dataclass(frozen=True)
class Assets:
    """Where each binary is, and where it came from (for logs and `python -m devcluster status`)."""

    paths: Mapping[str, Path]
    sources: Mapping[str, str]

    @property
    def single_dir(self) -> Path | None:
        """The one folder holding every binary, or None when they come from several places."""
        folders = {path.parent for path in self.paths.values()}
        return folders.pop() if len(folders) == 1 else None

    def bin_dir(self, scratch: Path) -> Path:
        """A folder with all binaries (for PATH): the common folder, or links made in `scratch`."""
        single = self.single_dir
        if single is not None:
            return single
        scratch.mkdir(parents=True, exist_ok=True)
        for name, path in self.paths.items():
            link = scratch / name
            link.unlink(missing_ok=True)
            link.symlink_to(path)
        return scratch


def read_versions(path: Path = VERSIONS_FILE) -> Versions:
    """Parse versions.env (KEY=VALUE lines, # comments), the same file build.sh sources."""
    if not path.is_file():
        raise AssetsError(f"{path} not found: the control plane's versions are pinned there (package data)")
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip().strip("\"'")
    try:
        return Versions(
            kubernetes=values["K8S_VERSION"],
            etcd=values["ETCD_VERSION"],
            kwok=values["KWOK_VERSION"],
            helm=values["HELM_VERSION"],
            gateway_api=values.get("GATEWAY_API_VERSION"),
        )
    except KeyError as exc:
        raise AssetsError(f"{path} lacks {exc.args[0]}") from None


def cache_root() -> Path:
    """The cache folder build.sh writes to (same rule as the script: MODELDEPLOY_CACHE, XDG_CACHE_HOME)."""
    explicit = os.environ.get("MODELDEPLOY_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "modeldeploy"


def cache_bin_dir(versions: Versions | None = None) -> Path:
    """The bin folder of the build cache for these versions (default: the pinned ones)."""
    return cache_root() / (versions or read_versions()).cache_key / "bin"


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _provided() -> tuple[dict[str, Path], dict[str, str]]:
    """What TEST_ASSET_* and KUBEBUILDER_ASSETS provide; a named file that is missing is an error."""
    paths: dict[str, Path] = {}
    sources: dict[str, str] = {}
    folder_env = os.environ.get("KUBEBUILDER_ASSETS")
    folder = Path(folder_env) if folder_env else None
    if folder is not None and not folder.is_dir():
        raise AssetsError(f"KUBEBUILDER_ASSETS={folder_env} is not a folder")
    for name in BINARIES:
        var = "TEST_ASSET_" + name.upper().replace("-", "_")
        single = os.environ.get(var)
        if single:
            if not _executable(Path(single)):
                raise AssetsError(f"{var}={single} is not an executable file")
            paths[name], sources[name] = Path(single), var
        elif folder is not None and _executable(folder / name):
            paths[name], sources[name] = folder / name, "KUBEBUILDER_ASSETS"
    return paths, sources


def build(*, quiet: bool = False) -> Path:
    """Run build.sh (builds only what is missing) and return the bin folder it prints.

    Its progress goes to our stderr: a cold build takes many minutes and must not look like a hang.
    """
    if not BUILD_SCRIPT.is_file():
        raise AssetsError(
            f"cannot build the control plane: {BUILD_SCRIPT} is missing (reinstall modeldeploy-devcluster, "
            "or point KUBEBUILDER_ASSETS at a folder holding " + ", ".join(BINARIES) + ")"
        )
    if shutil.which("go") is None:
        raise AssetsError(
            "cannot build the control plane: no `go` on PATH (Go 1.26 is needed for Kubernetes 1.36). "
            f"Install Go and run {BUILD_SCRIPT}, or point KUBEBUILDER_ASSETS at ready binaries"
        )
    log.warning("building the local control plane with %s (once; a cold build takes many minutes)", BUILD_SCRIPT)
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AssetsError(
            f"{BUILD_SCRIPT} failed with exit code {result.returncode}; run it by hand to see why "
            f"(`bash {BUILD_SCRIPT}`)"
        )
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise AssetsError(f"{BUILD_SCRIPT} printed no bin folder")
    return Path(lines[-1])


def find_assets(*, build_missing: bool = True) -> Assets:
    """Locate every binary (see the module docstring for the order); build what is missing, or fail loudly."""
    paths, sources = _provided()
    missing = [name for name in BINARIES if name not in paths]
    if missing:
        cache = cache_bin_dir()
        if build_missing and not all(_executable(cache / name) for name in missing):
            built = build()
            if built != cache:
                log.warning("build.sh printed %s, expected %s; using what it printed", built, cache)
                cache = built
        for name in missing:
            if _executable(cache / name):
                paths[name], sources[name] = cache / name, "cache"
    still_missing = [name for name in BINARIES if name not in paths]
    if still_missing:
        raise AssetsError(
            "control plane binaries not found: "
            + ", ".join(still_missing)
            + f". Build them with `make controlplane` (or `bash {BUILD_SCRIPT}`), or point KUBEBUILDER_ASSETS "
            "at a folder that holds them."
        )
    for name in BINARIES:
        log.debug("using %s from %s: %s", name, sources[name], paths[name])
    return Assets(paths={name: paths[name] for name in BINARIES}, sources=sources)
