"""Instant PromQL queries against a Prometheus server, for the canary analysis.

The one module that talks to Prometheus (like `modeldeploy.k8s.client` for the API server): the step
machine stays pure and gets `Sample`s. It adds only the HTTP round trip to `modeldeploy.analysis.promql`,
which reads the answer (and which the pure core imports instead of this module).

Why the standard library's urllib and no client package: one GET with a query string and a JSON
answer; a dependency would add nothing but weight to the operator's image. Proxies follow the usual
HTTP_PROXY / NO_PROXY variables, like any other HTTP client in the cluster.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPException

from modeldeploy.analysis.promql import Sample, parse_response, render_query

__all__ = ["MAX_ANSWER_BYTES", "Sample", "query", "query_url", "render_query"]

#: An answer longer than this is not one number: the query selects far too much (no aggregation).
MAX_ANSWER_BYTES = 1 << 20


def query_url(url: str, promql: str, timeout: float) -> str:
    """GET {url}/api/v1/query for `promql`; the server is told the timeout too, so it stops evaluating.

    `url` is the server's base URL and may carry a path prefix (a Prometheus behind a proxy at
    /prometheus): the API path is appended to it.
    """
    # Plain seconds: Prometheus reads a number as seconds, but its duration syntax has no fractions ("0.5s").
    params = urllib.parse.urlencode({"query": promql, "timeout": f"{max(timeout, 0.001):g}"})
    return f"{url.rstrip('/')}/api/v1/query?{params}"


def query(url: str, promql: str, timeout: float) -> Sample:
    """Run an instant query; never raises (an unreachable server is a Sample with an error).

    `timeout` bounds the connection and every read (urllib's socket timeout), in seconds.
    """
    try:
        request = urllib.request.Request(query_url(url, promql, timeout), headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, body = response.status, response.read(MAX_ANSWER_BYTES + 1)
    except urllib.error.HTTPError as exc:
        # Prometheus's own errors (400 bad query, 422 evaluation, 503 timeout) come with its JSON.
        try:
            status, body = exc.code, exc.read(MAX_ANSWER_BYTES + 1)
        except (OSError, HTTPException):
            status, body = exc.code, b""
        finally:
            exc.close()
    except TimeoutError:
        return Sample(error=f"Prometheus at {url} did not answer within {timeout:g} s")
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return Sample(error=f"Prometheus at {url} did not answer within {timeout:g} s")
        return Sample(error=f"Prometheus at {url} is unreachable: {reason}")
    except (OSError, HTTPException, ValueError) as exc:
        # A connection reset mid-answer, a malformed status line, a URL urllib cannot use.
        return Sample(error=f"Prometheus at {url} could not be queried: {exc}")
    if len(body) > MAX_ANSWER_BYTES:
        return Sample(
            error=(
                f"Prometheus at {url} answered more than {MAX_ANSWER_BYTES // 1024} KiB: the query selects many "
                "series; a check needs one number: aggregate it, e.g. sum(...)"
            )
        )
    return parse_response(url, status, body)
