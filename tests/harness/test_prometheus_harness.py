"""The dev cluster's Prometheus: the pinned version, ready on a free port, scraping what it is given
(TF Serving's names as they are), and gone without a trace when stopped."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devcluster import processes
from devcluster.assets import AssetsError
from devcluster.metrics_exporter import MetricsExporter
from devcluster.prometheus import Prometheus, PrometheusError, find_binary, pinned_version

pytestmark = pytest.mark.integration


def test_the_binary_is_the_pinned_version(prometheus: Prometheus) -> None:
    # The Go module v0.3MM.P is Prometheus 3.MM.P.
    module = pinned_version()
    minor, patch = module.split(".")[1:]
    out = subprocess.run([str(find_binary()), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"prometheus, version {minor[0]}.{int(minor[1:])}.{patch} ")


def test_a_target_is_scraped_with_its_labels(prometheus: Prometheus, metrics_exporter: MetricsExporter) -> None:
    metrics_exporter.metrics.set_request_count("digits", "OK", 3)
    value = prometheus.wait_for(
        f':tensorflow:serving:request_count{{instance="{metrics_exporter.address}", model_name="digits"}}',
        lambda v: v == 3,
    )
    assert value == 3 and metrics_exporter.scrapes >= 1
    # Prometheus 3 took TF Serving's bare `Content-Type: text/plain` and its leading-colon names.
    targets = prometheus.api("targets", {"state": "active"})
    assert isinstance(targets, dict)
    (ours,) = [t for t in targets["activeTargets"] if t["labels"]["instance"] == metrics_exporter.address]
    assert ours["health"] == "up" and ours["lastError"] == ""


def test_stop_leaves_no_process_and_no_file_behind() -> None:
    server = Prometheus().start()
    pid = server._process.popen.pid if server._process else -1
    workdir = server.log_path.parent
    assert processes.alive(pid) and workdir.is_dir()
    server.stop()
    assert not processes.alive(pid) and not workdir.exists()
    server.stop()  # idempotent
    with pytest.raises(PrometheusError):
        _ = server.url


def test_a_binary_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    fake = tmp_path / "prometheus"
    fake.write_text("#!/bin/sh\necho 'err: bad config' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(PrometheusError, match="err: bad config"):
        Prometheus(binary=fake).start(timeout=10)


def test_prometheus_binary_overrides_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "prometheus"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PROMETHEUS_BINARY", str(fake))
    assert find_binary(build_missing=False) == fake
    monkeypatch.setenv("PROMETHEUS_BINARY", str(tmp_path / "missing"))
    with pytest.raises(AssetsError, match="not an executable"):
        find_binary(build_missing=False)
