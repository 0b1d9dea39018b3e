"""The canary analysis's Prometheus client against a real Prometheus server (built from its pinned Go
module), scraping a stand-in for TF Serving's metrics page whose numbers each test sets.

What it proves: the values, the "no data" cases and the errors a check sees are what Prometheus
really answers (its vector shapes, NaN, its own parse error messages), and the example queries of
docs/analysis.md give the error ratio and p99 latency of the canary alone.
"""

from __future__ import annotations

import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from devcluster.metrics_exporter import REQUEST_COUNT, MetricsExporter
from devcluster.prometheus import Prometheus
from modeldeploy.analysis.prometheus import Sample, query, render_query
from repo_paths import REPO

pytestmark = pytest.mark.integration

TIMEOUT = 5.0


def counts(test: str, model: str, status: str = "") -> str:
    status_matcher = f', status!="{status}"' if status else ""
    return f'{REQUEST_COUNT}{{test="{test}", model_name="{model}"{status_matcher}}}'


@pytest.fixture
def model() -> str:
    return f"digits-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def test_label(request: pytest.FixtureRequest) -> str:
    """The label the metrics_exporter fixture puts on this test's series."""
    return str(request.node.name[:100])


def test_an_error_ratio_the_exporter_sets_is_what_the_query_returns(
    prometheus: Prometheus, metrics_exporter: MetricsExporter, model: str, test_label: str
) -> None:
    metrics_exporter.metrics.set_request_count(model, "OK", 95)
    metrics_exporter.metrics.set_request_count(model, "INTERNAL", 4)
    metrics_exporter.metrics.set_request_count(model, "INVALID_ARGUMENT", 1)
    prometheus.wait_for(f"sum({counts(test_label, model)})", lambda total: total == 100)

    ratio = f"sum({counts(test_label, model, 'OK')}) / sum({counts(test_label, model)})"
    assert query(prometheus.url, ratio, TIMEOUT) == Sample(value=0.05)

    # A new value set on the exporter is what the next query returns, once scraped.
    metrics_exporter.metrics.set_request_count(model, "INTERNAL", 14)
    prometheus.wait_for(f"sum({counts(test_label, model)})", lambda total: total == 110)
    sample = query(prometheus.url, ratio, TIMEOUT)
    assert sample.value == pytest.approx(15 / 110, rel=1e-12) and sample.error is None


@pytest.mark.parametrize("timeout", [0.5, 1, 60])
def test_the_timeout_is_one_prometheus_accepts(prometheus: Prometheus, timeout: float) -> None:
    # The server is told the timeout too (it stops evaluating then); it must parse what we send.
    assert query(prometheus.url, "vector(1)", timeout) == Sample(value=1.0)


def test_a_query_matching_nothing_is_no_data(prometheus: Prometheus, metrics_exporter: MetricsExporter) -> None:
    sample = query(prometheus.url, f'sum({REQUEST_COUNT}{{model_name="no-such-model-{uuid.uuid4().hex}"}})', TIMEOUT)
    assert sample.no_data, sample


def test_zero_over_zero_is_no_data(
    prometheus: Prometheus, metrics_exporter: MetricsExporter, model: str, test_label: str
) -> None:
    # The canary exists but served nothing yet: its error ratio is 0/0, NaN in Prometheus.
    metrics_exporter.metrics.set_request_count(model, "OK", 0)
    prometheus.wait_for(f"count({counts(test_label, model)})", lambda n: n == 1)
    sample = query(
        prometheus.url, f"sum({counts(test_label, model, 'OK')} * 0) / sum({counts(test_label, model)})", TIMEOUT
    )
    assert sample.no_data, sample


def test_several_series_is_an_error_asking_to_aggregate(
    prometheus: Prometheus, metrics_exporter: MetricsExporter, model: str, test_label: str
) -> None:
    metrics_exporter.metrics.set_request_count(model, "OK", 10)
    metrics_exporter.metrics.set_request_count(model, "INTERNAL", 1)
    prometheus.wait_for(f"count({counts(test_label, model)})", lambda n: n == 2)
    sample = query(prometheus.url, counts(test_label, model), TIMEOUT)
    assert sample.value is None and sample.error is not None
    assert "returned 2 series" in sample.error and 'status="INTERNAL"' in sample.error
    assert "sum(" in sample.error and prometheus.url in sample.error


def test_a_range_vector_is_an_error(prometheus: Prometheus, metrics_exporter: MetricsExporter) -> None:
    sample = query(prometheus.url, f"sum({REQUEST_COUNT})[1m:1s]", TIMEOUT)
    assert sample.error is not None and "range vector" in sample.error


@pytest.mark.parametrize(
    ("promql", "message"),
    [
        (f"sum(rate({REQUEST_COUNT}[1m])", r"parse error: unclosed left parenthesis"),
        (f"rate({REQUEST_COUNT})", r"expected type range vector in call to function \"rate\""),
        ("sum(up) by (", r"parse error"),
    ],
)
def test_bad_promql_is_an_error_with_prometheus_own_message(prometheus: Prometheus, promql: str, message: str) -> None:
    sample = query(prometheus.url, promql, TIMEOUT)
    assert sample.value is None and sample.error is not None
    assert sample.error.startswith(f"Prometheus at {prometheus.url} rejected the query (HTTP 400, bad_data): ")
    assert re.search(message, sample.error), sample.error


