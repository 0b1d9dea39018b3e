"""Where the repository's files are, for tests that read them (examples, chart, Dockerfiles)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO / "examples"
CHART = REPO / "charts" / "modeldeploy-operator"
