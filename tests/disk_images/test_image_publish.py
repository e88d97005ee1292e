"""`engine-disk create` publishes its image safely: a file that appears at the target name
while the image is built is never replaced, and the partial sweep removes only tagged
partials nobody holds locked (a live build's partial, or a look-alike name, stays)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from disk_images.image import MIB, PARTIAL_MARK, create_image, new_image
from enginekit.errors import UserInputError
from enginekit.scratch import create_owned_partial


def test_a_file_that_appears_while_building_is_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "d.img"
    with pytest.raises(UserInputError, match="appeared while the image was being built"):
        with new_image(path, 2 * MIB):
            path.write_bytes(b"user data")
    assert path.read_bytes() == b"user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.img"]


def test_force_refuses_when_the_checked_file_was_swapped(tmp_path: Path) -> None:
    path = tmp_path / "d.img"
    path.write_bytes(b"old")

    def swap_the_file() -> None:
        with new_image(path, 2 * MIB, force=True):
            path.unlink()
            path.write_bytes(b"newcomer")

    with pytest.raises(UserInputError, match="was replaced by another file"):
        swap_the_file()
    assert path.read_bytes() == b"newcomer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.img"]


def test_force_replaces_the_checked_file(tmp_path: Path) -> None:
    path = tmp_path / "d.img"
    path.write_bytes(b"old")
    create_image(path, 2 * MIB, force=True)
    assert path.stat().st_size == 2 * MIB
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.img"]


def test_threads_of_one_process_get_distinct_partials(tmp_path: Path) -> None:
    seen: list[Path] = []
    barrier = threading.Barrier(2)

    def build(name: str) -> None:
        with new_image(tmp_path / name, MIB) as partial:
            seen.append(partial)
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=build, args=(n,)) for n in ("a.img", "b.img")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.img", "b.img"]


def test_sweep_keeps_locked_and_look_alike_partials(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"d.img{PARTIAL_MARK}{dead.pid}.abcd1234"
    stale.write_bytes(b"killed build")
    look_alikes = [
        tmp_path / "d.img.partial-99999999",  # old-style / not ours
        tmp_path / f"d.img{PARTIAL_MARK}99999999.abcd1234.extra",
        tmp_path / f"d.img.x{PARTIAL_MARK}99999999.abcd1234",  # another image's partial
    ]
    for p in look_alikes:
        p.write_bytes(b"keep")
    # A live build in another process (its PID may look like anything): it holds the lock.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from enginekit.scratch import create_owned_partial;"
            f"fd, p = create_owned_partial(Path(sys.argv[1]), 'd.img{PARTIAL_MARK}');"
            "print(p, flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        live = Path(holder.stdout.readline().strip())
        fd, ours = create_owned_partial(tmp_path, f"d.img{PARTIAL_MARK}")
        try:
            create_image(tmp_path / "d.img", MIB)
            assert not stale.exists()
            assert live.exists()
            assert ours.exists()
            assert all(p.exists() for p in look_alikes)
        finally:
            os.close(fd)
    finally:
        holder.kill()
        holder.wait()
    # Its owner is gone: the next create of the same name sweeps it.
    create_image(tmp_path / "d.img", MIB, force=True)
    assert not live.exists()
    assert not ours.exists()
    assert all(p.exists() for p in look_alikes)
