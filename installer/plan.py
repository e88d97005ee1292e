"""What the screens decide and the install engine carries out: the contract between them.

The screens (and every front end) only ever produce an `InstallPlan`; the engine
(`installer.engine.run_plan`) is the only code that writes to a disk, and it reports back an
`InstallReport`. The registration is `disk_images.state.Registration` (one definition for the
disk and the plan; re-exported here), whose token is an `enginekit.secret.Secret`: its
str/repr never show the value, so it cannot leak into logs, reports or recorded answers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from disk_images.state import Registration as Registration
from disk_images.state import RegistrationMode as RegistrationMode
from disk_images.state import UpgradeStatus
from enginekit.secret import Secret as Secret


class InstallMode(enum.StrEnum):
    FRESH = "fresh"  # blank disk, or no Engine found
    ERASE = "erase"  # Engine found, user chose to delete it and reinstall
    UPGRADE = "upgrade"  # Engine found, older version: new Engine into the inactive slot
    REPAIR = "repair"  # Engine found, same version: reinstall the inactive slot, keep data

    @property
    def confirm_label(self) -> str:
        """What the summary's confirm choice says for a run of this mode."""
        return {
            InstallMode.FRESH: "Install now",
            InstallMode.ERASE: "Erase and install now",
            InstallMode.UPGRADE: "Upgrade now",
            InstallMode.REPAIR: "Repair now",
        }[self]


@dataclass(frozen=True)
class InstallPlan:
    """Everything needed to carry out one run; produced by the screens, consumed by the engine.

    For UPGRADE and REPAIR, `keyboard` and `registration` of None mean "keep what the disk has".
    """

    medium: Path
    target: Path
    mode: InstallMode
    target_version: str
    source_version: str | None = None
    keyboard: str | None = None
    registration: Registration | None = None
    reboot: bool = False
    eula_accepted: bool = False
    # The disk id the user confirmed (ERASE) or saw (UPGRADE/REPAIR); the engine compares it
    # with its own probe under the disk lock and refuses a disk that changed since. Required
    # for ERASE of a disk that is not blank; None on a blank disk.
    expected_disk_id: str | None = None
    # The target is one of the computer's own disks (a block device), as the live installer
    # sees them; engine-install on the host installs into image files only.
    target_is_device: bool = False


@dataclass(frozen=True)
class VmNote:
    name: str
    kind: str
    message: str


@dataclass(frozen=True)
class InstallReport:
    plan: InstallPlan
    installed_version: str
    slot: str | None  # the slot written (None for MBR)
    upgrade_status: UpgradeStatus
    vm_notes: tuple[VmNote, ...] = field(default_factory=tuple)
    steps_done: tuple[str, ...] = field(default_factory=tuple)


# progress(step_name, fraction_done_of_whole_run 0..1)
ProgressCallback = Callable[[str, float], None]
