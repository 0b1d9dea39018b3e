"""A real Prometheus server for the canary analysis's tests, scraping what a test points it at.

Why it exists: the operator's Prometheus client must be tested against Prometheus's own answers
(vectors, NaN, its error JSON, its parse errors), not against a mock of them. The server is built
from its Go module at the version pinned in versions.env (`build_prometheus.sh`, into its own cache
folder `~/.cache/modeldeploy/prometheus-v<version>/bin`), started on a free port of 127.0.0.1 with
its storage in a scratch folder, and stopped with its process group.

Targets come and go while it runs (a test starts its own exporter): they are written to a file
Prometheus watches (file_sd), each scraped every second, and `add_target` returns once the first
scrape succeeded. The harness reads values with its own few lines of HTTP, not with the product's
client, so a test of that client does not check it with itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from devcluster import cleanup, processes
from devcluster.assets import VERSIONS_FILE, AssetsError, cache_root
from devcluster.metrics_exporter import METRICS_PATH

log = logging.getLogger(__name__)

BUILD_SCRIPT = Path(__file__).resolve().parent / "build_prometheus.sh"
#: A ready binary to use instead of the cache (the build script honours it too).
BINARY_ENV = "PROMETHEUS_BINARY"
_START_ATTEMPTS = 3


class PrometheusError(RuntimeError):
    """Prometheus could not be built, started, or answered something the harness did not expect."""


def pinned_version(path: Path = VERSIONS_FILE) -> str:
    """PROMETHEUS_VERSION from versions.env (the Go module's version, e.g. 0.316.0 for Prometheus 3.16.0)."""
    for raw in path.read_text().splitlines():
        key, _, value = raw.split("#", 1)[0].partition("=")
        if key.strip() == "PROMETHEUS_VERSION" and value.strip():
            return value.strip().strip("\"'")
    raise AssetsError(f"{path} lacks PROMETHEUS_VERSION")


def cache_binary(version: str | None = None) -> Path:
    """Where build_prometheus.sh puts the binary (its own folder: the control plane's is not touched)."""
    return cache_root() / f"prometheus-v{version or pinned_version()}" / "bin" / "prometheus"


def find_binary(*, build_missing: bool = True) -> Path:
    """PROMETHEUS_BINARY, else the cache, built once (minutes) when missing; fails loudly, never skips."""
    explicit = os.environ.get(BINARY_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise AssetsError(f"{BINARY_ENV}={explicit} is not an executable file")
        return Path(explicit)
    binary = cache_binary()
    if os.access(binary, os.X_OK):
        return binary
    if not build_missing:
        raise AssetsError(
            f"Prometheus not found at {binary}: build it with `make controlplane` or `bash {BUILD_SCRIPT}`"
        )
    if shutil.which("go") is None:
        raise AssetsError(f"cannot build Prometheus: no `go` on PATH. Install Go and run {BUILD_SCRIPT}")
    log.warning("building Prometheus with %s (once; several minutes)", BUILD_SCRIPT)
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise AssetsError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}; run it by hand to see why")
    built = Path(result.stdout.strip().splitlines()[-1]) / "prometheus"
    if not os.access(built, os.X_OK):
        raise AssetsError(f"{BUILD_SCRIPT} succeeded but {built} is not there")
    return built


def _config(scrape_interval: float, sd_dir: Path) -> str:
    """prometheus.yml: one job whose targets are the file_sd files in `sd_dir`, scraped every interval.

    JSON is YAML, so no YAML writer is needed. The timeout equals the interval (Prometheus refuses a
    longer one). Each target may set its own path through the `__metrics_path__` label.
    """
    interval = f"{int(scrape_interval * 1000)}ms"
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        # Set here, not by flags: Prometheus 3 deprecates --log.level and --storage.tsdb.retention.time.
        "runtime": {"log_level": "warn"},
        "storage": {"tsdb": {"retention": {"time": "1h"}}},
        "scrape_configs": [
            {
                "job_name": "modeldeploy-test",
                "metrics_path": METRICS_PATH,
                "file_sd_configs": [{"files": [str(sd_dir / "*.json")], "refresh_interval": "1s"}],
            }
        ],
    }
    return json.dumps(config, indent=2)


