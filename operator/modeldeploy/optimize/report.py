"""What a run produced, in two shapes: `report.json` beside the model and the termination message.

`report.json` is the full record (sizes, per-layer sparsity, the conversion check, metrics before and
after overall, per class and per slice with the worst slice, latency, stage timings, sha256 of each
artifact, and what the version was built from: the source's and the datasets' sha256 and the options,
which `--reuse-complete-version` compares). The termination message is one line of compact JSON under
4096 bytes that Kubernetes copies into the Pod's status, where the operator reads `result`,
`reason` and the headline numbers without mounting the volume.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeldeploy.contract.summary import OptimizerSummary, Result, Sparsity, WorstSlice
from modeldeploy.optimize.accuracy import Scoring, Task
from modeldeploy.optimize.evaluate import GateResult, Latency, Size, SliceGate, gate_failure
from modeldeploy.optimize.fidelity import FidelityCheck
from modeldeploy.optimize.prune import PruneReport
from modeldeploy.optimize.quantize import Encoding

REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Evaluation:
    metric: str
    examples: int
    data_uri: str
    gate: GateResult
    slice_gate: SliceGate | None = None
    metrics: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # name: (before, after)
    scoring: Scoring | None = None

    def failure(self) -> str | None:
        """Why the quality gate fails (the overall drop, or the worst slice's); None when it passes."""
        return gate_failure(self.gate, self.slice_gate)

    def slices_json(self) -> dict[str, Any]:
        """Per-class and per-slice metrics and the sliced gate, as report.json records them."""
        decision: dict[str, Any] = {}
        if self.scoring is not None:
            decision = {"task": self.scoring.task.value}
            if self.scoring.single_output and self.scoring.task is Task.CLASSIFICATION:
                decision["binaryOutput"] = "probability" if self.scoring.threshold else "logit"
                decision["binaryThreshold"] = self.scoring.threshold
            elif self.scoring.task is Task.CLASSIFICATION:
                decision["topK"] = self.scoring.top_k
        out: dict[str, Any] = {
            "decision": decision,
            "metrics": {
                name: {"before": _round(was), "after": _round(now)} for name, (was, now) in self.metrics.items()
            },
        }
        sliced = self.slice_gate
        if sliced is not None:
            worst = sliced.worst
            out["classes"] = [part.to_json() for part in sliced.classes]
            out["slices"] = [part.to_json() for part in sliced.slices]
            out["sliceGate"] = {
                "maxDrop": sliced.max_drop,
                "minExamples": sliced.min_examples,
                "gate": ("Passed" if sliced.passed else "Failed") if sliced.applied else "Skipped",
                "worstSlice": worst.to_json() if worst is not None else None,
                "message": sliced.message(),
            }
        return out

    def worst_slice(self) -> WorstSlice | None:
        worst = self.slice_gate.worst if self.slice_gate is not None else None
        if worst is None or worst.before is None or worst.after is None:
            return None
        before, after = round(worst.before, 4), round(worst.after, 4)
        return WorstSlice(name=worst.name, before=before, after=after, examples=worst.examples)


@dataclass(frozen=True)
class Report:
    version: int
    format: str
    source_uri: str
    source_format: str
    source_sha256: str
    source_bytes: int
    baseline_size: Size
    optimized_size: Size
    saved_model_size: Size
    requested_sparsity: dict[str, float]
    prune: PruneReport | None
    quantization: str
    representative_data: str | None
    evaluation: Evaluation | None
    latency_baseline: Latency
    latency_optimized: Latency
    latency_data: str
    fidelity: FidelityCheck
    artifacts: dict[str, str]
    artifact_sha256: str
    stages: dict[str, float]
    duration_seconds: float
    tool: dict[str, str] = field(default_factory=dict)
    signer: str | None = None
    """Who signs the published folder (model.sig); None when it is not signed."""
    source_signer: str | None = None
    """Who signed the source model, when its signature was verified."""
    # What the version was built from beyond the model (`reuse`): the options, the datasets' sha256.
    options: dict[str, Any] = field(default_factory=dict)
    data_sha256: dict[str, str | None] = field(default_factory=dict)
    input_dtype: str = "float32"
    tflite_encoding: Encoding | None = None  # set when a pruned model was quantized

    def sparsity(self) -> dict[str, float]:
        if self.prune is None:
            return {"dense": 0.0, "conv": 0.0}
        return {family: round(self.prune.family_sparsity(family), 4) for family in ("dense", "conv")}

    def to_json(self) -> dict[str, Any]:
        evaluation: dict[str, Any]
        if self.evaluation is None:
            evaluation = {
                "evaluated": False,
                "note": "no --eval-data given: quality not measured, quality gate not applied",
            }
        else:
            gate = self.evaluation.gate
            evaluation = {
                "evaluated": True,
                "metric": gate.metric,
                "data": self.evaluation.data_uri,
                "examples": self.evaluation.examples,
                "before": gate.before,
                "after": gate.after,
                "drop": gate.drop,
                "maxDrop": gate.max_drop,
                "gate": "Passed" if gate.passed else "Failed",
                "message": gate.message(),
                **self.evaluation.slices_json(),
            }
        pruning: dict[str, Any] = {"requested": self.requested_sparsity, "achieved": self.sparsity()}
        if self.prune is not None:
            pruning["fineTuneEpochs"] = self.prune.fine_tune_epochs
            pruning["fineTuneFinalLoss"] = self.prune.fine_tune_loss
            pruning["schedule"] = self.prune.schedule.value
            pruning["keptDense"] = list(self.prune.kept_dense)
            pruning["denseBlockSize"] = self.prune.dense_block
            pruning["layers"] = [
                {
                    "layer": layer.layer,
                    "weight": layer.weight,
                    "family": layer.family,
                    "target": layer.target,
                    "sparsity": round(layer.sparsity, 6),
                    "size": layer.size,
                }
                for layer in self.prune.layers
            ]
        quantization: dict[str, Any] = {
            "mode": self.quantization,
            "ioType": self.input_dtype,  # the request format: the model's input dtype (int8 keeps float32)
            "representativeData": self.representative_data,
        }
        if self.tflite_encoding is not None:
            # Both sizes of model.tflite: raw (what the serving pod maps into memory) per encoding.
            quantization["weights"] = self.tflite_encoding.to_json()
        return {
            "schemaVersion": REPORT_SCHEMA_VERSION,
            "result": "Succeeded",
            "version": self.version,
            "format": self.format,
            "source": {
                "uri": self.source_uri,
                "format": self.source_format,
                "sha256": self.source_sha256,
                "bytes": self.source_bytes,
            },
            "sizes": {
                "baselineSavedModel": _size(self.baseline_size),
                "optimized": _size(self.optimized_size),
                "savedModel": _size(self.saved_model_size),
                "ratioRaw": _ratio(self.baseline_size.bytes, self.optimized_size.bytes),
                "ratioGzip": _ratio(self.baseline_size.gzip_bytes, self.optimized_size.gzip_bytes),
            },
            "pruning": pruning,
            "quantization": quantization,
            "conversionCheck": self.fidelity.to_json(),
            "evaluation": evaluation,
            "latency": {
                "data": self.latency_data,
                "baseline": _latency(self.latency_baseline),
                "optimized": _latency(self.latency_optimized),
            },
            "artifacts": self.artifacts,
            "artifactSha256": self.artifact_sha256,
            "options": self.options,
            "data": {
                "train": {"sha256": self.data_sha256.get("train")},
                "eval": {"sha256": self.data_sha256.get("eval")},
            },
            "stages": self.stages,
            "durationSeconds": self.duration_seconds,
            "tool": self.tool,
            **({"signing": {"signer": self.signer, "sourceSigner": self.source_signer}} if self._signed else {}),
        }

    @property
    def _signed(self) -> bool:
        return self.signer is not None or self.source_signer is not None

    def summary(
        self, duration_seconds: float, manifest_sha256: str, signature_sha256: str | None = None
    ) -> OptimizerSummary:
        """The termination summary of this run; `manifest_sha256` is the digest of the published
        SHA256SUMS, which the operator hands to the serving pods so they refuse a folder that changed."""
        gate = self.evaluation.gate if self.evaluation is not None else None
        sparsity = self.sparsity()
        return OptimizerSummary(
            result=Result.SUCCEEDED,
            version=self.version,
            format=self.format,
            original_bytes=self.baseline_size.bytes,
            optimized_bytes=self.optimized_size.bytes,
            original_gzip_bytes=self.baseline_size.gzip_bytes,
            optimized_gzip_bytes=self.optimized_size.gzip_bytes,
            sparsity=Sparsity(dense=sparsity["dense"], conv=sparsity["conv"]),
            metric=gate.metric if gate else None,
            accuracy_before=round(gate.before, 4) if gate else None,
            accuracy_after=round(gate.after, 4) if gate else None,
            gate=("Passed" if gate.passed else "Failed") if gate else "Skipped",
            latency_p50_ms=round(self.latency_optimized.p50_ms, 4),
            latency_p95_ms=round(self.latency_optimized.p95_ms, 4),
            artifact_sha256=self.artifact_sha256,
            duration_seconds=round(duration_seconds, 2),
            manifest_sha256=manifest_sha256,
            signer=self.signer,
            signature_sha256=signature_sha256,
            source_signer=self.source_signer,
            worst_slice=self.evaluation.worst_slice() if self.evaluation is not None else None,
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _size(size: Size) -> dict[str, int]:
    return {"bytes": size.bytes, "gzipBytes": size.gzip_bytes}


def _ratio(before: int, after: int) -> float:
    return round(before / after, 3) if after else 0.0


def _latency(latency: Latency) -> dict[str, float]:
    return {"p50Ms": round(latency.p50_ms, 4), "p95Ms": round(latency.p95_ms, 4), "examples": latency.examples}


def summary_from_report(
    report: dict[str, Any], manifest_sha256: str, signature_sha256: str | None = None
) -> OptimizerSummary:
    """The summary rebuilt from a published report.json (the fields `Report.summary` gives), for a
    retried Job pod that finds its version folder complete."""
    sizes = report.get("sizes", {})
    evaluation = report.get("evaluation", {})
    evaluated = bool(evaluation.get("evaluated"))
    optimized_latency = report.get("latency", {}).get("optimized", {})
    achieved = report.get("pruning", {}).get("achieved")
    return OptimizerSummary(
        result=Result.SUCCEEDED,
        version=report.get("version"),
        format=report.get("format"),
        original_bytes=sizes.get("baselineSavedModel", {}).get("bytes"),
        optimized_bytes=sizes.get("optimized", {}).get("bytes"),
        original_gzip_bytes=sizes.get("baselineSavedModel", {}).get("gzipBytes"),
        optimized_gzip_bytes=sizes.get("optimized", {}).get("gzipBytes"),
        sparsity=Sparsity.model_validate(achieved) if isinstance(achieved, dict) else None,
        metric=evaluation.get("metric") if evaluated else None,
        accuracy_before=round(evaluation["before"], 4) if evaluated else None,
        accuracy_after=round(evaluation["after"], 4) if evaluated else None,
        gate=evaluation.get("gate") if evaluated else "Skipped",
        latency_p50_ms=optimized_latency.get("p50Ms"),
        latency_p95_ms=optimized_latency.get("p95Ms"),
        artifact_sha256=report.get("artifactSha256"),
        duration_seconds=report.get("durationSeconds"),
        manifest_sha256=manifest_sha256,
        reused=True,
        signer=report.get("signing", {}).get("signer"),
        signature_sha256=signature_sha256,
        source_signer=report.get("signing", {}).get("sourceSigner"),
        worst_slice=_worst_slice_from(evaluation.get("sliceGate")) if evaluated else None,
    )


def _worst_slice_from(slice_gate: Any) -> WorstSlice | None:
    worst = slice_gate.get("worstSlice") if isinstance(slice_gate, dict) else None
    if not isinstance(worst, dict) or worst.get("before") is None or worst.get("after") is None:
        return None
    return WorstSlice(
        name=str(worst.get("name")),
        before=round(float(worst["before"]), 4),
        after=round(float(worst["after"]), 4),
        examples=int(worst.get("examples", 0)),
    )


def write_termination_message(path: Path | None, summary: OptimizerSummary) -> str | None:
    """Write the line; a missing parent folder (not in Kubernetes) is skipped silently.

    Returns a problem description when the file exists-or-could-exist but writing failed.
    """
    if path is None or not path.parent.is_dir():
        return None
    try:
        path.write_text(summary.to_line() + "\n", encoding="utf-8")
    except OSError as exc:
        return f"cannot write the termination message to {path}: {exc.strerror or exc}"
    return None
