"""The README's exit-code table is the one `failure_table_markdown()` generates from the code."""

from __future__ import annotations

from modeldeploy.contract.failures import failure_table_markdown
from repo_paths import REPO


def test_readme_lists_every_exit_code_as_generated():
    assert failure_table_markdown() in (REPO / "README.md").read_text(encoding="utf-8")
