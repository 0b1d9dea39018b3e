"""The `modeldeploy` command: one entry point, one subcommand per job.

Each subcommand lives in the module that does the work and registers itself through a
`register(subparsers)` function; heavy imports (TensorFlow, kopf) happen only inside the chosen
subcommand, so `modeldeploy render` stays fast and works without the optimizer extra.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modeldeploy import __version__

# Each module exposes register(subparsers) -> None.
_SUBCOMMANDS = (
    "modeldeploy.render_cli",
    "modeldeploy.optimize.cli",
    "modeldeploy.optimize.fetch_cli",
    "modeldeploy.run_cli",
    "modeldeploy.verify_cli",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="modeldeploy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):  # a real missing dependency: surface it
                raise
            continue  # not built yet / not shipped in this distribution
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("modeldeploy: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
