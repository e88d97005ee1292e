"""Busybox initramfs images for the reference Engine: the installer's and the installed system's.

Images are gzip'd newc cpio archives written by a small pure-Python writer, so they are
byte-for-byte deterministic (no mtimes, owners or inode numbers from the host) and can hold
device nodes like /dev/console without root. The installer init prints the installer marker
line; the installed Engine's init reads its own disk and prints `ENGINE RUNNING ...`.
"""

from __future__ import annotations

import gzip
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from enginekit.errors import HostError, InternalError, MissingCapability
from enginekit.versions import EngineVersion
from reference_builds.kernel import Kernel

BUSYBOX = Path("/usr/bin/busybox")
# The applets the two init scripts use; each becomes a /bin symlink to busybox.
APPLETS = (
    "sh", "cat", "dmesg", "echo", "findfs", "head", "insmod", "ls", "mkdir", "mount",
    "poweroff", "sed", "sleep", "sync", "tail", "umount", "usleep",
)  # fmt: skip
BASE_DIRS = ("bin", "dev", "lib", "lib/modules", "mnt", "mnt/slot", "mnt/storage", "proc", "sys")

INSTALLER_MARKER = "ENGINE INSTALLER BOOTED version={version} firmware={firmware}"
RUNNING_MARKER = "ENGINE RUNNING version={version} slot={slot} vms={vms}"
FAILED_MARKER = "ENGINE BOOT FAILED reason={reason}"
SLOT_LABELS = {"A": "engine-sys-a", "B": "engine-sys-b"}
STORAGE_LABEL = "engine-storage"


@dataclass(frozen=True)
class CpioEntry:
    """One member of a newc archive. `data` is the file contents or the symlink target."""

    path: str
    mode: int  # file type and permission bits, as in st_mode
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


