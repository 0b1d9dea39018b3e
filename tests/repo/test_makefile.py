"""`make help` lists every target: each phony target carries a `## description`."""

from __future__ import annotations

import re
import subprocess

from repo_paths import REPO


def test_every_phony_target_is_documented_and_listed() -> None:
    text = (REPO / "Makefile").read_text()
    phony = {name for line in re.findall(r"^\.PHONY:(.*)$", text, re.M) for name in line.split()}
    rules = dict(re.findall(r"^([a-zA-Z0-9_-]+):[^=\n]*?(## .*)?$", text, re.M))
    assert phony <= set(rules), f"phony targets without a rule: {sorted(phony - set(rules))}"
    undocumented = sorted(name for name in phony if not rules[name])
    assert not undocumented, f"targets without '## description': {undocumented}"
    listed = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    listed = re.sub(r"\x1b\[[0-9;]*m", " ", listed)
    missing = sorted(name for name in phony if not re.search(rf"\b{re.escape(name)}\b", listed))
    assert not missing, f"make help does not list: {missing}"
