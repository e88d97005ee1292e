"""Upgrade an A/B installation: the new Engine goes into the inactive slot, the old one stays.

Order of the steps, chosen so that a kill at any point leaves a disk that boots an Engine:
the status becomes "Signalled"; every boot entry of the inactive slot is removed (nothing can
boot it while it is rewritten); the slot is formatted, written and read back; its kernel and
initrd go to the ESP via temp name and rename; config and the shared VMs' PV driver version
are recorded (VM disk files are never opened); then the one switching step, a new boot entry
with one try (`engine-<gen>-<slot>+1-0.conf`, newest generation, so it boots next); and last
the status "Installed (Reboot Required)" with the pending slot. If the new slot fails its try,
systemd-boot moves its entry last and the old slot boots again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from disk_images.layout import PartitionRole, Slot
from disk_images.session import InstallationSession, open_installation
from disk_images.state import EngineConfig, EngineState, UpgradeStatus, VmKind
from enginekit.errors import InternalError
from enginekit.versions import DiskLayout, EngineVersion
from installer.engine import bootloader
from installer.engine.checkpoints import Checkpoint, StepTracker
from installer.engine.common import (
    SystemImage,
    install_systemd_boot,
    next_generation,
    retire_entries,
    systemd_boot_ok,
    verify_slot,
    write_entry,
    write_esp_kernel,
    write_slot,
)
from installer.engine.config import new_config
from installer.engine.refusals import Refused
from installer.plan import InstallPlan

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlotSwitch:
    """What an upgrade or repair did: the slot written and the entry that will boot it."""

    active_slot: Slot
    new_slot: Slot
    generation: int


def update_shared_vms(session: InstallationSession, image: SystemImage) -> None:
    """Record the new PV drivers in shared VMs Engine can run; touch nothing else."""
    target = EngineVersion.parse(image.version)
    for vm in session.read_vms():
        if vm.kind is not VmKind.SHARED:
            continue  # custom and local VMs: PV drivers upgraded by hand (guide, step 5)
        if EngineVersion.parse(vm.published_for) > target:
            continue  # will not run on this Engine; leave it as published
        if vm.pv_drivers == image.pv_drivers:
            continue
        session.write_vm(replace(vm, pv_drivers=image.pv_drivers))


def _write_and_switch(
    plan: InstallPlan,
    session: InstallationSession,
    image: SystemImage,
    state: EngineState,
    old_config: EngineConfig | None,
    new: Slot,
    tracker: StepTracker,
    *,
    repair: bool,
) -> int:
    """Everything between "Signalled" and the final status; returns the new generation.

    The boot entry is written last: whatever fails before it leaves the old slot booting.
    """
    tracker.reach(Checkpoint.RETIRE_ENTRY)
    esp = session.esp
    retire_entries(esp, new)
    if repair and not systemd_boot_ok(esp):
        install_systemd_boot(esp)

    tracker.reach(Checkpoint.MKFS)
    # Through the session, which refuses to format a slot whose files it has open.
    session.format(PartitionRole.for_slot(new))

    tracker.reach(Checkpoint.WRITE_SLOT)
    write_slot(session.slot(new), image, new, tracker.advance)
    tracker.reach(Checkpoint.VERIFY_SLOT)
    verify_slot(session.slot(new), image, new)

    tracker.reach(Checkpoint.WRITE_ESP_KERNEL)
    write_esp_kernel(esp, image, new)

    tracker.reach(Checkpoint.WRITE_CONFIG)
    config = new_config(plan, old_config)
    if config != old_config:
        session.write_config(config)

    tracker.reach(Checkpoint.UPDATE_VMS)
    if not repair:
        update_shared_vms(session, image)

    tracker.reach(Checkpoint.WRITE_BOOT_ENTRY)
    generation = next_generation(esp, state.generation)
    write_entry(esp, bootloader.new_entry(generation, new, counting=True), image.version)

    return generation


def upgrade_in_place(
    plan: InstallPlan,
    image: SystemImage,
    installed_version: str,
    tracker: StepTracker,
    *,
    repair: bool = False,
) -> SlotSwitch:
    """Write `image` into the inactive slot of the A/B disk `plan.target` and switch to it."""
    with open_installation(plan.target, writable=True, layout=DiskLayout.GPT_AB) as session:
        state = session.read_state()
        if state is None or state.active_slot is None:
            raise InternalError(f"{plan.target}: the probe found an installation but no state")
        active = state.active_slot
        new = active.other
        old_config = session.read_config()

        tracker.reach(Checkpoint.MARK_SIGNALLED)
        signalled = replace(state, upgrade_status=UpgradeStatus.SIGNALLED, pending_slot=None)
        session.write_state(signalled)

        try:
            generation = _write_and_switch(
                plan, session, image, state, old_config, new, tracker, repair=repair
            )
        except (Exception, KeyboardInterrupt) as exc:
            # Nothing was switched: the old slot still boots. An error is shown the way
            # Synchronizer shows it ("Failed"); a Ctrl-C is no failure (the user stopped a
            # run that can be run again), so the status goes back to what it was. Then the
            # exception goes on to the caller.
            stopped = isinstance(exc, KeyboardInterrupt)
            after = state if stopped else replace(signalled, upgrade_status=UpgradeStatus.FAILED)
            try:
                session.write_state(after)
            except Exception as nested:  # noqa: BLE001 - the first error is the one to report
                log.warning("could not record the failed upgrade: %s", nested)
            log.debug("upgrade of %s failed: %s", plan.target, exc)
            raise

        tracker.reach(Checkpoint.SET_STATUS)
        session.write_state(
            EngineState(
                active_slot=active,
                upgrade_status=UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
                generation=state.generation,
                pending_slot=new,
                previous_version=installed_version,
                install_complete=True,
            )
        )
    return SlotSwitch(active_slot=active, new_slot=new, generation=generation)


def refuse_mbr_upgrade(installed: str, target: str) -> Refused:
    return Refused(
        f"upgrading Engine {installed} (MBR disk) to {target} (MBR) is not supported: "
        "an MBR disk has one system slot and nothing to fall back to",
        hint="erase and reinstall with this medium (VMs on the disk are lost)",
    )
