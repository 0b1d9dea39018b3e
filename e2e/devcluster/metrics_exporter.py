"""A stand-in for TF Serving's /monitoring/prometheus/metrics, with the numbers a test chooses.

Why it exists: the canary analysis is tested against a real Prometheus, which must scrape something
that looks exactly like TF Serving (no TF Serving binary runs here). What it copies from TF Serving's
source (tensorflow_serving/servables/tensorflow/util.cc and util/prometheus_exporter.cc):

- the metric names: TF's `/tensorflow/serving/request_count` becomes `:tensorflow:serving:request_count`
  (every character outside [a-zA-Z0-9_] turns into `:`);
- `:tensorflow:serving:request_count{model_name, status}`, a counter; `status` is the canonical
  error code's name: OK, INVALID_ARGUMENT, NOT_FOUND, INTERNAL, UNAVAILABLE...;
- `:tensorflow:serving:request_latency{model_name, API, entrypoint}`, a histogram in microseconds
  (`API` is predict/classify/regress over REST, Predict/Classify/Regress over gRPC; `entrypoint` REST
  or GRPC) with buckets Exponential(10, 1.8, 33): 10, 18, 32.4, ... then +Inf; a value counts in the
  first bucket whose limit is above it; only requests that succeeded are timed;
- the text format: one `# TYPE` line per metric, labels in the order above (then `le`), counters as
  integers, bucket limits and sums as C++ prints a double (6 significant digits), and the header
  `Content-Type: text/plain` with no version, which Prometheus 3 must accept.

Counters either are set directly (`set_request_count`, `observe_latency`) or follow simulated steady
traffic (`simulate_traffic`): every tick (0.1 s) adds the same numbers of good and failed requests,
so any rate() ratio over them is exact, whenever Prometheus scrapes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

#: Where TF Serving serves its metrics (PrometheusExporter::kPrometheusPath).
METRICS_PATH = "/monitoring/prometheus/metrics"
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
#: Simulated traffic advances in steps of this many seconds.
TICK_SECONDS = 0.1


def _exponential_limits(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """TF's monitoring::Buckets::Exponential: scale, scale*growth, ... (count limits, then +Inf)."""
    limits: list[float] = []
    bound = scale
    for _ in range(count):
        limits.append(bound)
        bound *= growth
    return tuple(limits)


#: request_latency's finite bucket limits, microseconds.
LATENCY_LIMITS = _exponential_limits(10, 1.8, 33)


def _double(value: float) -> str:
    """A double as absl::StrCat prints it: six significant digits."""
    return f"{value:.6g}"


