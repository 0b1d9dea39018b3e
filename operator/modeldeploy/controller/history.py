"""`status.history`, the audit trail of what served, and the instant rollback it makes possible.

Pure: the status builder calls `record_serving` once per reconcile with what the new status says
serves, the canary step machine calls `record_aborted` when a canary is given up, and the planner
calls `find_rollback` to serve an artifact the history still knows instead of optimizing it again.

Rules:
- A revision's artifact starts serving all traffic (first deployment, rolling update finished,
  canary promoted): a new entry with outcome Promoted, `from` = now, at the top; the Promoted
  entry before it gets `to` = now and outcome Superseded. A resync that sees the same artifact
  serving adds nothing: the current Promoted entry already names it.
- A canary that was aborted never served all traffic: an entry with outcome Aborted and the failed
  check in its message, recorded once per attempt (its `from` is when that rollout started).
- Newest first, at most `spec.rollout.historyLimit` entries, messages cut to `MAX_MESSAGE_CHARS`,
  and the whole list cut (oldest first) to `MAX_HISTORY_BYTES` of JSON, so that the history can
  never make the object too big for etcd, whatever the optimizer or a check wrote.
- An entry can be rolled back to when it served (Promoted or Superseded) and both where its folder
  is and the digest its serving pods verify are known: without the digest the pods could not check
  the folder, and an unchecked artifact is never served from history.
"""

from __future__ import annotations

import dataclasses
import json

from modeldeploy.api.status import HistoryEntry, HistoryOutcome, ModelDeploymentStatus, OptimizationResult
from modeldeploy.controller.builders.artifacts import Artifact

MAX_MESSAGE_CHARS = 256
MAX_SUMMARY_CHARS = 128
# At most 50 entries (the CRD's limit on historyLimit) of a few hundred bytes each; the budget keeps
# the list far below etcd's 1.5 MiB per object even with long storage URIs.
MAX_HISTORY_BYTES = 32 * 1024
ROLLBACK_OUTCOMES = frozenset({HistoryOutcome.PROMOTED, HistoryOutcome.SUPERSEDED})


