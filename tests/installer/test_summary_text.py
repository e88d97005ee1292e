"""The summary screen says in plain words where the new system goes and what is deleted."""

from __future__ import annotations

from pathlib import Path

from disk_images.layout import Slot
from disk_images.state import Registration, RegistrationMode, UpgradeStatus
from enginekit.versions import DiskLayout
from installer.frontends.api import Installer
from installer.model import InstalledEngine, MediumInfo, Screen, TargetInfo, VmSummary

DISK_ID = "0f3c2a4e-1b2d-4c5e-8f90-123456789abc"


def medium(version: str, upgrade_from: tuple[str, ...]) -> MediumInfo:
    return MediumInfo(
        path=Path(f"/media/engine-{version}.iso"),
        version=version,
        upgrade_from=upgrade_from,
        pv_drivers=version,
        layout=DiskLayout.GPT_AB,
        keyboards=("us",),
    )


def target(version: str, layout: DiskLayout, vms: int) -> TargetInfo:
    return TargetInfo(
        Path("/disks/engine.img"),
        8 << 30,
        DISK_ID if layout is DiskLayout.GPT_AB else "mbr-1a2b3c4d",
        InstalledEngine(
            version=version,
            layout=layout,
            active_slot=Slot.A if layout is DiskLayout.GPT_AB else None,
            upgrade_status=UpgradeStatus.BLANK,
            registration=Registration(RegistrationMode.STANDALONE),
            keyboard="us",
            vms=tuple(VmSummary(f"vm{i}", "local", version, version) for i in range(vms)),
        ),
    )


def summary(installer: Installer, action: str, **fields: str) -> str:
    installer.choose("install")
    installer.choose("next")
    installer.choose("accept")
    installer.choose("us")
    installer.choose(action, **fields)
    installer.choose("keep" if action != "erase" else "standalone")
    assert installer.screen is Screen.SUMMARY
    return installer.view.text


def test_the_mbr_to_gpt_upgrade_names_the_slot_the_new_system_goes_into() -> None:
    installer = Installer(medium("4.5.0", ("4.0.0",)), target("4.0.0", DiskLayout.MBR, 1))
    text = summary(installer, "upgrade")
    assert "slot the system partition" not in text
    assert "the new system goes into the new slot B (the old system stays in slot A" in text


def test_an_a_b_upgrade_goes_into_the_other_slot() -> None:
    installer = Installer(medium("5.0.0", ("4.5.0",)), target("4.5.0", DiskLayout.GPT_AB, 2))
    assert "the new system goes into slot B;" in summary(installer, "upgrade")


def test_deleting_one_vm_says_one_vm() -> None:
    installer = Installer(medium("5.0.0", ("4.5.0",)), target("4.5.0", DiskLayout.GPT_AB, 1))
    text = summary(installer, "erase", confirm_erase=DISK_ID)
    assert "and its 1 VM on disk" in text


def test_the_confirm_choice_names_the_run_the_plan_carries_out() -> None:
    """Upgrade now, Repair now, Erase and install now: the label follows the plan's mode."""
    for version, action, label in (
        ("4.5.0", "upgrade", "Upgrade now"),
        ("5.0.0", "repair", "Repair now"),
        ("4.5.0", "erase", "Erase and install now"),
    ):
        installer = Installer(medium("5.0.0", ("4.5.0",)), target(version, DiskLayout.GPT_AB, 1))
        fields = {"confirm_erase": DISK_ID} if action == "erase" else {}
        summary(installer, action, **fields)
        assert installer.plan().mode.value == action
        assert [c.label for c in installer.view.choices] == [label]
