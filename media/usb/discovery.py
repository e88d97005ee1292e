"""Find block devices and describe them as `BlockDeviceInfo`, the input of the selection policy.

Every description, live or recorded, goes through one constructor, `device_info_from_record`,
fed a plain dict of udev properties (what `udevadm info --query=property --export` prints) and a
dict of sysfs attributes (`size` in 512-byte sectors, `removable`, `ro`, ...). Live devices come
from pyudev plus sysfs; tests feed recorded fixtures of hardware we cannot attach. Which disks
carry `/`, `/boot`, swap or the image file is worked out from /proc/self/mountinfo and sysfs
(partitions, device-mapper slaves), because a udev database may be absent (containers).
"""

from __future__ import annotations

import enum
import os
import re
import shlex
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from enginekit.errors import HostError
from enginekit.identity import devices_holding, loop_devices_over, whole_disks_of
from media.errors import TargetRefused

SECTOR = 512
SYS_DEV_BLOCK = Path("/sys/dev/block")


class Bus(enum.StrEnum):
    """How a disk is attached. USB wins over the protocol behind it (a UAS SATA bridge is USB)."""

    USB = "usb"
    ATA = "ata"
    NVME = "nvme"
    VIRTIO = "virtio"
    MMC = "mmc"
    SCSI = "scsi"
    LOOP = "loop"  # backed by a file: as safe to overwrite as that file
    OTHER = "other"

    @property
    def is_virtual(self) -> bool:
        return self in (Bus.LOOP, Bus.OTHER)


class Holds(enum.StrEnum):
    """Something the running system needs that lives on a disk."""

    ROOT = "/"
    BOOT = "/boot"
    SWAP = "swap"
    IMAGE = "the image file"
    IMAGE_BACKED = "the image file as its backing file"  # a loop device over the image


@dataclass(frozen=True)
class MountedPartition:
    device: str  # e.g. /dev/sdb1 (or the disk itself when it has no partition table)
    mountpoint: str  # a path, or "[swap]"


@dataclass(frozen=True)
class BlockDeviceInfo:
    """One block device as the policy sees it. Sizes in bytes; strings empty when unknown."""

    path: str
    model: str
    serial: str
    vendor: str
    size_bytes: int
    bus: Bus
    removable: bool
    read_only: bool
    is_partition: bool = False
    mounted_partitions: tuple[MountedPartition, ...] = ()
    holds: frozenset[Holds] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def describe(self) -> str:
        """`SanDisk Cruzer Blade (serial 4C53...)` for prompts and tables."""
        label = " ".join(part for part in (self.vendor, self.model) if part) or "unknown model"
        return f"{label} (serial {self.serial})" if self.serial else label


_USB_PATH = re.compile(r"/usb\d+/")


def _unescape_udev(text: str) -> str:
    """udev's *_ENC values escape bytes as \\xNN (spaces in model names are \\x20)."""
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def _clean(text: str) -> str:
    return " ".join(text.replace("_", " ").split())


def _bus_of(properties: Mapping[str, str]) -> Bus:
    devpath = properties.get("DEVPATH", "")
    id_path = properties.get("ID_PATH", "")
    # The physical path decides: a SATA disk in a USB enclosure is a USB disk to the user.
    if _USB_PATH.search(devpath) or "-usb-" in id_path or properties.get("ID_BUS") == "usb":
        return Bus.USB
    if "/virtual/block/loop" in devpath or properties.get("DEVNAME", "").startswith("/dev/loop"):
        return Bus.LOOP
    if "/nvme/" in devpath or properties.get("ID_BUS") == "nvme":
        return Bus.NVME
    if "/mmc_host/" in devpath:
        return Bus.MMC
    if re.search(r"/virtio\d+/", devpath):
        return Bus.VIRTIO
    if re.search(r"/ata\d+/", devpath) or properties.get("ID_BUS") == "ata":
        return Bus.ATA
    if properties.get("ID_BUS") == "scsi" or "/host" in devpath:
        return Bus.SCSI
    return Bus.OTHER


def parse_udevadm_export(text: str) -> dict[str, str]:
    """Properties from `udevadm info --query=property --export` output (`KEY='value'` lines)."""
    properties: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not key:
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            words = [value.strip("'")]
        properties[key] = words[0] if words else ""
    return properties


