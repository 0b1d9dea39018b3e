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
from collections.abc import Sequence

from modeldeploy import __version__
from modeldeploy.cli import fetch, optimize, prune, render, run, verify

EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modeldeploy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (render, optimize, fetch, run, verify, prune):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("modeldeploy: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code
