"""The boot files the ISO builder adds next to a payload: isolinux for BIOS, a FAT ESP image
with systemd-boot for UEFI.

Both boot paths show the same menu (`media.boot_menu`) and start the payload's installer kernel
(`boot/vmlinuz`, `boot/initrd.img`) with each entry's command line. The ESP image is made
with `mkfs.vfat` and filled with mtools, so no mount (and no vfat driver in the host kernel)
is needed.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from enginekit.process import require_tool, run
from media.boot_menu import DEFAULT_ENTRY, MENU_TIMEOUT_SECONDS, BootEntry

ISOLINUX_BIN = Path("/usr/lib/ISOLINUX/isolinux.bin")
SYSLINUX_MODULES = Path("/usr/lib/syslinux/modules/bios")
LDLINUX_C32 = SYSLINUX_MODULES / "ldlinux.c32"
# The text menu module and the libraries it loads (syslinux 6).
MENU_MODULES = ("menu.c32", "libutil.c32", "libcom32.c32")
ISOHYBRID_MBR = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
SYSTEMD_BOOT_EFI = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")

MENU_TITLE = DEFAULT_ENTRY.menu_title

# Where the builder puts its own files on the medium (ISO paths, relative). All of them live
# under isolinux/, the one directory a payload leaves to the builder (media.manifest).
ISOLINUX_DIR = "isolinux"
ISOLINUX_BIN_PATH = "isolinux/isolinux.bin"
LDLINUX_PATH = "isolinux/ldlinux.c32"
ISOLINUX_CFG_PATH = "isolinux/isolinux.cfg"
BOOT_CATALOG_PATH = "isolinux/boot.cat"
ESP_IMAGE_PATH = "isolinux/efiboot.img"
MENU_MODULE_PATHS = tuple(f"{ISOLINUX_DIR}/{name}" for name in MENU_MODULES)
BUILDER_PATHS = (
    ISOLINUX_BIN_PATH,
    LDLINUX_PATH,
    *MENU_MODULE_PATHS,
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
    **{SYSLINUX_MODULES / name: "syslinux-common" for name in MENU_MODULES},
}


@dataclass(frozen=True)
class BootFiles:
    """Host paths of everything the builder adds to the medium for booting."""

    isolinux_bin: Path
    ldlinux_c32: Path
    menu_modules: tuple[Path, ...]  # in the order of MENU_MODULE_PATHS
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
    """isolinux.cfg: the boot menu (menu.c32) on the screen and the first serial port, the
    install entry booted when nobody presses a key within the timeout."""
    lines = [
        "SERIAL 0 115200",
        "UI menu.c32",
        f"DEFAULT {DEFAULT_ENTRY.value}",
        "PROMPT 0",
        f"TIMEOUT {MENU_TIMEOUT_SECONDS * 10}",  # tenths of a second
        "MENU TITLE Engine installer",
    ]
    for entry in BootEntry:
        lines += [
            f"LABEL {entry.value}",
            f"  MENU LABEL {entry.menu_title}",
            *(["  MENU DEFAULT"] if entry is DEFAULT_ENTRY else []),
            "  KERNEL /boot/vmlinuz",
            "  INITRD /boot/initrd.img",
            f"  APPEND {entry.kernel_options}",
        ]
    return "\n".join(lines) + "\n"


def loader_conf() -> str:
    """systemd-boot's loader.conf: the menu for the timeout, the install entry the default."""
    return f"timeout {MENU_TIMEOUT_SECONDS}\ndefault {entry_file(DEFAULT_ENTRY)}\n"


def entry_file(entry: BootEntry) -> str:
    """The name of `entry`'s file in loader/entries/ on the ESP."""
    return f"{entry.value}.conf"


def loader_entry(entry: BootEntry) -> str:
    """One systemd-boot entry; sort-key keeps the menu in BootEntry's order."""
    order = list(BootEntry).index(entry) + 1
    return (
        f"title {entry.menu_title}\n"
        f"sort-key {order}\n"
        "linux /boot/vmlinuz\n"
        "initrd /boot/initrd.img\n"
        f"options {entry.kernel_options}\n"
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
    for entry in BootEntry:
        (tree / "loader/entries" / entry_file(entry)).write_text(loader_entry(entry))
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
        menu_modules=tuple(SYSLINUX_MODULES / name for name in MENU_MODULES),
        isolinux_cfg=cfg,
        esp_image=esp,
        isohybrid_mbr=ISOHYBRID_MBR,
    )
