"""Writing to real block devices (loop devices) and the refusals a device can earn.

Loop devices go through the same kernel paths as a USB stick: O_EXCL, BLKGETSIZE64,
BLKROGET, O_DIRECT, BLKFLSBUF/BLKRRPART. Each refusal must be one clear line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from commands.engine_media import main
from enginekit.process import require_tool, run
from media.usb.blockdev import BLKGETSIZE64, BlockDeviceTarget, device_size
from media.usb.writer import TargetStatus, write_many

from .conftest import attached_loop, error_lines, run_engine_media

pytestmark = pytest.mark.root

MiB = 1024 * 1024
LoopFactory = Callable[..., Path]


def test_write_to_a_loop_device_clears_the_stale_backup_table(
    loop_device: LoopFactory,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(5 * MiB)
    size = 32 * MiB
    # An old stick: every byte set, as if a bigger image with a backup GPT had been there.
    stick = loop_device(size, fill=b"\xa5" * 4096)
    status, out, err = run_engine_media(
        capsys, monkeypatch, ["usb", "write", "--force", "--yes", str(iso), str(stick)]
    )
    assert status == 0, err
    assert "ok" in out
    with open(stick, "rb") as device:
        data = device.read()
    image = iso.read_bytes()
    assert data[: len(image)] == image
    assert data[-MiB:] == bytes(MiB)  # the end of the stick no longer looks like a GPT
    assert data[len(image) : size - MiB] == b"\xa5" * (size - MiB - len(image))

    status, out, _ = run_engine_media(capsys, monkeypatch, ["usb", "verify", str(iso), str(stick)])
    assert status == 0
    assert out.startswith(f"ok: {stick} matches")


def test_device_size_from_the_kernel(loop_device: LoopFactory) -> None:
    stick = loop_device(12 * MiB)
    fd = os.open(stick, os.O_RDONLY)
    try:
        assert device_size(fd) == 12 * MiB
    finally:
        os.close(fd)
    assert BLKGETSIZE64 == 0x80081272


def test_too_small_and_read_only_devices_are_refused(
    loop_device: LoopFactory,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(6 * MiB)
    small = loop_device(4 * MiB)
    read_only = loop_device(16 * MiB, read_only=True)
    status, _, err = run_engine_media(
        capsys,
        monkeypatch,
        ["usb", "write", "--force", "--yes", str(iso), str(small), str(read_only)],
    )
    assert status == 2
    lines = error_lines(err)
    assert len(lines) == 2, err
    assert lines[0].startswith(f"error: refusing {small}: is smaller than the image (4.0 MiB <")
    assert lines[1] == f"error: refusing {read_only}: is read-only"


def test_a_device_with_a_mounted_partition_needs_unmount(
    tmp_path: Path,
    loop_device: LoopFactory,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(3 * MiB)
    stick = loop_device(32 * MiB)
    run([require_tool("sfdisk", "fdisk"), "-q", stick], input=b"label: dos\nstart=2048, type=83\n")
    # This kernel has no partition-table parsers: register the partition from userspace.
    run([require_tool("partx", "util-linux"), "--add", stick])
    partition = Path(f"{stick}p1")
    run([require_tool("mkfs.ext4", "e2fsprogs"), "-q", partition])
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    run(["mount", partition, mountpoint])
    try:
        status, _, err = run_engine_media(
            capsys, monkeypatch, ["usb", "write", "--force", "--yes", str(iso), str(stick)]
        )
        assert status == 2
        assert error_lines(err) == [
            f"error: refusing {stick}: has mounted partitions ({partition} on {mountpoint})"
        ]
        assert "--unmount" in err

        status, _, err = run_engine_media(
            capsys, monkeypatch, ["usb", "write", "--force", "--yes", str(iso), str(partition)]
        )
        assert status == 2
        # One error line for the partition, its reasons indented (partition first).
        assert f"error: refusing {partition}: 2 reasons\n  is a partition" in err

        status, _out, err = run_engine_media(
            capsys,
            monkeypatch,
            ["usb", "write", "--force", "--yes", "--unmount", str(iso), str(stick)],
        )
        assert status == 0, err
    finally:
        run(["umount", mountpoint], check=False)
    assert not os.path.ismount(mountpoint)
    with open(stick, "rb") as device:
        assert device.read(len(iso.read_bytes())) == iso.read_bytes()


def test_a_device_held_by_another_program_is_refused(
    loop_device: LoopFactory, make_iso: Callable[[int], Path]
) -> None:
    iso = make_iso(1 * MiB)
    stick = loop_device(8 * MiB)
    holder = os.open(stick, os.O_RDONLY | os.O_EXCL)
    try:
        (result,) = write_many(iso, [stick]).results
    finally:
        os.close(holder)
    assert result.status is TargetStatus.REFUSED
    assert result.message.startswith(f"refusing {stick}: in use")


def test_concurrent_write_one_too_small_one_good(
    loop_device: LoopFactory,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(6 * MiB)
    good = loop_device(16 * MiB)
    small = loop_device(4 * MiB)
    image = iso.read_bytes()

    # In the writer itself (the kernel's view, checked on the open device in its thread)...
    report = write_many(iso, [small, good])
    assert [r.status for r in report.results] == [TargetStatus.REFUSED, TargetStatus.OK]
    assert "smaller than the image" in report.results[0].message
    with open(good, "rb") as device:
        assert device.read(len(image)) == image

    # ... and through the command: a result table, exit status 2 (a target was refused).
    status, out, err = run_engine_media(
        capsys, monkeypatch, ["usb", "write", "--force", "--yes", str(iso), str(good), str(small)]
    )
    assert status == 2
    assert f"written: {good}; refused: {small}" in err
    assert [line for line in error_lines(err) if str(good) in line] == []
    assert any(str(small) in line for line in error_lines(err)), err
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("/dev/")}
    assert " ok " in rows[str(good)]
    assert " refused " in rows[str(small)]


def test_target_class_for_loop_devices(loop_device: LoopFactory) -> None:
    from media.usb.blockdev import open_target

    stick = loop_device(4 * MiB)
    assert isinstance(open_target(stick), BlockDeviceTarget)


def test_a_device_holding_the_image_is_refused(
    tmp_path: Path,
    loop_device: LoopFactory,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stick = loop_device(32 * MiB)
    run([require_tool("mkfs.ext4", "e2fsprogs"), "-q", stick])  # no partition table
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    run(["mount", stick, mountpoint])
    try:
        iso = mountpoint / "engine.iso"
        iso.write_bytes(make_iso(1 * MiB).read_bytes())
        status, _, err = run_engine_media(
            capsys,
            monkeypatch,
            ["usb", "write", "--force", "--yes", "--unmount", str(iso), str(stick)],
        )
        assert status == 2
        assert error_lines(err) == [f"error: refusing {stick}: holds the image file being written"]
        assert os.path.ismount(mountpoint)  # nothing was unmounted
    finally:
        run(["umount", mountpoint], check=False)


def test_disks_above_64_gb_need_their_name_typed(
    loop_device: LoopFactory,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(1 * MiB)
    big = loop_device(70 * 1000**3)  # sparse: only what is written takes space
    argv = ["usb", "write", "--force", str(iso), str(big)]

    monkeypatch.setattr("sys.stdin", io.StringIO("yes\nsdb\n"))
    assert main(argv) == 2
    _, err = capsys.readouterr()
    assert "larger than 64 GB" in err
    assert f"Type its name '{big.name}'" in err
    assert "not confirmed; nothing was written" in err
    with open(big, "rb") as device:
        assert device.read(4096) == bytes(4096)

    monkeypatch.setattr("sys.stdin", io.StringIO(f"yes\n{big.name}\n"))
    assert main(argv) == 0
    assert error_lines(capsys.readouterr().err) == []
    with open(big, "rb") as device:
        assert device.read(iso.stat().st_size) == iso.read_bytes()


def test_list_all_explains_why_a_small_loop_device_is_hidden(
    loop_device: LoopFactory,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(6 * MiB)
    small = loop_device(4 * MiB, read_only=True)
    argv = ["usb", "list", "--all", "--json", "--image", str(iso)]
    status, out, _ = run_engine_media(capsys, monkeypatch, argv)
    assert status == 0
    (entry,) = [d for d in json.loads(out) if d["path"] == str(small)]
    assert entry["bus"] == "loop"
    assert entry["size_bytes"] == 4 * MiB
    assert entry["read_only"]
    assert entry["model"].startswith("loop: ")
    assert entry["model"].endswith(".img")
    assert entry["hidden"] == [
        "virtual device (loop)",
        "too small (4.0 MiB < image)",
        "read-only",
    ]
    status, out, _ = run_engine_media(capsys, monkeypatch, ["usb", "list", "--all"])
    assert status == 0
    assert "HIDDEN BECAUSE" in out  # the table itself may fold long cells: check JSON above
    assert any(line.startswith(f"{small} ") for line in out.splitlines())


def test_a_loop_device_over_the_image_is_refused(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The data-loss case: writing self.iso to the loop device backed by self.iso zeroed the
    # ISO's first and last MiB, then "verified" the wreck against itself.
    iso = tmp_path / "self.iso"
    iso.write_bytes(make_iso(3 * MiB).read_bytes())
    before = iso.read_bytes()
    link = tmp_path / "link.iso"
    link.symlink_to(iso)
    with attached_loop(iso) as loop:
        for image in (iso, link):
            status, _, err = run_engine_media(
                capsys, monkeypatch, ["usb", "write", "--force", "--yes", str(image), str(loop)]
            )
            assert status == 2, err
            assert error_lines(err) == [
                f"error: refusing {loop}: is a loop device over the image file itself; "
                "writing would destroy the image"
            ]
    assert iso.read_bytes() == before


def test_a_file_attached_as_a_mounted_loop_device_is_refused(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(1 * MiB)
    stick = tmp_path / "stick.img"
    with open(stick, "wb") as f:
        f.truncate(32 * MiB)
    run([require_tool("mkfs.ext4", "e2fsprogs"), "-q", stick])
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with attached_loop(stick) as loop:
        argv = ["usb", "write", "--force", "--yes", str(iso), str(stick)]
        status, _, err = run_engine_media(capsys, monkeypatch, argv)
        assert status == 2, err
        assert error_lines(err) == [f"error: refusing {stick}: is in use (attached to {loop})"]
        run(["mount", loop, mountpoint])
        try:
            status, _, err = run_engine_media(capsys, monkeypatch, argv)
            assert status == 2, err
            assert error_lines(err) == [f"error: refusing {stick}: is in use (attached to {loop})"]
            assert "losetup -d" in err
        finally:
            run(["umount", mountpoint], check=False)
    data = stick.read_bytes()
    assert data[1080:1082] == b"\x53\xef"  # the ext4 superblock magic: never overwritten
    assert b"CD001" not in data[32768:32774]


def test_with_yes_a_disk_above_64_gb_needs_allow_large(
    loop_device: LoopFactory,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    iso = make_iso(1 * MiB)
    big = loop_device(70 * 1000**3)  # sparse
    argv = ["usb", "write", "--force", "--yes", str(iso), str(big)]
    status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 2, err
    (line,) = error_lines(err)
    assert line == (f"error: refusing {big}: is larger than 64 GB (70.0 GB): rarely a USB stick")
    assert "--allow-large" in err
    with open(big, "rb") as device:
        assert device.read(4096) == bytes(4096)

    argv = ["usb", "write", "--force", "--yes", "--allow-large", str(iso), str(big)]
    status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 0, err
    # Even without a question, the target is named before it is written.
    assert f"Writing {iso.name}" in err
    (shown,) = [line for line in err.splitlines() if line.startswith(f"  {big}  ")]
    assert "loop: " in shown
    assert "(70.0 GB)" in shown
    with open(big, "rb") as device:
        assert device.read(iso.stat().st_size) == iso.read_bytes()


def test_a_stick_swapped_after_the_checks_is_refused(
    tmp_path: Path, make_iso: Callable[[int], Path]
) -> None:
    from media.usb.policy import WriteOptions
    from media.usb.targets import AcceptedTarget, examine_target

    iso = make_iso(1 * MiB)
    first, second = tmp_path / "first.img", tmp_path / "second.img"
    for backing in (first, second):
        with open(backing, "wb") as f:
            f.truncate(8 * MiB)
    # Both sticks stay attached (and held by this test) throughout; the name the user gave,
    # a node of our own, is what moves from one to the other, as when a stick is pulled and
    # another one takes its name.
    stick = tmp_path / "stick"
    with attached_loop(first) as first_loop, attached_loop(second) as second_loop:
        stick.symlink_to(first_loop)
        verdict = examine_target(stick, iso, iso.stat().st_size, WriteOptions(force=True))
        assert isinstance(verdict, AcceptedTarget)
        assert verdict.identity
        stick.unlink()
        stick.symlink_to(second_loop)
        report = write_many(iso, [stick], identities={stick: verdict.identity})
    (result,) = report.results
    assert result.status is TargetStatus.REFUSED
    assert "is no longer the disk that was checked" in result.message
    assert second.read_bytes() == bytes(8 * MiB)
    assert first.read_bytes() == bytes(8 * MiB)


def test_a_loop_device_needs_force(
    loop_device: LoopFactory,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`usb list` hides loop devices (virtual), so `usb write` takes one only with --force."""
    iso = make_iso(1 * MiB)
    stick = loop_device(8 * MiB)
    argv = ["usb", "write", "--yes", str(iso), str(stick)]
    status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 2
    (line,) = error_lines(err)
    assert line.startswith(f"error: refusing {stick}: is a loop device (loop: ")
    assert "hint: add --force if you really mean to overwrite the file behind it" in err
    with open(stick, "rb") as device:
        assert device.read() == bytes(8 * MiB)


