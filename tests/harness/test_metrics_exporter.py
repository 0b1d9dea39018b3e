"""The TF Serving stand-in publishes what TF Serving's own exporter would for the same numbers.

The expected page is written out by hand from TF Serving's source (util/prometheus_exporter.cc: TYPE
lines, label order, `le` last, cumulative buckets, C++'s six-digit doubles; servables/tensorflow/util.cc:
names, labels, buckets Exponential(10, 1.8, 33)), so a drift of the exporter from it fails here
rather than as a puzzling query result.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from devcluster.metrics_exporter import LATENCY_LIMITS, METRICS_PATH, MetricsExporter, TFServingMetrics


def test_the_latency_buckets_are_tf_servings() -> None:
    assert len(LATENCY_LIMITS) == 33
    assert [f"{limit:.6g}" for limit in LATENCY_LIMITS[:10]] == [
        "10", "18", "32.4", "58.32", "104.976", "188.957", "340.122", "612.22", "1102", "1983.59",
    ]  # fmt: skip
    assert f"{LATENCY_LIMITS[-1]:.6g}" == "1.47476e+09"  # about 24 minutes, in microseconds


def test_the_page_has_tf_servings_names_labels_and_format() -> None:
    metrics = TFServingMetrics()
    metrics.set_request_count("digits", "OK", 95)
    metrics.set_request_count("digits", "INVALID_ARGUMENT", 5)
    metrics.observe_latency("digits", 15, count=2)  # in (10, 18]
    metrics.observe_latency("digits", 18)  # a value equal to a limit counts in the next bucket, as in TF
    metrics.observe_latency("digits", 5e9)  # above every limit: +Inf only
    lines = metrics.render().splitlines()

    bucket = ':tensorflow:serving:request_latency_bucket{model_name="digits",API="predict",entrypoint="REST",le='
    assert lines[:3] == [
        "# TYPE :tensorflow:serving:request_count counter",
        ':tensorflow:serving:request_count{model_name="digits",status="INVALID_ARGUMENT"} 5',
        ':tensorflow:serving:request_count{model_name="digits",status="OK"} 95',
    ]
    assert lines[3] == "# TYPE :tensorflow:serving:request_latency histogram"
    assert lines[4:8] == [f'{bucket}"10"}} 0', f'{bucket}"18"}} 2', f'{bucket}"32.4"}} 3', f'{bucket}"58.32"}} 3']
    assert lines[4 + 32] == f'{bucket}"1.47476e+09"}} 3'
    assert lines[4 + 33] == f'{bucket}"+Inf"}} 4'
    assert lines[4 + 34 :] == [
        ':tensorflow:serving:request_latency_sum{model_name="digits",API="predict",entrypoint="REST"} 5e+09',
        ':tensorflow:serving:request_latency_count{model_name="digits",API="predict",entrypoint="REST"} 4',
    ]


def test_label_values_are_escaped_like_tf_serving() -> None:
    metrics = TFServingMetrics()
    metrics.set_request_count('a"b\\c', "OK", 1)
    assert ':tensorflow:serving:request_count{model_name="a\\"b\\\\c",status="OK"} 1' in metrics.render()


def test_simulated_traffic_grows_in_proportion() -> None:
    now = [100.0]
    metrics = TFServingMetrics(clock=lambda: now[0])
    metrics.simulate_traffic("digits", ok=95, errors=5, latency_us=1500, error_status="INTERNAL")
    pages = []
    for _ in range(2):
        now[0] += 1.05  # ten ticks of 0.1 s, and a bit
        pages.append(metrics.render())
    values = [
        {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if not line.startswith("#")
        }
        for page in pages
    ]
    ok = ':tensorflow:serving:request_count{model_name="digits",status="OK"}'
    failed = ':tensorflow:serving:request_count{model_name="digits",status="INTERNAL"}'
    assert values[1][ok] - values[0][ok] == 950 and values[1][failed] - values[0][failed] == 50
    assert values[1][failed] * 95 == values[1][ok] * 5


def test_the_server_answers_like_tf_serving() -> None:
    with MetricsExporter() as exporter:
        exporter.metrics.set_request_count("digits", "OK", 1)
        with urllib.request.urlopen(exporter.url, timeout=5) as response:
            assert response.headers["Content-Type"] == "text/plain"
            assert b'status="OK"} 1' in response.read()
        assert exporter.scrapes == 1
        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(f"http://{exporter.address}/metrics", timeout=5)
        assert raised.value.code == 400
        assert f"Should be {METRICS_PATH}" in raised.value.read().decode()
        raised.value.close()
