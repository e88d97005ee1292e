"""Review fix: the disk lock's failures are one clear line each.

A lock call failing for a reason other than a holder (ENOLCK on a filesystem without POSIX
locks) becomes the package's InvalidDiskImage with a hint instead of a raw OSError; asking
for the exclusive lock while this same process holds a shared one says exactly that, not
"another EngineKit process".
"""

from __future__ import annotations

import errno
import fcntl
from pathlib import Path
from typing import Any

import pytest

from disk_images.errors import InvalidDiskImage
from disk_images.image import MIB, create_image
from disk_images.lock import _HELD, DiskInUse, disk_lock, held_by_enginekit, held_by_qemu


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    create_image(path, 4 * MIB)
    return path


def test_enolck_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ENOLCK cannot be provoked on the local filesystems tests run on (it comes from NFS
    # without a lock manager and some FUSE mounts), so the one lock call answers it here.
    path = _image(tmp_path)
    real = fcntl.fcntl

    def no_locks(fd: int, cmd: int, arg: Any = 0) -> Any:
        if cmd in (fcntl.F_OFD_SETLK, fcntl.F_OFD_GETLK):
            raise OSError(errno.ENOLCK, "No locks available")
        return real(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", no_locks)
    for exclusive in (True, False):
        with pytest.raises(InvalidDiskImage) as caught:
            with disk_lock(path, exclusive=exclusive):
                pass
        assert not isinstance(caught.value, DiskInUse)
        assert caught.value.message == f"{path}: cannot lock the disk image (No locks available)"
        assert caught.value.hint is not None and "local filesystem" in caught.value.hint
    for check in (held_by_enginekit, held_by_qemu):
        with pytest.raises(InvalidDiskImage, match="cannot lock the disk image"):
            check(path)
    assert not _HELD


def test_exclusive_inside_own_shared_lock_says_so(tmp_path: Path) -> None:
    path = _image(tmp_path)
    with disk_lock(path, exclusive=False):
        with pytest.raises(DiskInUse) as caught:
            with disk_lock(path, exclusive=True):
                pass
    assert "is in use read-only by this same process" in caught.value.message
    assert "another EngineKit process" not in caught.value.message
    assert not _HELD
    with disk_lock(path, exclusive=True):  # and the shared lock is gone
        pass
