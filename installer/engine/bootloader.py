"""What the engine writes for the bootloaders: systemd-boot on the ESP, extlinux on MBR disks.

systemd-boot picks `default engine-*` among entries sorted newest generation first, with
entries that have no tries left moved to the end; writing a new entry named
`engine-<generation>-<slot>+1-0.conf` is therefore the single step that switches the next boot
to a new slot, and a failed try makes the next boot fall back by itself. The 4.0.0 MBR layout
boots extlinux from its one system partition, always with `engine.slot=A`.
"""

from __future__ import annotations

from pathlib import Path

from disk_images.layout import BootEntryName, Slot, esp_slot_dir
from enginekit.errors import HostError

SYSTEMD_BOOT_EFI = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
SYSLINUX_MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initrd.img"
# panic=-1: a kernel that cannot start its init reboots at once, so a broken slot costs one
# short boot attempt (QEMU runs with -no-reboot and stops there).
KERNEL_OPTIONS = "console=ttyS0,115200 panic=-1 quiet"


def host_file(path: Path, package: str) -> bytes:
    """A bootloader file the host provides, or a HostError naming the package."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise HostError(
            f"{path} is missing", hint=f"run tools/setup (or: apt-get install {package})"
        ) from None


def systemd_boot_binary() -> bytes:
    return host_file(SYSTEMD_BOOT_EFI, "systemd-boot-efi")


def syslinux_mbr() -> bytes:
    return host_file(SYSLINUX_MBR, "syslinux-common")


def loader_conf() -> bytes:
    return b"default engine-*\ntimeout 0\neditor no\n"


def kernel_cmdline(slot: Slot) -> str:
    return f"{KERNEL_OPTIONS} engine.slot={slot.value}"


def esp_kernel_path(slot: Slot) -> str:
    return f"{esp_slot_dir(slot)}/{KERNEL_NAME}"


def esp_initrd_path(slot: Slot) -> str:
    return f"{esp_slot_dir(slot)}/{INITRD_NAME}"


def entry_text(version: str, slot: Slot) -> bytes:
    """A systemd-boot Type #1 entry for `slot` running Engine `version`."""
    return (
        f"title Engine {version} (slot {slot.value})\n"
        f"linux {esp_kernel_path(slot)}\n"
        f"initrd {esp_initrd_path(slot)}\n"
        f"options {kernel_cmdline(slot)}\n"
    ).encode()


def new_entry(generation: int, slot: Slot, counting: bool) -> BootEntryName:
    """The entry name for a freshly written slot; `counting` gives it one try to prove itself."""
    if counting:
        return BootEntryName(generation, slot, tries_left=1, tries_done=0)
    return BootEntryName(generation, slot)


def extlinux_conf(version: str) -> bytes:
    return (
        "DEFAULT engine\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "SERIAL 0 115200\n"
        f"LABEL engine\n"
        f"  MENU LABEL Engine {version}\n"
        f"  KERNEL /boot/{KERNEL_NAME}\n"
        f"  INITRD /boot/{INITRD_NAME}\n"
        f"  APPEND {kernel_cmdline(Slot.A)}\n"
    ).encode()
