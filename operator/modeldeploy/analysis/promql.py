"""What a canary check's PromQL becomes, and what Prometheus's answer means: pure, no I/O.

Why it is apart from the client (`modeldeploy.analysis.prometheus`): the step machine and the plan
are pure and need `Sample` and `render_query`; reading an answer is a pure function of its bytes,
so every shape Prometheus can answer with is unit-tested here without a server, and the client
only adds the HTTP round trip.

The contract with the user (spec.rollout.analysis.prometheus.checks[].query): the query returns ONE
number, a scalar or a vector of one series. An empty vector or NaN (e.g. 0/0 before any request
reached the canary) is "no data", which the check's failOnNoData decides about. Several series, a
range vector or a string are the query's mistake, reported as an error that says how to fix it.
"""

from __future__ import annotations

import json
import math
import string
from dataclasses import dataclass
from typing import Any

#: The variables a check's query may use, in the order the documentation lists them.
QUERY_VARIABLES = ("namespace", "name", "version", "revision")

# An error message quotes at most this much of a body that is not Prometheus's JSON (an HTML page
# from a proxy, say): enough to recognise it, not a page in an Event.
_BODY_EXCERPT = 200


@dataclass(frozen=True)
class Sample:
    """One query's answer: a value, no data (an empty result or NaN), or an error a human can act on.

    `value` may be +Inf or -Inf (e.g. histogram_quantile() when the quantile falls in the +Inf
    bucket): a real measurement that compares as expected, but not a number JSON can carry.
    """

    value: float | None = None
    error: str | None = None  # e.g. "Prometheus at http://...: connection refused", or its parse error

    @property
    def no_data(self) -> bool:
        return self.value is None and self.error is None


def render_query(template: str, namespace: str, name: str, version: int | str | None, revision: str) -> str:
    """The check's query with ${namespace}, ${name}, ${version} and ${revision} filled in.

    safe_substitute: any other `$word` (PromQL has none, but a label value may hold one) is left as
    written instead of failing the rollout; `$$` gives a literal `$`. A missing version renders as "".
    """
    values = {
        "namespace": namespace,
        "name": name,
        "version": "" if version is None else str(version),
        "revision": revision,
    }
    return string.Template(template).safe_substitute(values)


def _number(url: str, raw: object) -> Sample:
    """A sample's value as Prometheus encodes it: a string ("1.5", "NaN", "+Inf")."""
    try:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise TypeError(raw)
        value = float(raw)
    except (TypeError, ValueError):
        return Sample(error=f"Prometheus at {url} answered a value that is not a number: {raw!r}")
    return Sample() if math.isnan(value) else Sample(value=value)


def _series_name(metric: object) -> str:
    """A series as PromQL would write it, e.g. up{job="a"}, for an error message."""
    if not isinstance(metric, dict):
        return "{}"
    labels = {str(k): str(v) for k, v in metric.items()}
    name = labels.pop("__name__", "")
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _vector(url: str, result: list[Any]) -> Sample:
    if not result:
        return Sample()
    if len(result) > 1:
        shown = ", ".join(_series_name(item.get("metric") if isinstance(item, dict) else None) for item in result[:3])
        more = f" and {len(result) - 3} more" if len(result) > 3 else ""
        return Sample(
            error=(
                f"Prometheus at {url} returned {len(result)} series ({shown}{more}); a check needs one number: "
                "aggregate the query, e.g. sum(...), max(...) or sum by () (...)"
            )
        )
    item = result[0]
    if not isinstance(item, dict):
        return Sample(error=f"Prometheus at {url} answered a vector element that is not an object: {item!r}")
    if "histogram" in item and "value" not in item:
        return Sample(
            error=(
                f"Prometheus at {url} returned a native histogram; a check needs one number: "
                "use histogram_quantile(), histogram_count() or histogram_sum()"
            )
        )
    pair = item.get("value")
    if not isinstance(pair, list) or len(pair) != 2:
        return Sample(error=f"Prometheus at {url} answered a vector element without a [time, value] pair")
    return _number(url, pair[1])


def parse_response(url: str, status_code: int, body: bytes) -> Sample:
    """What an answer of GET {url}/api/v1/query means: a value, no data, or an error naming the URL.

    `status_code` is the HTTP status. Prometheus answers its own errors (a bad query: 400, an
    evaluation failure: 422, a timeout: 503) with JSON `{"status": "error", "errorType", "error"}`;
    its message is passed on as it is, since it says where the query went wrong.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    if not isinstance(document, dict) or "status" not in document:
        excerpt = body[:_BODY_EXCERPT].decode("utf-8", "replace").strip()
        if len(body) > _BODY_EXCERPT:
            excerpt += "..."
        shown = f": {excerpt}" if excerpt else " (empty body)"
        if not 200 <= status_code < 300:  # not 2xx
            return Sample(error=f"Prometheus at {url} answered HTTP {status_code}{shown}")
        return Sample(error=f"{url} did not answer like Prometheus's query API (is it the server's base URL?){shown}")
    if document["status"] != "success":
        kind = document.get("errorType") or "error"
        message = document.get("error") or "no message"
        return Sample(error=f"Prometheus at {url} rejected the query (HTTP {status_code}, {kind}): {message}")
    data = document.get("data")
    if not isinstance(data, dict):
        return Sample(error=f"Prometheus at {url} answered success without data")
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "scalar":
        if not isinstance(result, list) or len(result) != 2:
            return Sample(error=f"Prometheus at {url} answered a scalar without a [time, value] pair")
        return _number(url, result[1])
    if result_type == "vector":
        if not isinstance(result, list):
            return Sample(error=f"Prometheus at {url} answered a vector that is not a list")
        return _vector(url, result)
    if result_type == "matrix":
        return Sample(
            error=(
                f"Prometheus at {url} returned a range vector (the query ends in [duration]); a check needs one "
                "number: wrap it in rate(), increase() or avg_over_time() and aggregate"
            )
        )
    if result_type == "string":
        return Sample(error=f"Prometheus at {url} returned a string, not a number")
    return Sample(error=f"Prometheus at {url} answered an unknown result type {result_type!r}")
