"""The lab's phase-1 cache: one folder per set of inputs, the long-unused ones removed."""

import os
import time
from pathlib import Path

from boottorrentlab.lab.phase1cache import PHASE1_STAMP, UNUSED_DAYS, prune_unused

DAY = 86400


def folder(root: Path, name: str, used_days_ago: float, *, stamp: bool = True) -> Path:
    path = root / name
    (path / "phase1").mkdir(parents=True)
    when = time.time() - used_days_ago * DAY
    if stamp:
        (path / PHASE1_STAMP).write_text("{}\n")
        os.utime(path / PHASE1_STAMP, (when, when))
    os.utime(path, (when, when))
    return path


def test_images_no_run_used_for_weeks_are_removed_and_the_others_stay(tmp_path: Path):
    old = folder(tmp_path, "old", UNUSED_DAYS + 1)
    unfinished = folder(tmp_path, "unfinished", UNUSED_DAYS + 1, stamp=False)
    recent = folder(tmp_path, "recent", UNUSED_DAYS - 1)
    building = folder(tmp_path, "building", 0, stamp=False)
    mine = folder(tmp_path, "mine", UNUSED_DAYS + 30)
    (tmp_path / ".phase1.lock").write_text("")

    removed = prune_unused(tmp_path, mine, time.time())

    assert removed == [old, unfinished]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".phase1.lock", "building", "mine", "recent"]
    assert recent.is_dir() and building.is_dir() and mine.is_dir()


def test_a_cache_that_does_not_exist_yet_has_nothing_to_remove(tmp_path: Path):
    assert prune_unused(tmp_path / "absent", tmp_path / "absent" / "x", time.time()) == []
