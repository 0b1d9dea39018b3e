"""Whether a version folder an earlier run published may stand for this run (`--reuse-complete-version`).

The operator's Job sets the flag so that a retried pod reports what its first attempt published
instead of failing on its own output. A complete folder (every file matching its SHA256SUMS) is
not enough: it must also have been built from the same model and the same options, or a Job for
another model or other options that happens to write the same version would "succeed" with an
artifact it never made. `report.json` records the source's sha256 and `recorded_options`; this
module compares them. The model is identified by content (its sha256), not by URI; the datasets by
URI, as the operator's Job names them. Pure: no I/O, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from pathlib import Path
from typing import Any

from modeldeploy.optimize.options import Options
from modeldeploy.optimize.storage import display_uri

# Where the run reads and writes, how it reports, who owns the folder (a re-created ModelDeployment
# of the same name reuses its versions): not what the version is built from.
_NOT_RECORDED = frozenset(
    {"source", "sha256", "output", "version", "pvc_root", "termination_message_path", "log_format", "owner"}
)


def _camel(name: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda match: match.group(1).upper(), name)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # the signature's trust anchor
        return {_camel(k): _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and "://" in value:
        return display_uri(value)  # a presigned URL's query string is a secret
    return value


def recorded_options(opts: Options) -> dict[str, Any]:
    """The options a version is built from, as report.json records them (every new option counts)."""
    return {
        _camel(field.name): _plain(getattr(opts, field.name))
        for field in dataclasses.fields(opts)
        if field.name not in _NOT_RECORDED
    }


def reuse_refusal(report: dict[str, Any], options: dict[str, Any], source_sha256: str | None) -> str | None:
    """Why the published version (its report.json) was not built by this run's model and options;
    None when it was. `source_sha256` None: the model's digest is unknown and not compared."""
    recorded = report.get("options")
    if not isinstance(recorded, dict):
        return "its report.json records no options (written by an older optimizer), so it may not be this run's"
    built_from = report.get("source", {}).get("sha256") if isinstance(report.get("source"), dict) else None
    if source_sha256 is not None and built_from != source_sha256:
        return f"it was built from a model of sha256 {built_from}, this run's model has sha256 {source_sha256}"
    differences = [
        f"{key} {recorded.get(key)!r} there, {options.get(key)!r} here"
        for key in sorted(set(recorded) | set(options))
        if recorded.get(key) != options.get(key)
    ]
    if differences:
        return f"it was built with other options: {'; '.join(differences)}"
    return None