def device_info_from_record(
    properties: Mapping[str, str],
    sysfs: Mapping[str, str],
    *,
    mounted_partitions: Iterable[MountedPartition] = (),
    holds: Iterable[Holds] = (),
) -> BlockDeviceInfo:
    """Build a BlockDeviceInfo from udev properties and sysfs attributes (both plain strings).

    `sysfs` keys are attribute paths relative to the device's sysfs directory: `size`,
    `removable`, `ro`, and optionally `device/model`, `device/vendor`, `device/serial`,
    `loop/backing_file`, used when the udev database does not know the device.
    """
    model = _unescape_udev(properties.get("ID_MODEL_ENC", "")) or properties.get("ID_MODEL", "")
    model = _clean(model or sysfs.get("device/model", ""))
    vendor = _unescape_udev(properties.get("ID_VENDOR_ENC", "")) or properties.get("ID_VENDOR", "")
    vendor = _clean(vendor or sysfs.get("device/vendor", ""))
    if vendor.startswith("0x"):
        vendor = ""  # a PCI vendor id (virtio's 0x1af4), not a name a person recognises
    serial = (
        properties.get("ID_SERIAL_SHORT")
        or sysfs.get("device/serial", "").strip()
        or properties.get("ID_SERIAL", "")
    )
    bus = _bus_of(properties)
    if bus is Bus.LOOP and not model:
        backing = sysfs.get("loop/backing_file", "").strip()
        model = f"loop: {backing}" if backing else "loop device (no backing file)"
    try:
        sectors = int(sysfs.get("size", "0").strip() or 0)
    except ValueError:
        sectors = 0
    return BlockDeviceInfo(
        path=properties.get("DEVNAME", ""),
        model=model,
        serial=serial.strip(),
        vendor=vendor,
        size_bytes=sectors * SECTOR,
        bus=bus,
        removable=sysfs.get("removable", "0").strip() == "1",
        read_only=sysfs.get("ro", "0").strip() == "1",
        is_partition=properties.get("DEVTYPE") == "partition",
        mounted_partitions=tuple(mounted_partitions),
        holds=frozenset(holds),
    )


# ---- what the running system uses -------------------------------------------------------

_SYSFS_ATTRIBUTES = (
    "size",
    "removable",
    "ro",
    "device/model",
    "device/vendor",
    "device/serial",
    "loop/backing_file",
)

BOOT_MOUNTPOINTS = ("/boot", "/boot/efi", "/efi")


@dataclass(frozen=True)
class _Mount:
    majmin: str
    mountpoint: str
    source: str


def _read_mounts() -> list[_Mount]:
    mounts: list[_Mount] = []
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return mounts
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        tail = right.split()
        if len(fields) < 5 or len(tail) < 2:
            continue
        mountpoint = fields[4].replace("\\040", " ")
        mounts.append(_Mount(majmin=fields[2], mountpoint=mountpoint, source=tail[1]))
    return mounts


def _read_swaps() -> list[str]:
    try:
        lines = Path("/proc/swaps").read_text().splitlines()[1:]
    except OSError:
        return []
    return [line.split()[0] for line in lines if line.strip()]