def test_a_url_with_a_path_that_is_not_prometheus(prometheus: Prometheus) -> None:
    # A user who gave the URL of a page under the server instead of its base URL.
    sample = query(f"{prometheus.url}/graph", "up", TIMEOUT)
    assert sample.error is not None and f"{prometheus.url}/graph" in sample.error and "404" in sample.error


def test_an_unreachable_server_is_an_error_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # bound, not listening: refused
        started = time.monotonic()
        sample = query(url, "up", TIMEOUT)
    assert time.monotonic() - started < 1.0
    assert sample.value is None and sample.error is not None
    assert sample.error.startswith(f"Prometheus at {url} is unreachable: ") and "refused" in sample.error


@contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a Prometheus that hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_a_server_that_never_answers_is_an_error_after_the_timeout() -> None:
    with silent_server() as url:
        started = time.monotonic()
        sample = query(url, "up", 1.0)
        elapsed = time.monotonic() - started
    assert sample == Sample(error=f"Prometheus at {url} did not answer within 1 s")
    assert 0.9 < elapsed < 3.0


# -- the examples of docs/analysis.md --------------------------------------------------------------


def doc_query(check: str) -> str:
    """The ```promql block after `<!-- check: NAME -->` in docs/analysis.md."""
    text = (REPO / "docs" / "analysis.md").read_text()
    match = re.search(rf"<!-- check: {re.escape(check)} -->\n```promql\n(.*?)```", text, re.DOTALL)
    assert match, f"docs/analysis.md has no example query {check!r}"
    return match.group(1).strip()


@contextmanager
def pod(prometheus: Prometheus, namespace: str, name: str, track: str) -> Iterator[MetricsExporter]:
    """A serving pod's metrics as the docs' kubernetes-pods job labels them."""
    labels = {"namespace": namespace, "modeldeploy_io_model_deployment": name, "modeldeploy_io_track": track}
    with MetricsExporter() as exporter:
        prometheus.add_target(exporter.address, labels)
        try:
            yield exporter
        finally:
            prometheus.remove_target(exporter.address)


def test_the_documented_error_ratio_and_p99_latency_of_the_canary(prometheus: Prometheus) -> None:
    namespace, name = f"ml-{uuid.uuid4().hex[:8]}", "digits"
    error_ratio = render_query(doc_query("error-ratio"), namespace, name, 2, "0123456789")
    p99_ms = render_query(doc_query("p99-latency-ms"), namespace, name, 2, "0123456789")
    assert "${" not in error_ratio + p99_ms

    with pod(prometheus, namespace, name, "stable") as stable, pod(prometheus, namespace, name, "canary") as canary:
        # TF Serving's model_name is the same on both tracks: only the track label tells them apart.
        stable.metrics.simulate_traffic("digits", ok=50, errors=50, latency_us=40_000)
        canary.metrics.simulate_traffic("digits", ok=95, errors=5, latency_us=1500, error_status="INVALID_ARGUMENT")
        # rate() needs two scrapes of the traffic in its window.
        prometheus.wait_for(f"count({error_ratio})", lambda n: n == 1, timeout=60)
        prometheus.wait_for(f"count({p99_ms})", lambda n: n == 1, timeout=60)

        ratio = query(prometheus.url, error_ratio, TIMEOUT)
        p99 = query(prometheus.url, p99_ms, TIMEOUT)

    # Every tick adds 5 failures per 100 requests on the canary: exactly 5 %, whatever the window.
    assert ratio.error is None and ratio.value == pytest.approx(0.05, rel=1e-9)
    # Every canary request took 1500 us: TF Serving's bucket above it is (1102, 1983.59] us (its page
    # prints six digits of 10 * 1.8^8 and 10 * 1.8^9), and histogram_quantile interpolates 99 % of the
    # way into it.
    assert p99.error is None and p99.value == pytest.approx((1102 + 0.99 * (1983.59 - 1102)) / 1000, rel=1e-9)


def test_the_documented_error_ratio_of_a_canary_without_errors_is_zero(prometheus: Prometheus) -> None:
    """TF Serving has no status!="OK" series until a request fails: the ratio must still be 0."""
    namespace, name = f"ml-{uuid.uuid4().hex[:8]}", "digits"
    error_ratio = render_query(doc_query("error-ratio"), namespace, name, 2, "0123456789")
    with pod(prometheus, namespace, name, "canary") as canary:
        canary.metrics.simulate_traffic("digits", ok=10, errors=0)
        total = f'sum(rate({REQUEST_COUNT}{{namespace="{namespace}"}}[1m]))'
        prometheus.wait_for(total, lambda value: value > 0, timeout=60)
        ratio = query(prometheus.url, error_ratio, TIMEOUT)
    assert ratio.error is None and ratio.value == 0, ratio


def test_the_documented_queries_have_no_data_before_the_canary_serves(prometheus: Prometheus) -> None:
    namespace, name = f"ml-{uuid.uuid4().hex[:8]}", "digits"
    with pod(prometheus, namespace, name, "canary") as canary:
        canary.metrics.set_request_count("digits", "OK", 0)
        canary.metrics.observe_latency("digits", 1500, count=0)
        # rate() needs two samples of the idle counter in its window.
        prometheus.wait_for(f'count_over_time({REQUEST_COUNT}{{namespace="{namespace}"}}[1m])', lambda n: n >= 2)
        for check in ("error-ratio", "p99-latency-ms"):
            sample = query(prometheus.url, render_query(doc_query(check), namespace, name, 1, "r"), TIMEOUT)
            assert sample.no_data, (check, sample)