def _cut(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def entry_from_status(status: ModelDeploymentStatus, now: str, message: str = "") -> HistoryEntry | None:
    """The Promoted entry for what `status` says serves, with the optimizer's summary when
    `status.optimization` is about that artifact (None when nothing serves)."""
    if status.served_artifact is None or status.served_version is None:
        return None
    result = status.optimization if status.optimization and status.optimization.artifact_hash else None
    if result is not None and result.artifact_hash != status.served_artifact:
        result = None  # the report of an artifact being built, not of the one serving
    return _entry(
        status.served_version,
        status.served_artifact,
        status.served_uri,
        result,
        status.optimized_summary,
        HistoryOutcome.PROMOTED,
        start=now,
        end=None,
        message=message,
    )


def aborted_entry(
    artifact: Artifact,
    result: OptimizationResult | None,
    optimized_summary: str | None,
    *,
    started_at: str | None,
    finished_at: str,
    message: str,
) -> HistoryEntry:
    """The entry of a canary that was aborted: `from` is when its rollout started, `to` when it was
    given up, the message says which check failed with its value."""
    if result is not None and result.artifact_hash != artifact.hash:
        result = None
    return _entry(
        artifact.version,
        artifact.hash,
        artifact.location,
        result,
        optimized_summary,
        HistoryOutcome.ABORTED,
        start=started_at,
        end=finished_at,
        message=message,
    )


def _entry(
    version: int,
    digest: str,
    uri: str | None,
    result: OptimizationResult | None,
    summary: str | None,
    outcome: HistoryOutcome,
    *,
    start: str | None,
    end: str | None,
    message: str,
) -> HistoryEntry:
    return HistoryEntry(
        version=version,
        artifact_hash=digest,
        storage_uri=uri,
        manifest_sha256=result.manifest_sha256 if result else None,
        optimized_summary=_cut(summary, MAX_SUMMARY_CHARS),
        metric=result.metric if result else None,
        accuracy_before=result.accuracy_before if result else None,
        accuracy_after=result.accuracy_after if result else None,
        optimized_bytes=result.optimized_bytes if result else None,
        signer=result.signer if result else None,
        from_=start,
        to=end,
        outcome=outcome,
        message=_cut(message, MAX_MESSAGE_CHARS) or "",
    )


def current(history: list[HistoryEntry]) -> HistoryEntry | None:
    """The entry of what serves all traffic now (the newest Promoted one)."""
    return next((e for e in history if e.outcome == HistoryOutcome.PROMOTED), None)


def bounded(history: list[HistoryEntry], limit: int) -> list[HistoryEntry]:
    """At most `limit` entries, messages cut, and the oldest dropped while the JSON is over budget
    (the newest always stays)."""
    kept = [e.model_copy(update={"message": _cut(e.message, MAX_MESSAGE_CHARS) or ""}) for e in history[:limit]]
    while len(kept) > 1 and len(json.dumps([e.to_api() for e in kept])) > MAX_HISTORY_BYTES:
        kept.pop()
    return kept


def record_serving(
    history: list[HistoryEntry], serving: HistoryEntry | None, now: str, limit: int
) -> list[HistoryEntry]:
    """The history once `serving` (a Promoted entry, see `entry_from_status`) serves all traffic:
    unchanged if the current entry already names its artifact, else it goes on top and the entry
    it replaces is Superseded at `now`."""
    if serving is None:
        return bounded(history, limit)
    now_serving = current(history)
    if now_serving is not None and now_serving.artifact_hash == serving.artifact_hash:
        return bounded(history, limit)
    why = f"superseded by version {serving.version} (artifact {serving.artifact_hash})"
    updated = [_superseded(e, now, why) if e is now_serving else e for e in history]
    return bounded([serving, *updated], limit)


def _superseded(entry: HistoryEntry, now: str, why: str) -> HistoryEntry:
    # A message it had (how it started serving, e.g. a rollback) stays in front.
    told = f"{entry.message}; {why}" if entry.message else why
    return entry.model_copy(update={"outcome": HistoryOutcome.SUPERSEDED, "to": now, "message": told})


def record_aborted(history: list[HistoryEntry], aborted: HistoryEntry, limit: int) -> list[HistoryEntry]:
    """The history with an aborted canary on top; the same attempt (artifact and start) is recorded
    once, however often the step machine reports it."""
    for entry in history:
        same_attempt = entry.artifact_hash == aborted.artifact_hash and entry.from_ == aborted.from_
        if entry.outcome == HistoryOutcome.ABORTED and same_attempt:
            return bounded(history, limit)
    return bounded([aborted, *history], limit)


def find_rollback(history: list[HistoryEntry], artifact_hash: str) -> HistoryEntry | None:
    """The newest entry that served `artifact_hash` and can serve it again (its folder and the
    digest the serving pods verify are known); None: it must be built."""
    for entry in history:
        if (
            entry.artifact_hash == artifact_hash
            and entry.outcome in ROLLBACK_OUTCOMES
            and entry.storage_uri
            and entry.manifest_sha256
        ):
            return entry
    return None


def artifact_from_history(desired: Artifact, entry: HistoryEntry) -> Artifact:
    """The desired artifact, served from where the history says it is, verified with the digest
    the optimizer reported when it built it. The signing Secret stays the desired one: the artifact
    hash covers it, so it is the Secret the folder was signed with."""
    return dataclasses.replace(
        desired, location=entry.storage_uri or desired.location, manifest_sha256=entry.manifest_sha256
    )


def result_from_history(entry: HistoryEntry) -> OptimizationResult:
    """`status.optimization` of an artifact served from history, as far as the entry knows it."""
    return OptimizationResult(
        artifact_hash=entry.artifact_hash,
        manifest_sha256=entry.manifest_sha256,
        optimized_bytes=entry.optimized_bytes,
        accuracy_before=entry.accuracy_before,
        accuracy_after=entry.accuracy_after,
        metric=entry.metric,
        signer=entry.signer,
    )


def rollback_condition_message(entry: HistoryEntry) -> str:
    """The Optimized condition's message while an artifact is served from history."""
    return (
        f"artifact {entry.artifact_hash} of version {entry.version} comes from status.history "
        f"({_describe(entry)}): no optimization Job"
    )


def rollback_event_message(entry: HistoryEntry) -> str:
    """The RolledBack Event: which version serves again, and what it is."""
    return (
        f"serving version {entry.version} again from history (artifact {entry.artifact_hash}, "
        f"{_describe(entry)}): no optimization Job"
    )


def _describe(entry: HistoryEntry) -> str:
    parts = [f"optimized {entry.optimized_summary or 'as before'}"]
    if entry.accuracy_before is not None and entry.accuracy_after is not None:
        parts.append(f"{entry.metric or 'accuracy'} {entry.accuracy_before:.4g} -> {entry.accuracy_after:.4g}")
    parts.append(f"SHA256SUMS sha256 {(entry.manifest_sha256 or '?')[:12]}...")
    return ", ".join(parts)


__all__ = [
    "MAX_HISTORY_BYTES",
    "MAX_MESSAGE_CHARS",
    "aborted_entry",
    "artifact_from_history",
    "bounded",
    "current",
    "entry_from_status",
    "find_rollback",
    "record_aborted",
    "record_serving",
    "result_from_history",
    "rollback_condition_message",
    "rollback_event_message",
]