def test_two_names_of_one_device_are_one_target(
    tmp_path: Path,
    loop_device: LoopFactory,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/dev/loopN, a symbolic link to it (as /dev/disk/by-id/... is) and a second device
    node with its number: one target, examined, shown and written once."""
    iso = make_iso(1 * MiB)
    stick = loop_device(8 * MiB)
    link = tmp_path / "by-id-link"
    link.symlink_to(stick)
    node = tmp_path / "same-node"
    os.mknod(node, 0o600 | stat.S_IFBLK, os.stat(stick).st_rdev)
    argv = ["usb", "write", "--force", "--yes", str(iso), str(stick), str(link), str(node)]
    status, out, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 0, err
    assert len([ln for ln in err.splitlines() if ln.startswith(f"  {stick}  ")]) == 1
    assert f"{link} is the same target as {stick}: it is written once" in err
    assert f"{node} is the same target as {stick}: it is written once" in err
    rows = [ln.split()[0] for ln in out.splitlines() if ln.startswith("/")]
    assert rows == [str(stick)]


def test_several_reasons_make_one_error_line(
    tmp_path: Path,
    make_iso: Callable[[int], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read-only loop device with its filesystem mounted: one `error:` line, the reasons
    indented below it, and the hint of the most fundamental reason (the first)."""
    iso = make_iso(1 * MiB)
    backing = tmp_path / "fs.img"
    with open(backing, "wb") as f:
        f.truncate(16 * MiB)
    run([require_tool("mkfs.ext4", "e2fsprogs"), "-q", "-F", backing])
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with attached_loop(backing, read_only=True) as stick, mounted(stick, mountpoint):
        argv = ["usb", "write", "--yes", str(iso), str(stick)]
        status, _, err = run_engine_media(capsys, monkeypatch, argv)
    assert status == 2
    lines = err.splitlines()
    assert error_lines(err) == [f"error: refusing {stick}: 3 reasons"]
    details = [line.strip() for line in lines if line.startswith("  ")]
    assert details[0] == f"has mounted partitions ({stick} on {mountpoint})"
    assert details[1:] == ["is read-only", f"is a loop device (loop: {backing}), not a USB stick"]
    hints = [line for line in lines if line.startswith("hint:")]
    assert hints == ["hint: close files on the stick and add --unmount to unmount them first"]


@contextlib.contextmanager
def mounted(device: Path, mountpoint: Path) -> Iterator[None]:
    run([require_tool("mount", "mount"), "-o", "ro", device, mountpoint])
    try:
        yield
    finally:
        run([require_tool("umount", "mount"), mountpoint])
