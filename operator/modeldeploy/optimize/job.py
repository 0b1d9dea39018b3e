"""The optimization Job's program around the pipeline: what `modeldeploy optimize` runs.

Flags arrive as plain strings and are validated by `options_from_args`, so that a bad flag fails
like everything else: one line on stderr naming the cause, the summary with its reason as the
termination message, and the exit code of its class (`contract.failures`); argparse's own errors
(an unknown flag, a missing value) take the same road (`usage_failure`). SIGTERM becomes a
`Terminated` failure after cleanup; a retried pod reuses a version its first attempt published
completely, from the same model and options (`reuse`). Progress goes to stdout, and with
`--log-format json` nothing else does: native libraries' fd-2 lines become records too. The
termination message goes to `--termination-message-path`, by default Kubernetes' path in a pod
only. TensorFlow is imported only once the flags are valid.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from modeldeploy.contract import sums
from modeldeploy.contract.failures import SUCCESS_EXIT_CODE, Failure
from modeldeploy.contract.layout import REPORT_FILE, SIGNATURE_FILE, SUMS_FILE
from modeldeploy.contract.owner import write_owner
from modeldeploy.contract.summary import OptimizerSummary
from modeldeploy.optimize.errors import OptimizeError, hide_secrets
from modeldeploy.optimize.logs import LogFormat, ProgressLog, route_python_logging
from modeldeploy.optimize.options import Options, options_from_args, termination_message_path


class _Terminated(BaseException):
    """SIGTERM as an exception, so work folders are cleaned up on the way out."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


RELAY_DRAIN_SECONDS = 5.0  # the relay's last lines are written when fd 2 closes: wait for them
_NATIVE_LEVEL = re.compile(r"^(?:([IWEF])\d{4} |(WARNING|ERROR|FATAL)\b)")
_NATIVE_LEVELS = {"I": "info", "W": "warning", "E": "error", "F": "error", "WARNING": "warning", "ERROR": "error"}


def native_level(line: str) -> str:
    """The level of a line a native library wrote to fd 2 (absl's `W0000 ...` prefix, say)."""
    match = _NATIVE_LEVEL.match(line)
    if match is None:
        return "info"
    return _NATIVE_LEVELS.get(match.group(1) or match.group(2), "error")


def _relay(read_fd: int, log: ProgressLog) -> None:
    """Re-emit each line written to fd 2 as a progress record of logger `native`."""
    pending = b""
    with os.fdopen(read_fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(1 << 16):
            *lines, pending = (pending + chunk).split(b"\n")
            for raw in lines:
                if line := raw.decode("utf-8", errors="replace").rstrip():
                    log.native(line, native_level(line))
    if line := pending.decode("utf-8", errors="replace").rstrip():
        log.native(line, native_level(line))


@contextmanager
def _stderr_for_our_line_only(log: ProgressLog) -> Iterator[TextIO]:
    """Keep stderr for our one failure line: what else reaches fd 2 goes to the progress log.

    TensorFlow 2.21 prints absl/oneDNN notices on import whatever TF_CPP_MIN_LOG_LEVEL says, the
    converter prints MLIR diagnostics, Python prints warnings. In text format these lines go to
    stdout as they are; in json format each becomes a record (`"logger": "native"`), so every
    stdout line stays one JSON object. Only done when the process's real fds 1 and 2 are in use
    (not under a test runner that swapped sys.stderr).
    """
    try:
        real = sys.stderr.fileno() == 2 and sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):
        real = False
    if not real:
        yield sys.stderr
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(2)
    relay: threading.Thread | None = None
    if log.fmt == "json":
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        relay = threading.Thread(target=_relay, args=(read_fd, log), name="native-log-relay", daemon=True)
        relay.start()
    else:
        os.dup2(1, 2)
    ours = os.fdopen(os.dup(saved), "w", encoding="utf-8", errors="replace")
    try:
        yield ours
    finally:
        ours.flush()
        ours.close()
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the relay reads to its end
        os.close(saved)
        if relay is not None:
            relay.join(timeout=RELAY_DRAIN_SECONDS)


def _fail(error: OptimizeError, termination: Path | None, log: ProgressLog, stderr: TextIO) -> int:
    from modeldeploy.optimize.report import write_termination_message

    print(f"modeldeploy optimize: {error}", file=stderr, flush=True)
    problem = write_termination_message(termination, OptimizerSummary.failed(error.failure, error.message))
    if problem:
        log.warning(problem)
    return error.exit_code


def _log_format(value: object) -> LogFormat:
    return "json" if str(value).strip().lower() == "json" else "text"


def run(args: argparse.Namespace) -> int:
    """Run one optimization; returns the exit code (0, or the failure class's code)."""
    # Before anything imports TensorFlow: its C++ INFO/WARNING chatter would bury the progress log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log = ProgressLog(_log_format(args.log_format))
    with _stderr_for_our_line_only(log) as stderr:
        return _run(args, stderr, log)


