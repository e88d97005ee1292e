"""A cache entry wanted by several processes at once is built once: the others wait for the
builder's lock and then find its entry (a fresh machine's xdist workers all start with an
empty cache)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from reference_builds.cache_lock import STALE_AFTER_SECONDS, built_once, remove_stale


def _waiters_on(lock: Path) -> int:
    """How many lock requests wait on `lock`'s inode (the `->` lines of /proc/locks)."""
    inode = os.stat(lock).st_ino
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and f":{inode} " in line)


def test_a_second_caller_waits_for_the_first_build_and_takes_its_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGINEKIT_CACHE", str(tmp_path / "cache"))
    entry = tmp_path / "entry"
    builds: list[str] = []
    building = threading.Event()
    release = threading.Event()

    def find() -> Path | None:
        return entry if entry.exists() else None

    def build(who: str) -> Path:
        builds.append(who)
        building.set()
        assert release.wait(timeout=60)
        entry.write_text(who)
        return entry

    first = threading.Thread(target=built_once, args=("thing", find, lambda: build("first")))
    first.start()
    assert building.wait(timeout=60)
    found: list[Path] = []
    second = threading.Thread(
        target=lambda: found.append(built_once("thing", find, lambda: build("second")))
    )
    second.start()
    lock = tmp_path / "cache" / "locks" / "thing.lock"
    while _waiters_on(lock) == 0:  # the second caller is blocked on the lock (no timing)
        assert second.is_alive()
    release.set()
    first.join(timeout=60)
    second.join(timeout=60)
    assert builds == ["first"]
    assert found == [entry]
    assert entry.read_text() == "first"


def test_a_new_build_removes_the_entries_it_replaces_once_they_are_a_day_old(
    tmp_path: Path,
) -> None:
    """What a changed key leaves behind goes, except what a running session may still use."""
    now = time.time()
    ages = {"old.img": STALE_AFTER_SECONDS + 60, "recent.img": 60, "kept.img": 10 * 86400}
    for name, age in ages.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (now - age, now - age))
    (tmp_path / "other.txt").write_bytes(b"not matched")
    os.utime(tmp_path / "other.txt", (now - 10 * 86400, now - 10 * 86400))
    remove_stale(tmp_path, "*.img", keep=tmp_path / "kept.img")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.img", "other.txt", "recent.img"]
