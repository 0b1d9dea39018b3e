"""`modeldeploy optimize`: the optimization Job's entry point, also usable by hand on a laptop.

`register(subparsers)` is called by the `modeldeploy` dispatcher and must stay cheap: TensorFlow is
imported only when the command runs. Flags are parsed as plain strings and validated by
`options_from_args`, so that a bad flag fails like everything else: one line on stderr naming the
cause, a one-line JSON termination message, and the exit code of its class (see errors.py).
Progress goes to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TextIO

from modeldeploy.optimize.errors import SUCCESS_EXIT_CODE, OptimizeError, Reason
from modeldeploy.optimize.logs import ProgressLog
from modeldeploy.optimize.options import (
    DEFAULT_MAX_ACCURACY_DROP,
    DEFAULT_PVC_ROOT,
    DEFAULT_TERMINATION_MESSAGE_PATH,
    MAX_SPARSITY,
    ModelFormat,
    Quantization,
    options_from_args,
)

COMMAND = "optimize"
_HELP = "Prune, quantize and gate a trained model; write it in TF Serving's layout"


def _choices(kind: type[ModelFormat] | type[Quantization]) -> str:
    return "{" + ",".join(member.value for member in kind) + "}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags; kept as strings so validation (and its error reporting) is ours, not argparse's."""
    add = parser.add_argument
    add("--source", metavar="URI", help="model: file://, pvc://CLAIM/PATH, https://, s3://BUCKET/KEY")
    add("--format", metavar=_choices(ModelFormat), help="model format (default: from the source's suffix)")
    add("--sha256", metavar="HEX", help="expected sha256 of the model file (of the manifest for a folder)")
    add("--output", metavar="DIR", help="TF Serving base path; the result goes to DIR/<version>/")
    add("--version", dest="version", metavar="N", help="model version, a positive integer")
    add("--dense-sparsity", metavar="F", help=f"fraction of Dense weights to prune, 0..{MAX_SPARSITY} (0)")
    add("--conv-sparsity", metavar="F", help=f"fraction of convolution weights to prune, 0..{MAX_SPARSITY} (0)")
    add("--fine-tune-epochs", metavar="N", help="epochs of fine-tuning after pruning, masks kept (0)")
    add("--train-data", metavar="URI", help=".npz with x, y: fine-tuning and int8 calibration")
    add("--quantization", metavar=_choices(Quantization), help="post-training quantization (none)")
    add("--eval-data", metavar="URI", help=".npz with x, y: quality before/after and the gate")
    add("--metric", metavar="NAME", help="quality metric of the gate (accuracy)")
    add(
        "--max-accuracy-drop",
        metavar="F",
        help=f"largest allowed drop, as a fraction: 0.01 = 1 point ({DEFAULT_MAX_ACCURACY_DROP})",
    )
    add("--pvc-root", metavar="DIR", default=str(DEFAULT_PVC_ROOT), help="where pvc://CLAIM is mounted")
    add(
        "--termination-message-path",
        metavar="PATH",
        default=str(DEFAULT_TERMINATION_MESSAGE_PATH),
        help="one-line JSON summary for Kubernetes; skipped when its folder is missing, '' disables",
    )
    add("--log-format", metavar="{text,json}", default="text", help="progress log format on stdout")
    add(
        "--reuse-complete-version",
        action="store_true",
        help="when DIR/<version> exists and matches its SHA256SUMS, report it instead of failing "
        "(the operator's Job sets it: a retried pod finds what its first attempt published)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `optimize` subcommand to the `modeldeploy` dispatcher."""
    parser = subparsers.add_parser(COMMAND, help=_HELP, description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.set_defaults(func=run)


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
    from modeldeploy.optimize.report import failure_message, write_termination_message

    print(f"modeldeploy optimize: {error}", file=stderr, flush=True)
    problem = write_termination_message(termination, failure_message(error))
    if problem:
        log.warning(problem)
    return error.exit_code


def run(args: argparse.Namespace) -> int:
    """Run one optimization; returns the exit code (0, or the failure class's code)."""
    with _stderr_for_our_line_only() as stderr:
        return _run(args, stderr)


def _complete_version(folder: Path) -> str | None:
    """The termination line for a version folder an earlier attempt published completely, or None.
    Only a folder whose every file matches its SHA256SUMS counts; anything else stays VersionExists."""
    from modeldeploy.optimize.export import REPORT_FILE, SUMS_FILE, verify_sums
    from modeldeploy.optimize.report import summary_from_report
    from modeldeploy.optimize.storage import sha256_file

    if not (folder / SUMS_FILE).is_file() or not (folder / REPORT_FILE).is_file():
        return None
    try:
        verify_sums(folder)
        report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary_from_report(report, sha256_file(folder / SUMS_FILE))


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
        from modeldeploy.optimize.report import success_message, write_termination_message

        if args.reuse_complete_version and (reused := _complete_version(options.output / str(options.version))):
            problem = write_termination_message(termination, reused)
            if problem:
                log.warning(problem)
            log.info(f"{options.output / str(options.version)} is complete already (an earlier attempt): reused")
            return SUCCESS_EXIT_CODE
        from modeldeploy.optimize import pipeline

        outcome = pipeline.run(options, log)
        duration = time.monotonic() - started
        from modeldeploy.optimize.export import SUMS_FILE
        from modeldeploy.optimize.storage import sha256_file

        manifest = sha256_file(outcome.path / SUMS_FILE)
        problem = write_termination_message(termination, success_message(outcome.report, duration, manifest))
        if problem:
            log.warning(problem)
        log.info(f"published {outcome.path} ({outcome.report.format}) in {duration:.1f}s")
        return SUCCESS_EXIT_CODE
    except OptimizeError as error:
        return _fail(error, termination, log, stderr)
    except _Terminated:
        terminated = OptimizeError(Reason.TERMINATED, "received SIGTERM; nothing was published")
        return _fail(terminated, termination, log, stderr)
    except Exception as exc:
        if os.environ.get("MODELDEPLOY_DEBUG"):
            traceback.print_exc(file=sys.stdout)
        first = (str(exc).strip().splitlines() or [""])[0][:500]
        internal = OptimizeError(Reason.INTERNAL, f"{type(exc).__name__}: {first}".rstrip(": "))
        return _fail(internal, termination, log, stderr)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"modeldeploy {COMMAND}", description=_HELP)
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m modeldeploy.optimize.cli ...`: the same command without the dispatcher."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