def usage_failure(argv: list[str], message: str) -> int:
    """An argparse error (unknown flag, missing value): the one-line InvalidArguments failure, with
    its summary where --termination-message-path (when it could be read) or the pod default says."""
    lenient = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    lenient.add_argument("--termination-message-path")
    lenient.add_argument("--log-format", default="text")
    try:
        known, _ = lenient.parse_known_args(argv)
        path, log_format = known.termination_message_path, known.log_format
    except argparse.ArgumentError:
        path, log_format = None, "text"
    log = ProgressLog(_log_format(log_format))
    termination = termination_message_path(path, os.environ)
    return _fail(OptimizeError(Failure.INVALID_ARGUMENTS, message), termination, log, sys.stderr)


def _complete_report(folder: Path) -> dict[str, Any] | None:
    """The report.json of a version folder an earlier attempt published completely, or None.
    Only a folder whose every file matches its SHA256SUMS counts; anything else stays VersionExists."""
    if not (folder / SUMS_FILE).is_file() or not (folder / REPORT_FILE).is_file() or sums.problems(folder):
        return None
    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None


def _source_sha256(options: Options, log: ProgressLog) -> str:
    """The model's sha256: the pinned one (the fetch would refuse any other), else the fetched bytes'."""
    if options.sha256 is not None:
        return options.sha256
    from modeldeploy.optimize.storage import display_uri, fetch

    with tempfile.TemporaryDirectory(prefix="modeldeploy-reuse-") as tmp:
        log.info(f"fetching {display_uri(options.source)} to compare it with the published version's source")
        return fetch(options.source, Path(tmp), pvc_root=options.pvc_root, what="model").sha256


def _reusable(options: Options, log: ProgressLog) -> OptimizerSummary | None:
    """The summary of the version folder when an earlier run of this very model and these options
    published it completely; None when there is no complete folder (the run proceeds and fails
    VersionExists if anything is there); VersionExists naming the difference when it is another's."""
    from modeldeploy.optimize.report import summary_from_report
    from modeldeploy.optimize.reuse import recorded_options, reuse_refusal

    folder = options.output / str(options.version)
    report = _complete_report(folder)
    if report is None:
        return None
    refusal = reuse_refusal(report, recorded_options(options), None) or reuse_refusal(
        report, recorded_options(options), _source_sha256(options, log)
    )
    if refusal is not None:
        raise OptimizeError(
            Failure.VERSION_EXISTS,
            f"{folder} is complete but not reusable: {refusal}; versions are immutable: "
            "choose another --version or remove it",
        )
    return summary_from_report(report, sums.sha256_file(folder / SUMS_FILE), _signature_sha256(folder))


def _signature_sha256(folder: Path) -> str | None:
    signature = folder / SIGNATURE_FILE
    return sums.sha256_file(signature) if signature.is_file() else None


def _run(args: argparse.Namespace, stderr: TextIO, log: ProgressLog) -> int:
    started = time.monotonic()
    # Read apart from the other flags: usable even when one of them is bad.
    termination = termination_message_path(args.termination_message_path, os.environ)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (tests, embedding): no handler
        previous = None
    try:
        options = options_from_args(args)
        from modeldeploy.optimize.report import write_termination_message

        if options.owner is not None:
            try:
                write_owner(options.output, options.owner)  # first, so even a failed run's folder is owned
            except OSError as exc:
                raise OptimizeError(Failure.EXPORT_FAILED, f"cannot write {options.output}: {exc}") from None
        if args.reuse_complete_version and (reused := _reusable(options, log)):
            problem = write_termination_message(termination, reused)
            if problem:
                log.warning(problem)
            log.info(f"{options.output / str(options.version)} is complete already (an earlier attempt): reused")
            return SUCCESS_EXIT_CODE
        from modeldeploy.optimize import pipeline

        with route_python_logging(log):
            outcome = pipeline.run(options, log)
        duration = time.monotonic() - started
        manifest = sums.sha256_file(outcome.path / SUMS_FILE)
        summary = outcome.report.summary(duration, manifest, _signature_sha256(outcome.path))
        problem = write_termination_message(termination, summary)
        if problem:
            log.warning(problem)
        signed = f", signed by {outcome.report.signer}" if outcome.report.signer else ""
        log.info(f"published {outcome.path} ({outcome.report.format}{signed}) in {duration:.1f}s")
        return SUCCESS_EXIT_CODE
    except OptimizeError as error:
        return _fail(error, termination, log, stderr)
    except _Terminated:
        terminated = OptimizeError(Failure.TERMINATED, "received SIGTERM; nothing was published")
        return _fail(terminated, termination, log, stderr)
    except Exception as exc:
        if os.environ.get("MODELDEPLOY_DEBUG"):
            print(hide_secrets(traceback.format_exc()), file=sys.stdout)
        first = (str(exc).strip().splitlines() or [""])[0][:500]
        internal = OptimizeError(Failure.INTERNAL, f"{type(exc).__name__}: {first}".rstrip(": "))
        return _fail(internal, termination, log, stderr)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
