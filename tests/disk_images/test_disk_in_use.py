"""A disk image in use is never replaced or changed by a second writer.

`engine-disk create --force` refuses an image attached to a loop device, locked by another
EngineKit process or open in QEMU; it never follows a symbolic link; it builds under
`<name>.enginekit-partial.<pid>.<random>` and renames only on success, so a killed build
leaves the old image intact (and its partial is swept by the next create).
`open_installation(writable=True)` holds an exclusive lock: a second writer in another
process gets one clear line, and so does every failure of the lock itself (no POSIX locks
on the filesystem; an exclusive lock asked for inside this process's own shared one). All with
real processes, real loop devices and a real QEMU.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from commands import engine_disk as cli
from disk_images.errors import InvalidDiskImage
from disk_images.image import MIB, PARTIAL_MARK, create_image
from disk_images.lock import _HELD, DiskInUse, disk_lock, held_by_enginekit, held_by_qemu
from disk_images.loop import LoopDevice
from disk_images.probe import in_use_by
from disk_images.session import open_installation
from enginekit.errors import UserInputError
from enginekit.versions import DiskLayout

MARK = b"ENGINEKIT-USER-DATA" * 16


def _user_image(path: Path) -> Path:
    """A 4 MiB image with known bytes at the start (what --force must not destroy)."""
    create_image(path, 4 * MIB)
    with path.open("r+b") as stream:
        stream.write(MARK)
    return path


def _intact(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(len(MARK)) == MARK and path.stat().st_size == 4 * MIB


HOLDER = """
import sys, time
from pathlib import Path
from disk_images.lock import disk_lock
with disk_lock(Path(sys.argv[1]), exclusive=sys.argv[2] == "x"):
    print("locked", flush=True)
    sys.stdin.read()
"""


class Holder:
    """Another real process holding the disk lock until the test closes its stdin."""

    def __init__(self, path: Path, exclusive: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), "x" if exclusive else "s"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"locked\n"

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=20)


@pytest.mark.root
def test_create_force_refuses_an_image_attached_to_a_loop_device(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = _user_image(tmp_path / "f.img")
    with LoopDevice(disk, read_only=True):
        assert cli.main(["create", str(disk), "--size", "2G", "--force"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {disk}: is in use (attached to /dev/loop"), err
        assert _intact(disk)
    assert not list(tmp_path.glob(f"*{PARTIAL_MARK}*"))


def test_create_force_refuses_an_image_another_process_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = _user_image(tmp_path / "f.img")
    with Holder(disk):
        assert held_by_enginekit(disk)
        assert "another EngineKit process (boot/install)" in in_use_by(disk)
        assert cli.main(["create", str(disk), "--size", "2G", "--force"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(
            f"error: {disk}: is in use by another EngineKit process (boot/install)\n"
        ), err
        assert _intact(disk)
    assert cli.main(["create", str(disk), "--size", "8M", "--force"]) == 0
    assert disk.stat().st_size == 8 * MIB


def test_create_force_refuses_a_symlink_and_keeps_its_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _user_image(tmp_path / "real.img")
    link = tmp_path / "link.img"
    link.symlink_to(target)
    assert cli.main(["create", str(link), "--size", "2G", "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {link}: is a symbolic link; refusing"), err
    assert f"hint: name the file itself ({target})" in err
    assert _intact(target)
    assert link.is_symlink()


def test_create_replaces_by_rename_and_sweeps_a_dead_builders_partial(tmp_path: Path) -> None:
    disk = _user_image(tmp_path / "f.img")
    inode_before = disk.stat().st_ino
    # The partial a SIGKILLed create left behind (a real dead PID).
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f"f.img{PARTIAL_MARK}{dead.pid}.abcd1234"
    leftover.write_bytes(b"half")
    create_image(disk, 8 * MIB, force=True)
    assert disk.stat().st_size == 8 * MIB
    assert disk.stat().st_ino != inode_before  # a new file; the old inode was never truncated
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.img"]


@pytest.mark.root
@pytest.mark.slow
def test_killed_engine_create_keeps_the_original(
    tmp_path: Path, engine_medium: Callable[[str], Path]
) -> None:
    """`create --force --engine` killed midway (SIGKILL at a fresh-install checkpoint):
    the user's old image is untouched; the next create sweeps the partial."""
    from installer.engine.checkpoints import CRASH_ENV

    engine_medium("5.0.0")  # the reference medium is built before the clock starts
    disk = _user_image(tmp_path / "f.img")
    env = dict(os.environ, **{CRASH_ENV: "write-slot"})
    argv = [sys.executable, "-m", "commands.engine_disk", "create", str(disk)]
    argv += ["--size", "1G", "--force", "--engine", "5.0.0", "--no-vms"]
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    assert _intact(disk)
    partials = list(tmp_path.glob(f"f.img{PARTIAL_MARK}*"))
    assert len(partials) == 1
    deadline = time.monotonic() + 20  # its loop device autoclears after the kill
    while time.monotonic() < deadline and in_use_by(partials[0]):
        time.sleep(0.1)
    create_image(disk, 8 * MIB, force=True)
    assert not partials[0].exists()


