"""Loop devices and mounts are released in reverse order on success, exception and Ctrl-C, and
nothing is left behind when the process holding them is SIGKILLed."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from disk_images.errors import MountError, PartitionFileError
from disk_images.filesystems import make_ext4
from disk_images.image import MIB, PartitionSpec, TableType, create_image, partition_image
from disk_images.layout import PartitionRole, Slot
from disk_images.loop import LoopDevice, backing_file
from disk_images.mount import Mount, MountStack, is_mountpoint
from disk_images.partition_files import DirectoryFiles
from disk_images.session import open_installation
from enginekit.process import run_text, spawn
from enginekit.versions import DiskLayout

from .conftest import InstallationBuilder

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[2]


def _two_ext4(tmp_path: Path) -> Path:
    disk = tmp_path / "two.img"
    create_image(disk, 40 * MIB)
    table = partition_image(
        disk,
        TableType.GPT,
        [PartitionSpec(size=16 * MIB, name="one"), PartitionSpec(size=16 * MIB, name="two")],
    )
    for part in table.partitions:
        make_ext4(disk, f"p{part.number}", offset=part.start_bytes, size=part.size_bytes)
    return disk


def _mounts_under(directory: Path) -> list[str]:
    with open("/proc/self/mounts") as mounts:
        return [line.split()[1] for line in mounts if line.split()[1].startswith(str(directory))]


def _loops_for(disk: Path) -> list[str]:
    out = run_text(["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"])
    return [line for line in out.splitlines() if str(disk) in line]


def test_loop_device_partitions_and_detach(tmp_path: Path) -> None:
    disk = _two_ext4(tmp_path)
    with LoopDevice(disk) as loop:
        device = loop.device
        assert backing_file(device) == str(disk)
        assert loop.partition(1).exists()
        assert loop.partition(2).exists()
        assert (Path("/sys/block") / device.name / f"{device.name}p2").exists()
    assert backing_file(device) != str(disk)
    assert _loops_for(disk) == []


class _Boom(Exception):
    pass


@pytest.mark.parametrize("ending", ["success", "exception", "keyboard-interrupt"])
def test_mount_stack_releases_in_reverse_order(
    tmp_path: Path, ending: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second filesystem is mounted *inside* the first: unmounting in the wrong order
    would fail with 'busy', so the recorded order is also physically enforced."""
    disk = _two_ext4(tmp_path)
    order: list[str] = []
    original = Mount.unmount

    def recording_unmount(self: Mount) -> None:
        order.append(self.mountpoint.name)
        original(self)

    monkeypatch.setattr(Mount, "unmount", recording_unmount)
    raised: BaseException | None = None
    try:
        with LoopDevice(disk) as loop, MountStack(tmp_path) as mounts:
            outer = mounts.mount(loop.partition(1), "outer")
            inner = mounts.mount(loop.partition(2), "outer/inner")
            DirectoryFiles(inner, "two").write_atomic("/hello", b"hi")
            assert is_mountpoint(outer)
            assert is_mountpoint(inner)
            device = loop.device
            if ending == "exception":
                raise _Boom
            if ending == "keyboard-interrupt":
                raise KeyboardInterrupt
    except (_Boom, KeyboardInterrupt) as exc:
        raised = exc
    assert (raised is None) == (ending == "success")
    assert order == ["inner", "outer"]
    assert _mounts_under(tmp_path) == []
    assert backing_file(device) != str(disk)
    assert not any(p.name.startswith("enginekit-mnt-") for p in tmp_path.iterdir())


def test_session_releases_on_exception(
    tmp_path: Path, installation_builder: InstallationBuilder
) -> None:
    disk = tmp_path / "engine.img"
    installation_builder(disk, DiskLayout.GPT_AB, vms=())

    def use_all_then_interrupt() -> None:
        with open_installation(disk, mount_parent=tmp_path) as session:
            for role in (PartitionRole.SYSTEM_A, PartitionRole.SYSTEM_B, PartitionRole.STORAGE):
                session.files(role)
            assert len(_mounts_under(tmp_path)) == 3
            assert session.read_release(Slot.A) is not None
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        use_all_then_interrupt()
    assert _mounts_under(tmp_path) == []
    assert _loops_for(disk) == []


