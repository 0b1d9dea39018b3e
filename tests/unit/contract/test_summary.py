"""The optimizer's summary: what the Job writes is what the operator reads, within the kubelet's limit."""

from __future__ import annotations

import json

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.layout import TERMINATION_LIMIT_BYTES
from modeldeploy.contract.summary import OptimizerSummary, Result, Sparsity, WorstSlice, parse_summary


def test_a_summary_survives_the_round_trip() -> None:
    sent = OptimizerSummary(
        result=Result.SUCCEEDED,
        version=3,
        format="tflite-int8",
        original_bytes=1_278_633,
        optimized_bytes=213_555,
        sparsity=Sparsity(dense=0.8, conv=None),
        accuracy_before=0.98,
        accuracy_after=0.975,
        gate="Passed",
        manifest_sha256="ab" * 32,
    )
    line = sent.to_line()
    assert "\n" not in line and json.loads(line)["optimizedBytes"] == 213_555
    assert "latencyP50Ms" not in json.loads(line), "unset fields are left out"
    assert parse_summary(line) == sent


def test_a_long_failure_message_is_cut_not_the_json() -> None:
    line = OptimizerSummary.failed(Failure.FETCH_FAILED, "x" * 10_000).to_line()
    assert len(line.encode()) < TERMINATION_LIMIT_BYTES
    parsed = parse_summary(line)
    assert parsed is not None and parsed.reason is Failure.FETCH_FAILED and parsed.message is not None
    assert parsed.message.endswith("...")


def test_the_summary_is_found_after_log_lines_and_others_are_not_summaries() -> None:
    line = OptimizerSummary.failed(Failure.QUALITY_GATE_FAILED, "drop 3 points").to_line()
    assert parse_summary(f"progress 1\nprogress 2\n{line}\n") == parse_summary(line)
    assert parse_summary("some log line\nnot json") is None
    assert parse_summary('{"result": "Maybe"}') is None
    assert parse_summary('{"result": "Failed", "reason": "NoSuchReason"}') is None
    assert parse_summary(None) is None


def test_a_newer_optimizer_s_extra_fields_are_ignored() -> None:
    parsed = parse_summary('{"result": "Succeeded", "version": 1, "signerIdentity": "ci@example.com"}')
    assert parsed is not None and parsed.succeeded and parsed.version == 1


def test_the_worst_slice_round_trips_and_a_huge_slice_label_keeps_the_line_under_the_limit() -> None:
    worst = WorstSlice(name="slice=" + "é" * 5000, before=0.9512, after=0.8, examples=2**31)
    assert len(worst.name) == 128 and worst.name.endswith("...")
    every_field = OptimizerSummary(
        result=Result.SUCCEEDED,
        version=2**31 - 1,
        format="tflite-float16",
        original_bytes=2**62,
        optimized_bytes=2**62,
        original_gzip_bytes=2**62,
        optimized_gzip_bytes=2**62,
        sparsity=Sparsity(dense=0.123456789, conv=0.987654321),
        metric="topKAccuracy",
        accuracy_before=0.123456789,
        accuracy_after=0.987654321,
        gate="Passed",
        latency_p50_ms=123456.789,
        latency_p95_ms=123456.789,
        artifact_sha256="a" * 64,
        duration_seconds=123456.78,
        manifest_sha256="b" * 64,
        reused=True,
        worst_slice=worst,
    )
    line = every_field.to_line()
    assert len(line.encode()) < TERMINATION_LIMIT_BYTES
    assert parse_summary(line) == every_field, "nothing was dropped to fit"
    failed = OptimizerSummary.failed(Failure.QUALITY_GATE_FAILED, "worst slice " + "x" * 10_000)
    assert len(failed.to_line().encode()) < TERMINATION_LIMIT_BYTES
