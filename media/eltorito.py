"""The boot files the ISO builder adds next to a payload: isolinux for BIOS, a FAT ESP image
with systemd-boot for UEFI.

Both boot paths start the payload's installer kernel (`boot/vmlinuz`, `boot/initrd.img`) with
the same command line. The ESP image is made with `mkfs.vfat` and filled with mtools, so no
mount (and no vfat driver in the host kernel) is needed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from enginekit.process import require_tool, run

ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")
LDLINUX_C32 = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
ISOHYBRID_MBR = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
SYSTEMD_BOOT_EFI = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")

# The installer's kernel command line, the same on every boot path. panic=-1 makes a broken
# initramfs reboot at once (QEMU runs with -no-reboot, so the test sees it stop).
KERNEL_OPTIONS = "console=ttyS0 panic=-1"
MENU_TITLE = "Install Engine"

# Where the builder puts its own files on the medium (ISO paths, relative). All of them live
# under isolinux/, the one directory a payload leaves to the builder (media.manifest).
ISOLINUX_DIR = "isolinux"
ISOLINUX_BIN_PATH = "isolinux/isolinux.bin"
LDLINUX_PATH = "isolinux/ldlinux.c32"
ISOLINUX_CFG_PATH = "isolinux/isolinux.cfg"
BOOT_CATALOG_PATH = "isolinux/boot.cat"
ESP_IMAGE_PATH = "isolinux/efiboot.img"
BUILDER_PATHS = (
    ISOLINUX_BIN_PATH,
    LDLINUX_PATH,
    ISOLINUX_CFG_PATH,
    BOOT_CATALOG_PATH,
    ESP_IMAGE_PATH,
)

_MIB = 1024 * 1024
_HOST_FILES = {
    ISOLINUX_BIN: "isolinux",
    LDLINUX_C32: "syslinux-common",
    ISOHYBRID_MBR: "isolinux",
    SYSTEMD_BOOT_EFI: "systemd-boot-efi",
}


@dataclass(frozen=True)
class BootFiles:
    """Host paths of everything the builder adds to the medium for booting."""

    isolinux_bin: Path
    ldlinux_c32: Path
    isolinux_cfg: Path
    esp_image: Path
    isohybrid_mbr: Path


def check_host_boot_files() -> None:
    """Raise HostError naming the Debian package if a boot loader file is missing."""
    from enginekit.errors import HostError

    for path, package in _HOST_FILES.items():
        if not path.is_file():
            raise HostError(
                f"{path} is missing", hint=f"run tools/setup (or: apt-get install {package})"
            )


def isolinux_config() -> str:
    """isolinux.cfg: one entry, no prompt, console on the first serial port."""
    return (
        "SERIAL 0 115200\n"
        "DEFAULT install\n"
        "PROMPT 0\n"
        "TIMEOUT 0\n"
        "LABEL install\n"
        f"  MENU LABEL {MENU_TITLE}\n"
        "  KERNEL /boot/vmlinuz\n"
        "  INITRD /boot/initrd.img\n"
        f"  APPEND {KERNEL_OPTIONS}\n"
    )


def loader_conf() -> str:
    # Only one entry exists, so it boots whether or not `default` matches the id form of
    # this systemd-boot version.
    return "timeout 0\ndefault install.conf\n"


def install_entry() -> str:
    return (
        f"title {MENU_TITLE}\n"
        "linux /boot/vmlinuz\n"
        "initrd /boot/initrd.img\n"
        f"options {KERNEL_OPTIONS}\n"
    )


def esp_image_size(payload_bytes: int) -> int:
    """Bytes for a FAT image holding `payload_bytes` of files: FAT and directory overhead
    plus slack, rounded up to whole MiB (at least 4 MiB so FAT is not cramped)."""
    wanted = payload_bytes + payload_bytes // 16 + 2 * _MIB
    return max(4 * _MIB, -(-wanted // _MIB) * _MIB)


def make_esp_image(image: Path, vmlinuz: Path, initrd: Path) -> Path:
    """Create the UEFI boot image: systemd-boot as the removable-media loader, its config,
    and copies of the installer kernel and initramfs."""
    mkfs = require_tool("mkfs.vfat", "dosfstools")
    mcopy = require_tool("mcopy", "mtools")
    # Stage the tree with its final names (hard links where possible, no copying), then
    # copy it into the FAT image in one recursive mcopy.
    tree = image.parent / "esp-tree"
    shutil.rmtree(tree, ignore_errors=True)
    for rel, source in (
        ("EFI/BOOT/BOOTX64.EFI", SYSTEMD_BOOT_EFI),
        ("boot/vmlinuz", vmlinuz),
        ("boot/initrd.img", initrd),
    ):
        _link_or_copy(source, tree / rel)
    (tree / "loader/entries").mkdir(parents=True)
    (tree / "loader/loader.conf").write_text(loader_conf())
    (tree / "loader/entries/install.conf").write_text(install_entry())
    payload = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    size = esp_image_size(payload)
    image.unlink(missing_ok=True)
    run([mkfs, "-C", "-n", "ENGINE-EFI", image, str(size // 1024)])
    run([mcopy, "-s", "-Q", f"-i{image}", *sorted(tree.iterdir()), "::"])
    shutil.rmtree(tree)
    return image


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed: copy instead
        shutil.copyfile(source, target)


def prepare_boot_files(work: Path, vmlinuz: Path, initrd: Path) -> BootFiles:
    """Write isolinux.cfg and the ESP image into `work` and name the host boot files."""
    check_host_boot_files()
    cfg = work / "isolinux.cfg"
    cfg.write_text(isolinux_config())
    esp = make_esp_image(work / "efiboot.img", vmlinuz, initrd)
    return BootFiles(
        isolinux_bin=ISOLINUX_BIN,
        ldlinux_c32=LDLINUX_C32,
        isolinux_cfg=cfg,
        esp_image=esp,
        isohybrid_mbr=ISOHYBRID_MBR,
    )
