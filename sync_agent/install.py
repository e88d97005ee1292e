"""Install a downloaded kit the way the installer's unattended upgrade does: an `InstallPlan`
in mode upgrade (keyboard and registration kept), carried out by `installer.engine.run_plan`
with its checks, checkpoints and kill safety. No screens: Synchronizer's assignment is the
operator's decision, made with the same upgrade rules.
"""

from __future__ import annotations

from pathlib import Path

from disk_images.probe import Installation
from installer.engine import run_plan
from installer.plan import InstallMode, InstallPlan, InstallReport, ProgressCallback
from media.reader import MediumReader


def upgrade_plan(disk: Path, kit: Path, installed: Installation) -> InstallPlan:
    with MediumReader.open(kit) as medium:
        version = str(medium.manifest.version)
    return InstallPlan(
        medium=kit,
        target=disk,
        mode=InstallMode.UPGRADE,
        target_version=version,
        source_version=installed.version,
        eula_accepted=True,  # accepted by the operator who assigned the kit
        expected_disk_id=installed.disk_id,
    )


def install_kit(
    disk: Path, kit: Path, installed: Installation, progress: ProgressCallback | None = None
) -> InstallReport:
    return run_plan(upgrade_plan(disk, kit, installed), progress)
