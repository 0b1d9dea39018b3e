"""The optimization Job's program around the pipeline: what `modeldeploy optimize` runs.

Flags arrive as plain strings and are validated by `options_from_args`, so that a bad flag fails
like everything else: one line on stderr naming the cause, the summary with its reason as the
termination message, and the exit code of its class (`contract.failures`). SIGTERM becomes a
`Terminated` failure after cleanup; a retried pod reuses a version its first attempt published
completely. Progress goes to stdout. TensorFlow is imported only once the flags are valid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TextIO

from modeldeploy.contract import sums
from modeldeploy.contract.failures import SUCCESS_EXIT_CODE, Failure
from modeldeploy.contract.layout import REPORT_FILE, SIGNATURE_FILE, SUMS_FILE
from modeldeploy.contract.owner import write_owner
from modeldeploy.contract.summary import OptimizerSummary
from modeldeploy.optimize.errors import OptimizeError, hide_secrets
from modeldeploy.optimize.logs import ProgressLog
from modeldeploy.optimize.options import options_from_args


class _Terminated(BaseException):
    """SIGTERM as an exception, so work folders are cleaned up on the way out."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


@contextmanager
def _stderr_for_our_line_only() -> Iterator[TextIO]:
    """Send native libraries' fd-2 chatter (TensorFlow's C++ logs) to stdout, keep stderr for us.

    TensorFlow 2.21 prints absl/oneDNN notices on import whatever TF_CPP_MIN_LOG_LEVEL says; a
    failure must still leave exactly one line on stderr. Only done when the process's real fds 1
    and 2 are in use (not under a test runner that swapped sys.stderr).
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
    os.dup2(1, 2)
    ours = os.fdopen(os.dup(saved), "w", encoding="utf-8", errors="replace")
    try:
        yield ours
    finally:
        ours.flush()
        ours.close()
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _fail(error: OptimizeError, termination: Path | None, log: ProgressLog, stderr: TextIO) -> int:
    from modeldeploy.optimize.report import write_termination_message

    print(f"modeldeploy optimize: {error}", file=stderr, flush=True)
    problem = write_termination_message(termination, OptimizerSummary.failed(error.failure, error.message))
    if problem:
        log.warning(problem)
    return error.exit_code


def run(args: argparse.Namespace) -> int:
    """Run one optimization; returns the exit code (0, or the failure class's code)."""
    with _stderr_for_our_line_only() as stderr:
        return _run(args, stderr)


def _complete_version(folder: Path) -> OptimizerSummary | None:
    """The summary of a version folder an earlier attempt published completely, or None.
    Only a folder whose every file matches its SHA256SUMS counts; anything else stays VersionExists."""
    from modeldeploy.optimize.report import summary_from_report

    if not (folder / SUMS_FILE).is_file() or not (folder / REPORT_FILE).is_file() or sums.problems(folder):
        return None
    try:
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary_from_report(report, sums.sha256_file(folder / SUMS_FILE), _signature_sha256(folder))


def _signature_sha256(folder: Path) -> str | None:
    signature = folder / SIGNATURE_FILE
    return sums.sha256_file(signature) if signature.is_file() else None


def _run(args: argparse.Namespace, stderr: TextIO) -> int:
    started = time.monotonic()
    log = ProgressLog("json" if str(args.log_format).strip().lower() == "json" else "text")
    termination = Path(args.termination_message_path) if args.termination_message_path else None
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (tests, embedding): no handler
        previous = None
    try:
        options = options_from_args(args)
        # TensorFlow's C++ INFO/WARNING chatter would bury the progress log.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from modeldeploy.optimize.report import write_termination_message

        if options.owner is not None:
            try:
                write_owner(options.output, options.owner)  # first, so even a failed run's folder is owned
            except OSError as exc:
                raise OptimizeError(Failure.EXPORT_FAILED, f"cannot write {options.output}: {exc}") from None
        if args.reuse_complete_version and (reused := _complete_version(options.output / str(options.version))):
            problem = write_termination_message(termination, reused)
            if problem:
                log.warning(problem)
            log.info(f"{options.output / str(options.version)} is complete already (an earlier attempt): reused")
            return SUCCESS_EXIT_CODE
        from modeldeploy.optimize import pipeline

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