def _labels(pairs: Iterator[tuple[str, str]] | list[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in pairs)


@dataclass
class _Histogram:
    """Per-bucket (not cumulative) counts: index i counts values below LATENCY_LIMITS[i]; the last, the rest."""

    buckets: list[int]
    total: float = 0.0

    @classmethod
    def empty(cls) -> _Histogram:
        return cls(buckets=[0] * (len(LATENCY_LIMITS) + 1))

    def add(self, value: float, count: int) -> None:
        index = next((i for i, limit in enumerate(LATENCY_LIMITS) if value < limit), len(LATENCY_LIMITS))
        self.buckets[index] += count
        self.total += value * count


@dataclass(frozen=True)
class _Traffic:
    """Steady traffic of one model from `started` on: per tick, `ok` good requests timed at
    `latency_us` and `errors` failed ones (status `error_status`)."""

    started: float
    ok: int
    errors: int
    latency_us: float
    error_status: str
    api: str
    entrypoint: str

    def ticks(self, now: float) -> int:
        return int((now - self.started) / TICK_SECONDS)


class TFServingMetrics:
    """The numbers the exporter publishes; thread-safe (the server renders while a test sets)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock  # simulated traffic counts ticks on it (a test may pass its own)
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._latency: dict[tuple[str, str, str], _Histogram] = {}
        self._traffic: dict[str, _Traffic] = {}

    def set_request_count(self, model_name: str, status: str, count: int) -> None:
        """`:tensorflow:serving:request_count{model_name, status}` is `count` from now on."""
        with self._lock:
            self._counts[(model_name, status)] = count

    def observe_latency(
        self, model_name: str, latency_us: float, count: int = 1, api: str = "predict", entrypoint: str = "REST"
    ) -> None:
        """Record `count` requests that took `latency_us` microseconds."""
        with self._lock:
            self._latency.setdefault((model_name, api, entrypoint), _Histogram.empty()).add(latency_us, count)

    def simulate_traffic(
        self,
        model_name: str,
        *,
        ok: int,
        errors: int = 0,
        latency_us: float = 1000.0,
        error_status: str = "INTERNAL",
        api: str = "predict",
        entrypoint: str = "REST",
    ) -> None:
        """From now on, every tick adds `ok` good requests (timed at `latency_us`) and `errors` failed
        ones to this model's counters: its error ratio is errors / (ok + errors) over any window."""
        with self._lock:
            self._traffic[model_name] = _Traffic(self._clock(), ok, errors, latency_us, error_status, api, entrypoint)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()
            self._latency.clear()
            self._traffic.clear()

    def render(self) -> str:
        """The page in TF Serving's text format."""
        now = self._clock()
        with self._lock:
            counts = dict(self._counts)
            latency = {key: _Histogram(list(h.buckets), h.total) for key, h in self._latency.items()}
            for model, traffic in self._traffic.items():
                ticks = traffic.ticks(now)
                counts[(model, "OK")] = counts.get((model, "OK"), 0) + traffic.ok * ticks
                if traffic.errors:
                    key = (model, traffic.error_status)
                    counts[key] = counts.get(key, 0) + traffic.errors * ticks
                histogram = latency.setdefault((model, traffic.api, traffic.entrypoint), _Histogram.empty())
                histogram.add(traffic.latency_us, traffic.ok * ticks)
        lines = [f"# TYPE {REQUEST_COUNT} counter"]
        lines += [
            f"{REQUEST_COUNT}{{{_labels([('model_name', model), ('status', status)])}}} {count:d}"
            for (model, status), count in sorted(counts.items())
        ]
        lines.append(f"# TYPE {REQUEST_LATENCY} histogram")
        for (model, api, entrypoint), histogram in sorted(latency.items()):
            labels = _labels([("model_name", model), ("API", api), ("entrypoint", entrypoint)])
            cumulative = 0
            for i, count in enumerate(histogram.buckets):
                cumulative += count
                le = _double(LATENCY_LIMITS[i]) if i < len(LATENCY_LIMITS) else "+Inf"
                lines.append(f'{REQUEST_LATENCY}_bucket{{{labels},le="{le}"}} {cumulative}')
            lines.append(f"{REQUEST_LATENCY}_sum{{{labels}}} {_double(histogram.total)}")
            lines.append(f"{REQUEST_LATENCY}_count{{{labels}}} {cumulative}")
        return "\n".join(lines) + "\n"


class MetricsExporter:
    """An HTTP server on 127.0.0.1 (a free port) serving `metrics` at METRICS_PATH, in a thread."""

    def __init__(self, metrics: TFServingMetrics | None = None) -> None:
        self.metrics = metrics or TFServingMetrics()
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != METRICS_PATH:
                    # TF Serving's answer to any other path of its metrics handler.
                    self._reply(400, f"Unexpected path: {self.path}. Should be {METRICS_PATH}")
                    return
                exporter.scrapes += 1
                self._reply(200, exporter.metrics.render())

            def _reply(self, code: int, text: str) -> None:
                body = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # the base class names it `format`
                pass  # one line per scrape every second would drown the test output

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="tfserving-metrics", daemon=True)

    @property
    def address(self) -> str:
        """host:port, as a Prometheus scrape target."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}{METRICS_PATH}"

    def start(self) -> MetricsExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsExporter:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