class NewcArchive:
    """An in-memory newc ("070701") cpio archive, as the kernel unpacks into its rootfs.

    Every owner is root, every mtime is 0 and inode numbers count up from 1, so the same
    members always give the same bytes.
    """

    def __init__(self) -> None:
        self._entries: dict[str, CpioEntry] = {}

    def _add(self, entry: CpioEntry) -> None:
        if entry.path in self._entries:
            raise InternalError(f"initramfs: {entry.path} added twice")
        self._entries[entry.path] = entry

    def add_dir(self, path: str, perm: int = 0o755) -> None:
        self._add(CpioEntry(path, stat.S_IFDIR | perm))

    def add_file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        self._add(CpioEntry(path, stat.S_IFREG | perm, data))

    def add_symlink(self, path: str, target: str) -> None:
        self._add(CpioEntry(path, stat.S_IFLNK | 0o777, target.encode()))

    def add_char_device(self, path: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._add(CpioEntry(path, stat.S_IFCHR | perm, rdev=(major, minor)))

    def to_bytes(self) -> bytes:
        out = bytearray()
        for ino, entry in enumerate(self._entries.values(), start=1):
            nlink = 2 if stat.S_ISDIR(entry.mode) else 1
            _append_member(out, entry.path, ino, entry.mode, nlink, entry.data, entry.rdev)
        _append_member(out, "TRAILER!!!", 0, 0, 1, b"", (0, 0))
        # The kernel reads the archive in 512-byte blocks; pad like cpio(1) does.
        out += b"\0" * (-len(out) % 512)
        return bytes(out)


def _pad4(out: bytearray) -> None:
    out += b"\0" * (-len(out) % 4)


def _append_member(
    out: bytearray, name: str, ino: int, mode: int, nlink: int, data: bytes, rdev: tuple[int, int]
) -> None:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
    out += b"070701" + b"".join(b"%08X" % f for f in fields)
    out += encoded
    _pad4(out)
    out += data
    _pad4(out)


def gzip_deterministic(data: bytes) -> bytes:
    """gzip with a zero timestamp and no file name, so equal input gives equal output."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def _is_static_elf(blob: bytes) -> bool:
    """True for a 64-bit little-endian ELF without a PT_INTERP (dynamic loader) header."""
    if blob[:4] != b"\x7fELF" or blob[4] != 2 or blob[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", blob, 0x20)  # fmt: skip
    phentsize, phnum = struct.unpack_from("<HH", blob, 0x36)
    for i in range(phnum):
        (p_type,) = struct.unpack_from("<I", blob, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def busybox_binary(path: Path = BUSYBOX) -> bytes:
    """The statically linked busybox from Debian's busybox-static, or a HostError."""
    hint = "run tools/setup (or: apt-get install busybox-static)"
    if not path.is_file():
        raise MissingCapability(f"{path} is missing", hint=hint)
    blob = path.read_bytes()
    if not _is_static_elf(blob):
        raise HostError(f"{path} is not a statically linked x86-64 busybox", hint=hint)
    return blob


def _base_archive() -> NewcArchive:
    archive = NewcArchive()
    for directory in BASE_DIRS:
        archive.add_dir(directory)
    # The kernel opens /dev/console for init's stdin/stdout/stderr before anything is
    # mounted; without this node the marker line would go nowhere.
    archive.add_char_device("dev/console", 5, 1)
    archive.add_char_device("dev/null", 1, 3, 0o666)
    archive.add_file("bin/busybox", busybox_binary(), 0o755)
    for applet in APPLETS:
        archive.add_symlink(f"bin/{applet}", "busybox")
    return archive


_PREAMBLE = """\
#!/bin/sh
# {title}, generated by EngineKit (reference_builds.initramfs).
export PATH=/bin

halt_now() {{
    sync
    poweroff -f
    # poweroff should not return; if it does, make the kernel do it.
    echo o > /proc/sysrq-trigger
    sleep 30
}}

fail() {{
    dmesg 2>/dev/null | tail -n 5
    echo "{failed}"
    halt_now
}}

mount -t proc proc /proc || fail mount-proc
mount -t sysfs sysfs /sys || fail mount-sysfs
# Keep kernel messages from splitting the marker line on the serial console.
echo 1 > /proc/sys/kernel/printk
"""


def installer_init_script(version: str | EngineVersion) -> str:
    """The installer's /init: print the marker line with the firmware type, power off."""
    checked = EngineVersion.parse(str(version))  # also keeps shell syntax out of the script
    marker = INSTALLER_MARKER.format(version=checked, firmware="$firmware")
    return (
        _PREAMBLE.format(
            title=f"Engine {checked} installer init",
            failed=FAILED_MARKER.format(reason="$1"),
        )
        + f"""
if [ -d /sys/firmware/efi ]; then firmware=uefi; else firmware=bios; fi
# The boot menu leaves the cursor on its last line: the marker starts a line of its own.
echo
echo "{marker}"
halt_now
"""
    )


def engine_init_script(module_names: tuple[str, ...]) -> str:
    """The installed Engine's /init: find its slot and storage by label, report, power off."""
    for name in module_names:
        if not name.replace("_", "").replace("-", "").isalnum():
            raise InternalError(f"initramfs: odd kernel module name {name!r}")
    running = RUNNING_MARKER.format(version="$version", slot="$slot", vms="$vms")
    return (
        _PREAMBLE.format(title="Engine system init", failed=FAILED_MARKER.format(reason="$1"))
        + f"""mount -t devtmpfs devtmpfs /dev || fail mount-devtmpfs

for module in {" ".join(module_names)}; do
    insmod "/lib/modules/$module.ko" || fail "insmod-$module"
done

slot=
for word in $(cat /proc/cmdline); do
    case "$word" in
        engine.slot=*) slot="${{word#engine.slot=}}" ;;
    esac
done
case "$slot" in
    A) slot_label={SLOT_LABELS["A"]} ;;
    B) slot_label={SLOT_LABELS["B"]} ;;
    "") fail no-engine.slot-on-cmdline ;;
    *) fail "bad-engine.slot-$slot" ;;
esac

# find_label LABEL TRIES: the device with that filesystem label, polling every 0.1 s.
find_label() {{
    tries=$2
    while :; do
        dev=$(findfs "LABEL=$1" 2>/dev/null)
        if [ -n "$dev" ]; then echo "$dev"; return 0; fi
        [ "$tries" -le 0 ] && return 1
        tries=$((tries - 1))
        usleep 100000
    done
}}

# The disk may take a while to appear; once the slot is there, the partition table has
# been read, so the storage partition gets only a short grace period.
slot_dev=$(find_label "$slot_label" 100) || fail "no-partition-$slot_label"
storage_dev=$(find_label {STORAGE_LABEL} 10) || fail no-partition-{STORAGE_LABEL}

mount -t ext4 -o ro "$slot_dev" /mnt/slot || fail mount-slot
mount -t ext4 -o ro "$storage_dev" /mnt/storage || fail mount-storage

[ -f /mnt/slot/engine-release ] || fail no-engine-release
version=$(sed -n 's/.*"version"[[:space:]]*:[[:space:]]*"\\([^"]*\\)".*/\\1/p' \\
    /mnt/slot/engine-release | head -n 1)
[ -n "$version" ] || fail no-version-in-engine-release

vms=0
for vm in /mnt/storage/vms/*/vm.json; do
    [ -f "$vm" ] && vms=$((vms + 1))
done

umount /mnt/storage
umount /mnt/slot
echo "{running}"
halt_now
"""
    )


def installer_initramfs(version: str | EngineVersion) -> bytes:
    """The installer medium's initrd (gzip'd newc cpio) for `version`."""
    archive = _base_archive()
    archive.add_file("init", installer_init_script(version).encode(), 0o755)
    return gzip_deterministic(archive.to_bytes())


def _module_name(path: Path) -> str:
    return path.name.split(".ko")[0]


def engine_initramfs(kernel: Kernel) -> bytes:
    """The installed Engine's initrd: busybox, `kernel.modules` and the system init.

    It does not depend on the Engine version: the init reads the version from its slot.
    """
    archive = _base_archive()
    names = []
    for module in kernel.modules:
        name = _module_name(module)
        if not module.name.endswith(".ko"):
            raise HostError(
                f"{module}: compressed kernel modules are not supported",
                hint="busybox insmod needs plain .ko files; rerun tools/setup",
            )
        archive.add_file(f"lib/modules/{name}.ko", module.read_bytes())
        names.append(name)
    archive.add_file("init", engine_init_script(tuple(names)).encode(), 0o755)
    return gzip_deterministic(archive.to_bytes())
