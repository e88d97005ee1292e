"""Boot an installed Engine disk in QEMU and complete its first boot, like systemd-bless-boot.

The disk boots as a virtio disk, NOT in snapshot mode: systemd-boot's boot counting renames
entries on the real ESP (`engine-2-b+1-0.conf` -> `engine-2-b+0-1.conf`), and that rename is how
a failed new slot falls back to the old one. After the installed Engine prints
`ENGINE RUNNING version=<v> slot=<A|B> vms=<n>`, the first boot is completed on the image: the
booted entry is blessed (its `+tries-done` suffix renamed away), the booted slot becomes the
active one and the upgrade status becomes Blank. If a pending slot does not boot, the disk is
booted again right away (same call) so systemd-boot falls back to the old slot, and the status
becomes "Failed".

This module also owns the boot entry names, `engine-<generation>-<slot>[+<tries>-<done>].conf`,
and the order systemd-boot gives them, because both the install engine and this module need them.
"""

from __future__ import annotations

from collections.abc import Iterable

from disk_images.layout import BootEntryName, Slot


def boot_order(names: Iterable[BootEntryName]) -> list[BootEntryName]:
    """The order systemd-boot lists the entries in; with `default engine-*` the first boots.

    Entries with no tries left go last; otherwise ids compare version-aware, newest first
    (systemd-boot's `-strverscmp_improved(a->id, b->id)` for entries without a sort-key).
    """
    return sorted(names, key=lambda n: (n.tries_left == 0, -n.generation, n.slot is Slot.A))
