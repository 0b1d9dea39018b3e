"""`modeldeploy render`: print the children of a ModelDeployment offline, like `helm template`.

Bad input never shows a traceback: each problem is one line naming the file and the field path,
and the exit code is 1 (2 for a file that cannot be read at all).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from modeldeploy.api import InvalidModelDeployment, parse_model_deployment
from modeldeploy.controller.builders import render_all

EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "render",
        help="print the Kubernetes manifests a ModelDeployment produces (offline)",
        description=__doc__,
    )
    parser.add_argument("-f", "--filename", required=True, help="ModelDeployment YAML file, or - for stdin")
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="output format")
    parser.set_defaults(func=run)


def _load(filename: str) -> list[Any]:
    text = sys.stdin.read() if filename == "-" else Path(filename).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def run(args: argparse.Namespace) -> int:
    source = "<stdin>" if args.filename == "-" else args.filename
    try:
        docs = _load(args.filename)
    except OSError as exc:
        print(f"error: {source}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        print(f"error: {source}:{where}: not valid YAML: {problem}", file=sys.stderr)
        return EXIT_INVALID
    if not docs:
        print(f"error: {source}: no ModelDeployment in the file", file=sys.stderr)
        return EXIT_INVALID
    manifests: list[dict[str, Any]] = []
    failed = False
    for index, doc in enumerate(docs):
        label = source if len(docs) == 1 else f"{source} (document {index + 1})"
        try:
            md = parse_model_deployment(doc)
        except InvalidModelDeployment as exc:
            failed = True
            for problem in exc.problems:
                print(f"error: {label}: {problem}", file=sys.stderr)
            continue
        manifests.extend(render_all(md))
    if failed:
        return EXIT_INVALID
    if args.output == "json":
        out = {"apiVersion": "v1", "kind": "List", "items": manifests}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump_all(manifests, sort_keys=False, explicit_start=True))
    return 0
