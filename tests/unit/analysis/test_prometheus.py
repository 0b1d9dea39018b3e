"""What every shape of Prometheus's /api/v1/query answer means to a canary check, and how a check's
query is filled in. Pure functions: the answers are Prometheus's JSON as it documents and sends it
(the integration tests get the same shapes from a real server)."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from typing import Any

import pytest
import yaml

from modeldeploy.analysis import prometheus as client
from modeldeploy.analysis.promql import Sample, parse_response, render_query
from modeldeploy.api.spec import Rollout
from repo_paths import REPO

URL = "http://prometheus.monitoring:9090"


def answer(result_type: str, result: Any, *, status_code: int = 200) -> Sample:
    body = {"status": "success", "data": {"resultType": result_type, "result": result}}
    return parse_response(URL, status_code, json.dumps(body).encode())


def series(value: str, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1764633600.123, value]}


# -- values -------------------------------------------------------------------------------------------


def test_a_scalar_is_its_value() -> None:
    assert answer("scalar", [1764633600.1, "0.25"]) == Sample(value=0.25)


def test_a_vector_of_one_series_is_its_value() -> None:
    assert answer("vector", [series("0.05", model_name="digits")]) == Sample(value=0.05)


def test_a_series_without_labels_counts_as_one_series() -> None:
    # sum(...) answers a vector of one series with no labels at all.
    assert answer("vector", [series("12")]) == Sample(value=12.0)


@pytest.mark.parametrize(("raw", "expected"), [("+Inf", math.inf), ("-Inf", -math.inf), ("1e-3", 0.001), ("0", 0.0)])
def test_prometheus_number_spellings(raw: str, expected: float) -> None:
    assert answer("vector", [series(raw)]).value == expected


# -- no data ------------------------------------------------------------------------------------------


def test_an_empty_vector_is_no_data() -> None:
    sample = answer("vector", [])
    assert sample.no_data and sample.value is None and sample.error is None


@pytest.mark.parametrize("result_type", ["vector", "scalar"])
def test_nan_is_no_data(result_type: str) -> None:
    # 0/0: an error ratio before any request reached the canary.
    result = [series("NaN")] if result_type == "vector" else [1764633600.1, "NaN"]
    assert answer(result_type, result).no_data


def test_a_value_is_not_no_data() -> None:
    assert not Sample(value=0.0).no_data
    assert not Sample(error="x").no_data


# -- the query's mistakes -----------------------------------------------------------------------------


def test_several_series_ask_to_aggregate_and_name_them() -> None:
    sample = answer(
        "vector",
        [series("1", __name__="up", instance=f"10.0.0.{i}:8501", job="tfserving") for i in range(5)],
    )
    assert sample.value is None and sample.error is not None
    assert "returned 5 series" in sample.error
    assert 'up{instance="10.0.0.0:8501", job="tfserving"}' in sample.error
    assert "and 2 more" in sample.error
    assert "sum(" in sample.error and URL in sample.error


def test_a_range_vector_says_how_to_make_it_one_number() -> None:
    sample = answer("matrix", [{"metric": {}, "values": [[1.0, "1"], [2.0, "2"]]}])
    assert sample.error is not None and "range vector" in sample.error and "rate()" in sample.error


def test_a_string_is_not_a_number() -> None:
    sample = answer("string", [1.0, "hello"])
    assert sample.error is not None and "string" in sample.error


def test_a_native_histogram_says_which_functions_give_a_number() -> None:
    item = {"metric": {}, "histogram": [1.0, {"count": "3", "sum": "4", "buckets": []}]}
    sample = answer("vector", [item])
    assert sample.error is not None and "histogram_quantile()" in sample.error


@pytest.mark.parametrize(
    ("result_type", "result"),
    [
        ("vector", [{"metric": {}, "value": [1.0, "not-a-number"]}]),
        ("vector", [{"metric": {}, "value": [1.0, None]}]),
        ("vector", [{"metric": {}, "value": [1.0, True]}]),
        ("vector", [{"metric": {}}]),
        ("vector", ["1"]),
        ("vector", "1"),
        ("scalar", "1"),
        ("scalar", [1.0]),
        ("exemplars", []),
    ],
)
def test_a_malformed_success_is_an_error_not_a_value(result_type: str, result: Any) -> None:
    sample = answer(result_type, result)
    assert sample.value is None and sample.error is not None and URL in sample.error


# -- Prometheus's errors and other servers ------------------------------------------------------------


def test_prometheus_error_json_is_passed_on_with_the_url() -> None:
    # What Prometheus answers to `sum(rate(x[1m])` (HTTP 400).
    body = {
        "status": "error",
        "errorType": "bad_data",
        "error": 'invalid parameter "query": 1:17: parse error: unclosed left parenthesis',
    }
    sample = parse_response(URL, 400, json.dumps(body).encode())
    assert sample.value is None
    assert sample.error == (
        f"Prometheus at {URL} rejected the query (HTTP 400, bad_data): "
        'invalid parameter "query": 1:17: parse error: unclosed left parenthesis'
    )


def test_an_evaluation_timeout_is_an_error() -> None:
    body = {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}
    sample = parse_response(URL, 503, json.dumps(body).encode())
    assert sample.error is not None and "timeout" in sample.error and "query timed out" in sample.error


def test_an_http_error_that_is_not_prometheus_quotes_the_body() -> None:
    sample = parse_response(URL, 502, b"<html><body>Bad Gateway</body></html>")
    assert sample.error == f"Prometheus at {URL} answered HTTP 502: <html><body>Bad Gateway</body></html>"


def test_a_long_body_is_cut_in_the_message() -> None:
    sample = parse_response(URL, 500, b"x" * 10_000)
    assert sample.error is not None and len(sample.error) < 400 and sample.error.endswith("...")


def test_an_empty_error_body_says_so() -> None:
    assert parse_response(URL, 404, b"").error == f"Prometheus at {URL} answered HTTP 404 (empty body)"


def test_a_200_that_is_not_the_query_api_suggests_the_base_url() -> None:
    # A user who pasted the UI's address (an HTML page) or another JSON API.
    for body in (b"<!doctype html><title>Prometheus</title>", b'{"hello": "world"}', b"[1, 2]"):
        sample = parse_response(URL, 200, body)
        assert sample.error is not None and "base URL" in sample.error


# -- the query's variables ----------------------------------------------------------------------------


def test_render_query_fills_every_variable() -> None:
    template = (
        'sum(rate(:tensorflow:serving:request_count{namespace="${namespace}", pod=~"${name}-.*", '
        'status!="OK", version="${version}", revision="${revision}"}[1m]))'
    )
    assert render_query(template, "ml", "digits", 7, "0123456789") == (
        'sum(rate(:tensorflow:serving:request_count{namespace="ml", pod=~"digits-.*", '
        'status!="OK", version="7", revision="0123456789"}[1m]))'
    )


def test_render_query_leaves_other_dollars_and_regexes_alone() -> None:
    # PromQL regexes may end in `$`; an unknown ${x} stays as written instead of failing the rollout.
    template = 'up{job=~"tf.*$", x="${unknown}", y="$name", z="$$"}'
    assert render_query(template, "ns", "md", 1, "r") == 'up{job=~"tf.*$", x="${unknown}", y="md", z="$"}'


def test_render_query_without_a_version() -> None:
    assert render_query('v="${version}"', "ns", "md", None, "r") == 'v=""'


# -- the client's request (its answers from a real server: tests/integration/test_prometheus.py) -----


def test_the_query_url_carries_the_query_and_the_timeout() -> None:
    url = client.query_url("http://p:9090/prometheus/", 'sum(rate(x{a="b"}[1m]))', 5)
    assert client.query_url("http://p", "up", 0.5).endswith("&timeout=0.5")
    base, _, params = url.partition("?")
    assert base == "http://p:9090/prometheus/api/v1/query"
    assert urllib.parse.parse_qs(params) == {"query": ['sum(rate(x{a="b"}[1m]))'], "timeout": ["5"]}


def test_an_unusable_url_is_an_error_not_an_exception() -> None:
    sample = client.query("http://[::1", "up", timeout=1)
    assert sample.value is None and sample.error is not None and "http://[::1" in sample.error


# -- docs/analysis.md ---------------------------------------------------------------------------------


def test_the_documented_spec_is_a_valid_rollout_with_the_documented_queries() -> None:
    text = (REPO / "docs" / "analysis.md").read_text()
    manifest = yaml.safe_load(re.search(r"```yaml\n(spec:.*?)```", text, re.DOTALL).group(1))  # type: ignore[union-attr]
    queries = re.findall(r"<!-- check: ([a-z0-9-]+) -->\n```promql\n(.*?)```", text, re.DOTALL)
    checks = manifest["spec"]["rollout"]["analysis"]["prometheus"]["checks"]
    assert [check["name"] for check in checks] == [name for name, _ in queries]
    for check, (_, promql) in zip(checks, queries, strict=True):
        check["query"] = promql.strip()
    rollout = Rollout.model_validate(manifest["spec"]["rollout"])
    assert rollout.analysis is not None and rollout.analysis.prometheus is not None
    for check in rollout.analysis.prometheus.checks:
        rendered = render_query(check.query, "ml", "digits", 2, "0123456789")
        assert (
            "${" not in rendered
            and 'namespace="ml"' in rendered
            and 'modeldeploy_io_model_deployment="digits"' in rendered
        )
