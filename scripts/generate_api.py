"""Write, or check, the files generated from the API types: the CRD (crds/ and the chart's copy)
and docs/api.md. `make crds` writes them; `make check-crds` (and a unit test) fails when a
committed copy differs from what the models generate.

A script of the repository, not of the product: it knows where the repository keeps these files.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modeldeploy.api.crd import CRD_FILENAME, render_crd, render_docs

REPO = Path(__file__).resolve().parent.parent


def outputs(repo: Path) -> list[tuple[Path, str]]:
    """Every generated file with the text it must hold."""
    crd = render_crd()
    return [
        (repo / "crds" / CRD_FILENAME, crd),
        (repo / "charts" / "modeldeploy-operator" / "crds" / CRD_FILENAME, crd),
        (repo / "docs" / "api.md", render_docs()),
    ]


def main(argv: list[str] | None = None, repo: Path = REPO) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write crds/, the chart's copy and docs/api.md")
    mode.add_argument("--check", action="store_true", help="fail when a committed copy differs")
    mode.add_argument("--print", action="store_true", help="print the CRD")
    args = parser.parse_args(argv)
    if args.print:
        sys.stdout.write(render_crd())
        return 0
    stale = []
    for path, text in outputs(repo):
        if args.write:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(repo)}")
        elif not path.exists() or path.read_text() != text:
            stale.append(str(path.relative_to(repo)))
    if stale:
        print(f"out of date with the models: {', '.join(stale)}; run `make crds`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
