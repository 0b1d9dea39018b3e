"""`modeldeploy prune-artifacts`: remove a ModelDeployment's old artifact folders from the claim.

The operator's cleanup Jobs run it (the optimizer's image, the artifacts claim mounted): after a new
artifact becomes served, and once after the ModelDeployment is deleted. Also usable by hand on a
mounted claim. Only folders whose owner file names the ModelDeployment are ever removed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modeldeploy.contract.owner import parse_owner_flag

COMMAND = "prune-artifacts"
EXIT_BAD_FLAGS = 2
EXIT_FAILED = 16  # the optimizer's ExportFailed: the artifact store could not be changed


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(COMMAND, help="remove old artifact folders (the operator's cleanup Jobs)")
    parser.add_argument("--root", required=True, type=Path, help="the artifact store: <claim>/<prefix>")
    parser.add_argument("--owner", required=True, help="NAMESPACE/NAME[/UID] of the ModelDeployment")
    parser.add_argument("--keep", action="append", default=[], metavar="HASH", help="never remove (repeat)")
    parser.add_argument("--retain", type=int, default=3, help="earlier artifacts kept besides --keep (3)")
    parser.add_argument(
        "--this-life-only",
        action="store_true",
        help="remove only folders built by the object with this UID (after a delete)",
    )
    parser.add_argument("--remove-empty-root", action="store_true", help="remove --root when it is left empty")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modeldeploy.optimize.retention import prune

    owner = parse_owner_flag(args.owner)
    if owner is None or args.retain < 0 or (args.this_life_only and not owner.uid):
        print(
            f"modeldeploy {COMMAND}: --owner must be NAMESPACE/NAME[/UID] (with a UID for --this-life-only) "
            f"and --retain at least 0, got --owner {args.owner!r} --retain {args.retain}",
            file=sys.stderr,
        )
        return EXIT_BAD_FLAGS
    try:
        removed = prune(
            args.root,
            owner,
            args.keep,
            args.retain,
            this_life_only=args.this_life_only,
            remove_empty_root=args.remove_empty_root,
        )
    except OSError as exc:
        print(f"modeldeploy {COMMAND}: cannot clean {args.root}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    who = f"{owner.namespace}/{owner.name}"
    print(f"{who}: removed {len(removed)} artifact folder(s) from {args.root}: {', '.join(removed) or 'none'}")
    return 0