WRITER = """
import sys
from pathlib import Path
from disk_images.session import open_installation
from enginekit.versions import DiskLayout
with open_installation(Path(sys.argv[1]), writable=True) as session:
    print("open", flush=True)
    sys.stdin.read()
"""


@pytest.mark.root
def test_second_writer_in_another_process_is_refused(
    tmp_path: Path, installation_builder: Callable[..., Any]
) -> None:
    disk = installation_builder(tmp_path / "engine.img", DiskLayout.GPT_AB).path
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(disk)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"open\n"
        with pytest.raises(InvalidDiskImage) as caught:
            with open_installation(disk, writable=True):
                pass
        assert caught.value.message == (
            f"{disk}: is in use by another EngineKit process (boot/install)"
        )
        with pytest.raises(InvalidDiskImage, match="in use by another EngineKit process"):
            with open_installation(disk, writable=False):
                pass
    finally:
        assert writer.stdin is not None
        writer.stdin.close()
        writer.wait(timeout=30)
    # Once the writer is gone (even after a SIGKILL, the kernel drops OFD locks), it opens.
    with open_installation(disk, writable=True):
        pass


def test_readers_share_and_nested_opens_reuse_the_lock(tmp_path: Path) -> None:
    disk = _user_image(tmp_path / "f.img")
    with Holder(disk, exclusive=False):
        with disk_lock(disk, exclusive=False):
            pass
        with pytest.raises(InvalidDiskImage, match="in use by another EngineKit"):
            with disk_lock(disk, exclusive=True):
                pass
    with disk_lock(disk, exclusive=True), disk_lock(disk, exclusive=False):
        with disk_lock(disk, exclusive=True):
            assert not held_by_enginekit(disk)  # our own lock is not "another process"


@pytest.mark.qemu
def test_an_image_open_in_qemu_is_refused(tmp_path: Path) -> None:
    disk = _user_image(tmp_path / "vm.img")
    qemu = subprocess.Popen(
        [
            "qemu-system-x86_64",
            "-S",  # paused: the drive is open and locked, nothing runs
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-drive",
            f"file={disk},format=raw,if=virtio",
        ],
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not held_by_qemu(disk) and time.monotonic() < deadline:
            assert qemu.poll() is None, qemu.stderr.read() if qemu.stderr else ""
            time.sleep(0.1)
        assert "a QEMU virtual machine" in in_use_by(disk)
        with pytest.raises(UserInputError, match="in use by a QEMU virtual machine"):
            create_image(disk, 8 * MIB, force=True)
        assert _intact(disk)
    finally:
        qemu.kill()
        qemu.wait(timeout=30)
    assert not held_by_qemu(disk)


def test_engine_create_on_a_held_image_keeps_it(
    tmp_path: Path, engine_medium: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """The reported sequence: `create --force --engine` refused as in use must not delete
    the image it refused to replace (the old except-branch unlinked it)."""
    from commands.engine_disk import main as engine_disk_main

    engine_medium("5.0.0")
    disk = _user_image(tmp_path / "f.img")
    with Holder(disk):
        argv = ["create", str(disk), "--size", "1G", "--force", "--engine", "5.0.0"]
        assert engine_disk_main(argv) == 2
    assert "in use by another EngineKit process" in capsys.readouterr().err
    assert _intact(disk)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.img"]


def test_lock_on_an_unopenable_image_is_one_clear_error(tmp_path: Path) -> None:
    disk = _user_image(tmp_path / "f.img")
    expected = re.escape(f"{tmp_path}: cannot open it for writing (Is a directory)")
    with pytest.raises(InvalidDiskImage, match=expected) as caught:
        with disk_lock(tmp_path, exclusive=True):  # a directory cannot be opened O_RDWR
            pass
    assert caught.value.hint is not None
    assert _intact(disk)


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
        assert caught.value.hint is not None
        assert "local filesystem" in caught.value.hint
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