def test_read_only_session_refuses_writes(
    tmp_path: Path, installation_builder: InstallationBuilder, file_hash: Callable[[Path], str]
) -> None:
    disk = tmp_path / "engine.img"
    installation_builder(disk, DiskLayout.GPT_AB, vms=())
    before = file_hash(disk)
    with open_installation(disk, writable=False) as session:
        assert session.read_state() is not None
        with pytest.raises(PartitionFileError, match="storage:/x: Read-only file system"):
            session.storage.write_atomic("/x", b"no")
        with pytest.raises(PartitionFileError, match="the partition is open read-only"):
            session.esp.write_atomic("/x", b"no")
        assert session.esp.read("/loader/loader.conf").startswith(b"default")
    assert file_hash(disk) == before


def test_mount_failure_is_one_clear_error(tmp_path: Path) -> None:
    disk = tmp_path / "blank.img"
    create_image(disk, 8 * MIB)
    with LoopDevice(disk) as loop, MountStack(tmp_path) as mounts:
        with pytest.raises(MountError, match="cannot mount"):
            mounts.mount(loop.device, "nothing")
    assert _mounts_under(tmp_path) == []


CHILD = textwrap.dedent(
    """
    import signal, sys
    from pathlib import Path
    from disk_images.layout import PartitionRole
    from disk_images.session import open_installation

    disk, parent, hold = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "hold"
    try:
        with open_installation(disk, mount_parent=parent) as session:
            for role in (PartitionRole.SYSTEM_A, PartitionRole.STORAGE):
                session.files(role)
            held = None
            if hold:  # an open file on a mount, as a crashed writer would have
                held = open(session.mountpoint(PartitionRole.STORAGE) / "engine" / "state.json")
            print("READY", session.loop.device, flush=True)
            signal.pause()  # held until the test's signal
    except KeyboardInterrupt:
        print("RELEASED", flush=True)
        sys.exit(130)
    """
)


def _host_state(tmp_path: Path, disk: Path) -> tuple[list[str], list[str], list[str]]:
    with open("/proc/1/mounts") as host:
        host_mounts = [ln for ln in host if str(tmp_path) in ln]
    return _loops_for(disk), _mounts_under(tmp_path), host_mounts


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_holder_leaves_nothing_behind(
    tmp_path: Path, installation_builder: InstallationBuilder, signum: int
) -> None:
    disk = tmp_path / "engine.img"
    installation_builder(disk, DiskLayout.GPT_AB, vms=())
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    before = _host_state(tmp_path, disk)
    assert before == ([], [], [])
    hold = "hold" if signum == signal.SIGKILL else "no"
    child = spawn([sys.executable, script, disk, tmp_path, hold], cwd=REPO)
    try:
        assert child.stdout is not None
        line = child.stdout.readline().decode()
        assert line.startswith("READY"), line + child.stdout.read().decode()
        device = line.split()[1]
        # while it runs: the loop device is attached and its mounts exist in the child's
        # private namespace, invisible to the host's
        assert backing_file(Path(device)) == str(disk)
        with open(f"/proc/{child.pid}/mounts") as theirs:
            child_mounts = [ln.split()[1] for ln in theirs if str(tmp_path) in ln]
        assert len(child_mounts) == 2
        assert _host_state(tmp_path, disk)[1:] == ([], [])
        os.kill(child.pid, signum)
        status = child.wait(timeout=30)
        if signum == signal.SIGINT:
            assert status == 130
            assert "RELEASED" in child.stdout.read().decode()
        else:
            assert status == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # The kernel tears the dead child's namespace and loop device down asynchronously: wait
    # for that (the bound only catches a release that never comes, it is not a speed test).
    deadline = time.monotonic() + 60
    while _host_state(tmp_path, disk) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _host_state(tmp_path, disk) == before
    assert backing_file(Path(device)) != str(disk)


def test_writable_open_refused_while_attached(
    tmp_path: Path, installation_builder: InstallationBuilder
) -> None:
    from disk_images.errors import InvalidDiskImage

    disk = tmp_path / "engine.img"
    installation_builder(disk, DiskLayout.MBR, vms=())
    with open_installation(disk, writable=False) as reader:
        assert reader.read_state() is not None
        with pytest.raises(InvalidDiskImage, match="in use"):
            with open_installation(disk):
                pass
    with open_installation(disk) as session:  # free again
        assert session.read_config() is not None
