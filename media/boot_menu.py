"""The installer medium's boot menu (screen 1): its entries, and how the live system learns
which one was chosen.

Both boot loaders (isolinux for BIOS, systemd-boot for UEFI) show the same entries with the
same titles for `MENU_TIMEOUT_SECONDS`, "Install Engine" the default. Each entry boots the
same kernel and initramfs; the entry travels on the kernel command line as
`engine.entry=<name>`, which the live init reads from /proc/cmdline. There is no "Upgrade"
entry: the install entry handles a fresh install and an upgrade alike.
"""

from __future__ import annotations

import enum

# Long enough to read the menu and press a key, short enough not to slow an unattended boot.
MENU_TIMEOUT_SECONDS = 3
ENTRY_OPTION = "engine.entry"
# The kernel command line of every entry; panic=-1 makes a broken initramfs reboot at once
# (QEMU runs with -no-reboot, so a test sees it stop), quiet keeps the kernel's messages off
# the serial console, which is slow under emulation. The kernel writes to both consoles: the
# screen's (tty0) and the serial one; the last named, ttyS0, is /dev/console.
KERNEL_OPTIONS = "console=tty0 console=ttyS0 panic=-1 quiet"


class BootEntry(enum.StrEnum):
    """The entries of the boot menu, in the order shown; the first is the default."""

    INSTALL = "install"
    CHECK = "check"

    @property
    def menu_title(self) -> str:
        return {
            BootEntry.INSTALL: "Install Engine",
            BootEntry.CHECK: "Check this medium, then install Engine",
        }[self]

    @property
    def kernel_options(self) -> str:
        return f"{KERNEL_OPTIONS} {ENTRY_OPTION}={self.value}"

    @property
    def checks_medium(self) -> bool:
        return self is BootEntry.CHECK


DEFAULT_ENTRY = BootEntry.INSTALL


def chosen_entry(cmdline: str) -> BootEntry:
    """The entry named on a kernel command line; the default when none (or an unknown one)
    is named, as a direct kernel boot has no menu."""
    for word in cmdline.split():
        key, _, value = word.partition("=")
        if key == ENTRY_OPTION and value in {entry.value for entry in BootEntry}:
            return BootEntry(value)
    return DEFAULT_ENTRY


__all__ = [
    "DEFAULT_ENTRY",
    "ENTRY_OPTION",
    "KERNEL_OPTIONS",
    "MENU_TIMEOUT_SECONDS",
    "BootEntry",
    "chosen_entry",
]
