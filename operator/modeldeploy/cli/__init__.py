"""The `modeldeploy` command: one entry point, one thin module per subcommand.

The images run it: the operator (`run`), the optimization Job (`optimize`), the serving pods'
init containers (`fetch`, `verify`), the artifact cleanup Jobs (`prune-artifacts`); `render` is for
people. Each module's `register(subparsers)`
only adds its flags; heavy imports (TensorFlow, kopf) happen inside the chosen subcommand, so
`modeldeploy render` stays fast and works without the optimizer extra.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from modeldeploy import __version__
from modeldeploy.cli import fetch, optimize, prune, render, run, verify

EXIT_INTERRUPTED = 130


UsageErrorHandler = Callable[[list[str], str], int]


class _UsageError(Exception):
    def __init__(self, handler: UsageErrorHandler, message: str) -> None:
        super().__init__(message)
        self.handler = handler
        self.message = message


class _SubcommandParser(argparse.ArgumentParser):
    """A subcommand that sets the default `usage_error` reports argparse's errors its own way
    (`optimize`: one line and the InvalidArguments summary, as a Job's pod must); others as usual."""

    def error(self, message: str) -> NoReturn:
        handler = self.get_default("usage_error")
        if handler is None:
            super().error(message)
        raise _UsageError(handler, message)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modeldeploy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_SubcommandParser)
    for module in (render, optimize, fetch, run, verify, prune):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args, unknown = parser.parse_known_args(arguments)
    except _UsageError as usage:
        return usage.handler(arguments, usage.message)
    if unknown:
        handler: UsageErrorHandler | None = getattr(args, "usage_error", None)
        if handler is None:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        return handler(arguments, f"unrecognized arguments: {' '.join(unknown)}")
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("modeldeploy: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code