def _majmin_of_path(path: str) -> str | None:
    """`8:17` for a block device node or a file on a block-backed filesystem."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    dev = st.st_rdev if stat.S_ISBLK(st.st_mode) else st.st_dev
    return f"{os.major(dev)}:{os.minor(dev)}"


@dataclass(frozen=True)
class SystemUsage:
    """Which whole disks hold what, and which of their partitions are mounted."""

    holds: Mapping[str, frozenset[Holds]]  # disk major:minor -> what it holds
    mounted: Mapping[str, tuple[MountedPartition, ...]]  # disk major:minor -> mounts

    @classmethod
    def scan(cls, image: Path | None = None) -> SystemUsage:
        holds: dict[str, set[Holds]] = {}
        mounted: dict[str, list[MountedPartition]] = {}
        mounts = _read_mounts()
        for mount in mounts:
            disks = _disks_of_mount(mount)
            for disk in disks:
                entry = MountedPartition(mount.source, mount.mountpoint)
                if entry not in mounted.setdefault(disk, []):
                    mounted[disk].append(entry)
                if mount.mountpoint == "/":
                    holds.setdefault(disk, set()).add(Holds.ROOT)
                if mount.mountpoint in BOOT_MOUNTPOINTS:
                    holds.setdefault(disk, set()).add(Holds.BOOT)
        for swap in _read_swaps():
            majmin = _majmin_of_path(swap)
            for disk in whole_disks_of(majmin) if majmin else set():
                holds.setdefault(disk, set()).add(Holds.SWAP)
                mounted.setdefault(disk, []).append(MountedPartition(swap, "[swap]"))
        if image is not None:
            # The shared identity check (enginekit.identity), as the installer uses it.
            for disk in devices_holding(image):
                holds.setdefault(disk, set()).add(Holds.IMAGE)
            # Writing to a loop device over the image would overwrite the image itself (and
            # the read-back would then compare it with itself and pass).
            for loop_dev in loop_devices_over(image).values():
                holds.setdefault(loop_dev, set()).add(Holds.IMAGE_BACKED)
        return cls(
            holds={k: frozenset(v) for k, v in holds.items()},
            mounted={k: tuple(v) for k, v in mounted.items()},
        )


def _disks_of_mount(mount: _Mount) -> set[str]:
    disks = whole_disks_of(mount.majmin)
    if not disks and mount.source.startswith("/dev/"):
        # btrfs and friends report an anonymous device number; the source names the device.
        majmin = _majmin_of_path(mount.source)
        disks = whole_disks_of(majmin) if majmin else set()
    return disks


@dataclass(frozen=True)
class LoopBacking:
    """A loop device and the file behind it (as /sys/block/loopN/loop/backing_file names it)."""

    device: str  # /dev/loopN
    majmin: str
    backing_file: str


def _file_id(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def loops_backed_by(path: Path) -> list[LoopBacking]:
    """Every attached loop device whose backing file is `path` (same device and inode, so a
    symlink, a hard link or a relative name cannot hide it)."""
    wanted = _file_id(path)
    if wanted is None:
        return []
    found: list[LoopBacking] = []
    for loop_dir in sorted(Path("/sys/block").glob("loop*"), key=lambda p: _natural_key(p.name)):
        try:
            backing = (loop_dir / "loop" / "backing_file").read_text(errors="replace").strip()
            majmin = (loop_dir / "dev").read_text().strip()
        except OSError:
            continue  # not attached (no loop/ directory) or detached meanwhile
        # A deleted backing file cannot be the path we were given; `(deleted)` never matches.
        if backing and _file_id(backing) == wanted:
            found.append(LoopBacking(f"/dev/{loop_dir.name}", majmin, backing))
    return found


def device_identity(majmin: str) -> str:
    """A stable identity of the medium behind a block device number, to notice a swap between
    the checks and the write: the kernel's `diskseq` (new for every attach or medium change),
    else model, serial and size."""
    sys_path = SYS_DEV_BLOCK / majmin
    try:
        return "diskseq " + (sys_path / "diskseq").read_text().strip()
    except OSError:
        pass
    record = _sysfs_record(sys_path)
    parts = (record.get(k, "") for k in ("device/model", "device/serial", "size"))
    return "model/serial/size " + "/".join(parts)


# ---- live devices -------------------------------------------------------------------------


def _sysfs_record(sys_path: Path) -> dict[str, str]:
    record: dict[str, str] = {}
    for name in _SYSFS_ATTRIBUTES:
        try:
            record[name] = (sys_path / name).read_text(errors="replace").strip()
        except OSError:
            continue
    return record


def _udev_properties(sys_path: Path) -> dict[str, str]:
    try:
        import pyudev
    except ImportError as exc:  # pragma: no cover - pyudev is a hard dependency
        raise HostError("pyudev is not installed", hint="run tools/setup") from exc
    context = pyudev.Context()
    device = pyudev.Devices.from_sys_path(context, str(sys_path))
    return {str(key): str(device.properties[key]) for key in device.properties}


def _live_info(sys_path: Path, usage: SystemUsage) -> BlockDeviceInfo:
    properties = _udev_properties(sys_path)
    majmin = f"{properties.get('MAJOR', '')}:{properties.get('MINOR', '')}"
    disks = whole_disks_of(majmin) or {majmin}
    holds: set[Holds] = set()
    mounted: list[MountedPartition] = []
    for disk in disks:
        holds |= usage.holds.get(disk, frozenset())
        mounted += usage.mounted.get(disk, ())
    return device_info_from_record(
        properties, _sysfs_record(sys_path), mounted_partitions=mounted, holds=holds
    )


def list_disks(image: Path | None = None) -> list[BlockDeviceInfo]:
    """Every whole disk the kernel knows (type `disk` in udev), sorted by device path."""
    try:
        import pyudev
    except ImportError as exc:  # pragma: no cover
        raise HostError("pyudev is not installed", hint="run tools/setup") from exc
    usage = SystemUsage.scan(image)
    context = pyudev.Context()
    found = [
        _live_info(Path(device.sys_path), usage)
        for device in context.list_devices(subsystem="block", DEVTYPE="disk")
    ]
    return sorted(found, key=lambda info: _natural_key(info.path))


def _natural_key(text: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def describe_block_device(path: Path, image: Path | None = None) -> BlockDeviceInfo:
    """The BlockDeviceInfo of a block device node (a whole disk or a partition)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise TargetRefused(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISBLK(st.st_mode):
        raise TargetRefused(f"{path} is not a block device")
    majmin = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    sys_path = (SYS_DEV_BLOCK / majmin).resolve()
    if not sys_path.exists():
        raise HostError(
            f"{path}: the kernel has no sysfs entry {SYS_DEV_BLOCK / majmin}",
            hint="is /sys mounted?",
        )
    info = _live_info(sys_path, SystemUsage.scan(image))
    # Keep the name the user typed (a /dev/disk/by-id link reads better in messages).
    return BlockDeviceInfo(
        path=str(path),
        model=info.model,
        serial=info.serial,
        vendor=info.vendor,
        size_bytes=info.size_bytes,
        bus=info.bus,
        removable=info.removable,
        read_only=info.read_only,
        is_partition=info.is_partition,
        mounted_partitions=info.mounted_partitions,
        holds=info.holds,
    )
