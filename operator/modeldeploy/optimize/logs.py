"""Progress lines for `kubectl logs -f`: each stage says when it starts and how long it took.

Progress goes to stdout, one line per event, flushed at once; stderr is kept for the single line
that names the cause of a failure. `--log-format json` gives one JSON object per line for log
pipelines (lines native libraries write to stderr become records of logger `native`), `text` a
line a person reads. Messages and fields are redacted of credentials first (`contract.redact`):
logs are collected and kept.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal, TextIO

from modeldeploy.contract.redact import redact, secret_values

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOGGER = "modeldeploy.optimize"
NATIVE_LOGGER = "native"
# TensorFlow's Python logger; its records become progress records of that logger (`route_python_logger`).
TENSORFLOW_LOGGER = "tensorflow"


class ProgressLog:
    """Writes progress events and keeps each finished stage's duration in `timings`."""

    def __init__(
        self,
        fmt: LogFormat = "text",
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fmt: LogFormat = fmt
        self._stream = stream
        self._clock = clock
        self.timings: dict[str, float] = {}
        self._lock = threading.Lock()  # the native-log relay writes from its own thread

    def info(self, message: str, stage: str | None = None, **fields: object) -> None:
        self._emit("info", message, stage, fields)

    def warning(self, message: str, stage: str | None = None, **fields: object) -> None:
        self._emit("warning", message, stage, fields)

    def python(self, message: str, level: str, logger: str) -> None:
        """A record of a Python library's logger (TensorFlow's): in its own name."""
        self._emit(level, message, None, {}, logger=logger)

    def native(self, line: str, level: str) -> None:
        """A line a native library (TensorFlow's C++ logging, the converter) wrote to stderr."""
        if self.fmt == "json":
            self._emit(level, line, None, {}, logger=NATIVE_LOGGER)
        else:
            self._write(line)

    @contextmanager
    def stage(self, name: str, **fields: object) -> Iterator[None]:
        """Log the start and end of a stage; a failing stage is logged and the error re-raised."""
        self._emit("info", "started", name, fields)
        start = self._clock()
        try:
            yield
        except BaseException:
            seconds = round(self._clock() - start, 3)
            self._emit("error", f"failed after {seconds:.2f}s", name, {"seconds": seconds})
            raise
        seconds = round(self._clock() - start, 3)
        self.timings[name] = round(self.timings.get(name, 0.0) + seconds, 3)
        self._emit("info", f"done in {seconds:.2f}s", name, {"seconds": seconds})

    def _emit(
        self, level: str, message: str, stage: str | None, fields: dict[str, object], logger: str = LOGGER
    ) -> None:
        hidden = secret_values(os.environ)
        message = redact(message, hidden)
        fields = {k: redact(v, hidden) if isinstance(v, str) else v for k, v in fields.items()}
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.fmt == "json":
            record: dict[str, object] = {"time": now, "level": level, "logger": logger}
            if stage is not None:
                record["stage"] = stage
            record["message"] = message
            record.update(fields)
            line = json.dumps(record, default=str, separators=(",", ":"))
        else:
            where = f"{stage}: " if stage else ""
            extra = "".join(f" {k}={v}" for k, v in fields.items() if k != "seconds")
            line = f"{now} {level.upper():7} optimize {where}{message}{extra}"
        self._write(line)

    def _write(self, line: str) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        with self._lock:  # one whole line at a time, whichever thread writes
            stream.write(line + "\n")
            stream.flush()


class _ProgressHandler(logging.Handler):
    """A Python logger's records as progress records (of that logger's name)."""

    def __init__(self, log: ProgressLog) -> None:
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = "error" if record.levelno >= logging.ERROR else logging.getLevelName(record.levelno).lower()
            self._log.python(
                record.getMessage(), level if level in ("info", "warning", "error") else "info", record.name
            )
        except Exception:
            self.handleError(record)


@contextmanager
def route_python_logging(log: ProgressLog) -> Iterator[None]:
    """While the run lasts, Python loggers (TensorFlow's among them) write through the progress log.

    TensorFlow's logger gets its own handler on its first use when the root logger has none, bound
    to whatever `sys.stderr` was then: "INFO:tensorflow:Assets written to ..." outside the progress
    format that `--log-format json` promises, on the stream kept for the failure line, and, in a
    process that swapped `sys.stderr` since (a test runner), a write to a closed stream. So the root
    logger gets our handler (TensorFlow then adds none), TensorFlow's own handlers are set aside and
    its records propagate to ours; all is put back after the run."""
    root, tensorflow = logging.getLogger(), logging.getLogger(TENSORFLOW_LOGGER)
    ours = _ProgressHandler(log)
    saved = (tensorflow.handlers[:], tensorflow.propagate)
    tensorflow.handlers, tensorflow.propagate = [], True
    root.addHandler(ours)
    try:
        yield
    finally:
        root.removeHandler(ours)
        tensorflow.handlers, tensorflow.propagate = saved