class Prometheus:
    """One Prometheus process; `url` is its base URL (what spec...prometheus.url would hold)."""

    def __init__(
        self, *, scrape_interval: float = 1.0, binary: Path | None = None, workdir: Path | None = None
    ) -> None:
        self.scrape_interval = scrape_interval
        self._binary = binary
        self._given_workdir = workdir
        self._workdir: Path | None = None
        self._process: processes.Process | None = None
        self._port: int | None = None
        self._targets: dict[str, dict[str, str]] = {}
        self._lock = threading.RLock()

    # -- lifecycle ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._port is None:
            raise PrometheusError("Prometheus is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def log_path(self) -> Path:
        if self._workdir is None:
            raise PrometheusError("Prometheus is not running")
        return self._workdir / "prometheus.log"

    def start(self, *, timeout: float = 60.0) -> Prometheus:
        """Start it and return once /-/ready answers 200."""
        with self._lock:
            if self._process is not None:
                return self
            binary = self._binary or find_binary()
            self._workdir = self._given_workdir or Path(tempfile.mkdtemp(prefix="modeldeploy-prometheus-"))
            (self._workdir / "sd").mkdir(parents=True, exist_ok=True)
            (self._workdir / "prometheus.yml").write_text(_config(self.scrape_interval, self._workdir / "sd"))
            cleanup.register(self)
            try:
                for attempt in range(1, _START_ATTEMPTS + 1):
                    if self._start_once(binary, timeout):
                        break
                    # free_ports() closes its socket before Prometheus binds it; rarely another process
                    # takes the port in between: start again on another.
                    log.warning("Prometheus's port was taken; starting again (attempt %d)", attempt + 1)
                else:
                    raise PrometheusError(f"Prometheus found no free port in {_START_ATTEMPTS} attempts")
            except BaseException:
                self.stop()
                raise
            return self

    def _start_once(self, binary: Path, timeout: float) -> bool:
        """One start on a fresh port: True once ready, False if the port was taken, else raises."""
        workdir = self._workdir
        assert workdir is not None
        (self._port,) = processes.free_ports(1)
        argv = [
            str(binary),
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self._port}",
        ]
        self._process = processes.spawn("prometheus", argv, log_path=self.log_path, cwd=workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.popen.poll() is not None:
                text = processes.tail(self.log_path)
                self._process = None
                if "address already in use" in text:
                    return False
                raise PrometheusError(f"Prometheus exited during start-up; its log ends with:\n{text}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        log.info("Prometheus ready at %s", self.url)
                        return True
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise PrometheusError(f"Prometheus was not ready within {timeout:.0f} s:\n{processes.tail(self.log_path)}")

    def stop(self) -> None:
        """SIGTERM to its process group (then SIGKILL after 10 s), reap it, remove its folder. Idempotent."""
        with self._lock:
            cleanup.unregister(self)
            process, self._process = self._process, None
            if process is not None:
                processes.stop_process_groups(
                    [(process.name, process.popen.pid)], grace=10.0, reap=lambda _pid: process.popen.wait()
                )
            if self._workdir is not None and self._given_workdir is None:
                shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._port = None
            self._targets.clear()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.popen.poll() is None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- targets --------------------------------------------------------------------------------------

    def add_target(
        self,
        address: str,
        labels: Mapping[str, str] | None = None,
        *,
        metrics_path: str = METRICS_PATH,
        timeout: float = 30.0,
    ) -> None:
        """Scrape `address` (host:port) with these extra labels; returns once a scrape succeeded."""
        with self._lock:
            self._targets[address] = {**(labels or {}), "__metrics_path__": metrics_path}
            self._write_targets()
        self.wait_for(f'up{{instance="{address}"}}', lambda value: value == 1.0, timeout=timeout)

    def remove_target(self, address: str) -> None:
        with self._lock:
            if self._targets.pop(address, None) is not None and self._workdir is not None:
                self._write_targets()

    def _write_targets(self) -> None:
        """One file for all targets, replaced atomically (Prometheus never reads half a file)."""
        assert self._workdir is not None
        groups = [{"targets": [address], "labels": labels} for address, labels in sorted(self._targets.items())]
        scratch = self._workdir / "sd" / ".targets.json.tmp"  # not matched by *.json
        scratch.write_text(json.dumps(groups))
        scratch.replace(self._workdir / "sd" / "targets.json")

    # -- reading values (the harness's own client) ----------------------------------------------------

    def api(self, path: str, params: Mapping[str, str] | None = None) -> object:
        """GET {url}/api/v1/{path}: the `data` of a success answer; raises PrometheusError otherwise."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as response:
                document = json.load(response)
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"{path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
        if document.get("status") != "success":
            raise PrometheusError(f"{path}: {document}")
        return document["data"]

    def value(self, promql: str) -> float | None:
        """The single value of an instant query, None when its result is empty; raises on several series."""
        data = self.api("query", {"query": promql})
        assert isinstance(data, dict)
        result = data["result"]
        if data["resultType"] == "scalar":
            return float(result[1])
        if not result:
            return None
        if len(result) != 1:
            raise PrometheusError(f"{promql} returned {len(result)} series")
        return float(result[0]["value"][1])

    def wait_for(self, promql: str, predicate: Callable[[float], bool], *, timeout: float = 30.0) -> float:
        """Poll `promql` until its value satisfies `predicate`; the value. Scrapes take a second or two."""
        deadline = time.monotonic() + timeout
        last: float | None = None
        while True:
            last = self.value(promql)
            if last is not None and predicate(last):
                return last
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"{promql} did not reach the expected value within {timeout:.0f} s (last: {last}); "
                    f"targets: {self.api('targets', {'state': 'active'})}"
                )
            time.sleep(0.2)
