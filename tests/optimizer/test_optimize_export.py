"""The version folder appears complete or not at all; an existing one is never touched."""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time

import pytest

from modeldeploy.contract.failures import Failure
from modeldeploy.contract.layout import SUMS_FILE
from modeldeploy.contract.sums import write_sums
from modeldeploy.optimize import export
from modeldeploy.optimize.errors import OptimizeError
from modeldeploy.optimize.export import publish, staging_prefix, verify_sums


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "bundle"
    (folder / "variables").mkdir(parents=True)
    for index in range(12):
        (folder / "variables" / f"shard-{index}").write_bytes(os.urandom(2048))
    (folder / "saved_model.pb").write_bytes(b"graph" * 100)
    (folder / "report.json").write_text("{}")
    write_sums(folder)
    return folder


def test_a_watcher_never_sees_a_partial_version(bundle, tmp_path, monkeypatch):
    out = tmp_path / "serving"
    target = out / "5"
    real_copy = export._copy_file

    def slow_copy(src, dst):
        time.sleep(0.02)  # widen the window in which a partial folder could be seen
        return real_copy(src, dst)

    monkeypatch.setattr(export, "_copy_file", slow_copy)
    seen = {"complete": 0, "staging": 0, "partial": []}
    done = threading.Event()

    def watch():
        while not done.is_set():
            if any(p.name.startswith(staging_prefix(5)) for p in out.glob(".*")):
                seen["staging"] += 1
            if target.exists():
                try:
                    verify_sums(target)
                    seen["complete"] += 1
                except (OSError, ValueError) as exc:
                    seen["partial"].append(str(exc))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        assert publish(bundle, out, 5) == target
        time.sleep(0.01)
    finally:
        done.set()
        watcher.join()
    assert seen["partial"] == []
    assert seen["staging"] > 0  # the copy was observed in progress, under a name TF Serving ignores
    assert seen["complete"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["5"]


def test_a_failed_copy_leaves_nothing(bundle, tmp_path, monkeypatch):
    out = tmp_path / "serving"
    real_copy = export._copy_file
    calls = []

    def failing_copy(src, dst):
        calls.append(src)
        if len(calls) == 5:
            raise OSError(28, "No space left on device")
        return real_copy(src, dst)

    monkeypatch.setattr(export, "_copy_file", failing_copy)
    with pytest.raises(OptimizeError) as caught:
        publish(bundle, out, 1)
    assert caught.value.failure is Failure.EXPORT_FAILED
    assert "No space left" in caught.value.message
    assert list(out.iterdir()) == []


def test_a_corrupted_copy_is_caught_before_the_rename(bundle, tmp_path, monkeypatch):
    out = tmp_path / "serving"
    real_copy = export._copy_file

    def flipping_copy(src, dst):
        result = real_copy(src, dst)
        if str(src).endswith("saved_model.pb"):
            with open(dst, "r+b") as handle:
                handle.write(b"X")
        return result

    monkeypatch.setattr(export, "_copy_file", flipping_copy)
    with pytest.raises(OptimizeError, match=r"saved_model\.pb"):
        publish(bundle, out, 1)
    assert list(out.iterdir()) == []


def test_an_existing_version_is_refused_and_untouched(bundle, tmp_path):
    out = tmp_path / "serving"
    (out / "1").mkdir(parents=True)
    (out / "1" / "keep").write_text("serving")
    with pytest.raises(OptimizeError) as caught:
        publish(bundle, out, 1)
    assert caught.value.failure is Failure.VERSION_EXISTS
    assert [p.name for p in (out / "1").iterdir()] == ["keep"]
    assert sorted(p.name for p in out.iterdir()) == ["1"]


def test_published_files_are_readable_by_another_user(bundle, tmp_path):
    target = publish(bundle, tmp_path / "serving", 2)
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "variables").stat().st_mode) == 0o755
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in target.rglob("*") if p.is_file())
    lines = (target / SUMS_FILE).read_text().splitlines()
    assert len(lines) == 14 and all(len(line.split("  ")[0]) == 64 for line in lines)


def test_two_runs_publishing_the_same_version_end_in_version_exists(bundle, tmp_path, monkeypatch):
    """Issue 11: the loser of a race to publish a version gets VersionExists, not ExportFailed.

    The other run publishes in the worst window: after this run's last look at the target and
    before its rename (placed there by wrapping that last look, the pre-rename `check_target`).
    """
    out = tmp_path / "serving"
    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    (other / "report.json").write_text('{"other": true}')
    write_sums(other)
    real_check = export.check_target
    calls = []

    def check_then_lose_the_race(output, version):
        target = real_check(output, version)
        calls.append(target)
        if len(calls) == 2:  # this run's pre-rename check passed: the other run wins now
            monkeypatch.setattr(export, "check_target", real_check)
            publish(other, output, version)
        return target

    monkeypatch.setattr(export, "check_target", check_then_lose_the_race)
    with pytest.raises(OptimizeError) as caught:
        publish(bundle, out, 3)
    assert len(calls) == 2
    assert caught.value.failure is Failure.VERSION_EXISTS, caught.value
    assert "another run" in caught.value.message
    assert (out / "3" / "report.json").read_text() == '{"other": true}'  # the winner's folder, untouched
    assert sorted(p.name for p in out.iterdir()) == ["3"]  # the loser's staging folder is gone


def test_an_empty_folder_created_meanwhile_is_not_replaced(bundle, tmp_path, monkeypatch):
    """rename(2) would replace an empty folder; the version's name must be claimed, never replaced."""
    out = tmp_path / "serving"
    real_check = export.check_target
    calls = []

    def check_then_someone_creates_it(output, version):
        target = real_check(output, version)
        calls.append(target)
        if len(calls) == 2:
            target.mkdir()
        return target

    monkeypatch.setattr(export, "check_target", check_then_someone_creates_it)
    with pytest.raises(OptimizeError) as caught:
        publish(bundle, out, 4)
    assert caught.value.failure is Failure.VERSION_EXISTS
    assert list((out / "4").iterdir()) == []


def test_a_running_runs_staging_folder_is_not_taken_for_a_stale_one(bundle, tmp_path):
    """Issue 11: a second run of the same version removed the first run's staging folder mid-copy."""
    import fcntl

    out = tmp_path / "serving"
    live, stale = out / f"{staging_prefix(6)}live", out / f"{staging_prefix(6)}killed"
    live.mkdir(parents=True)
    stale.mkdir()
    fd = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a publishing run holds
        assert export.remove_stale_staging(out, 6) == [stale]
        assert live.is_dir() and not stale.exists()
    finally:
        os.close(fd)
