"""The upgrade rules of the Engine 5.0 upgrade guide, as pure functions.

`decide()` says which install modes a medium may use on a target (fresh, erase, upgrade,
repair) and, for each mode it cannot use, one clear line saying why. `vm_notes()` says what an
upgrade means for each VM on the disk. The installer screens use both to build their choices,
and the install engine calls `require_allowed()` again as a final guard before writing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from disk_images.state import VmKind
from enginekit.errors import UserInputError
from enginekit.versions import DiskLayout, EngineVersion
from installer.plan import InstallMode, VmNote


class InstallRefused(UserInputError):
    """The medium may not be used this way on this target (a downgrade, a skipped version...)."""


@dataclass(frozen=True)
class Decision:
    """What the installer may do with one medium on one target.

    `allowed` is in the order the existing-installation screen offers the modes (the
    recommended one first). `refused` maps each mode that makes sense for the target but is
    not allowed to the one line that says why, with `hints` saying what to do instead.
    """

    medium_version: str
    installed_version: str | None
    allowed: tuple[InstallMode, ...]
    refused: dict[InstallMode, str] = field(default_factory=dict)
    hints: dict[InstallMode, str] = field(default_factory=dict)
    layout_change: tuple[DiskLayout, DiskLayout] | None = None

    @property
    def installation_found(self) -> bool:
        return self.installed_version is not None

    def allows(self, mode: InstallMode) -> bool:
        return mode in self.allowed

    def refusal(self, mode: InstallMode) -> str | None:
        """Why `mode` is not allowed, or None if it is."""
        if mode in self.allowed:
            return None
        if mode in self.refused:
            return self.refused[mode]
        if mode is InstallMode.FRESH:
            return (
                f"the target already holds Engine {self.installed_version}; "
                "choose upgrade, repair or erase"
            )
        if mode in (InstallMode.UPGRADE, InstallMode.REPAIR, InstallMode.ERASE):
            return f"there is no Engine installation on the target to {mode.value}"
        return f"{mode.value} is not possible here"  # pragma: no cover - all modes handled


def _parse(version: str | EngineVersion) -> EngineVersion:
    return version if isinstance(version, EngineVersion) else EngineVersion.parse(version)


def _stepping_stone(
    installed: EngineVersion, medium: EngineVersion, upgrade_from: Sequence[EngineVersion]
) -> EngineVersion | None:
    """The version to upgrade to first: the oldest the medium accepts that is newer than ours."""
    newer = sorted(v for v in upgrade_from if installed < v < medium)
    return newer[0] if newer else None


def decide(
    medium_version: str | EngineVersion,
    upgrade_from: Iterable[str | EngineVersion],
    installed: str | EngineVersion | None,
    installed_layout: DiskLayout | str | None = None,
    *,
    medium_layout: DiskLayout | str = DiskLayout.GPT_AB,
    other_data: str | None = None,
) -> Decision:
    """The install modes `medium_version` may use on a target holding `installed` (None: none).

    - no Engine on the target and `other_data` None (a blank disk): fresh install only;
    - no Engine but something else (`other_data` is the probe's reason: a foreign table, a
      damaged GPT, a filesystem, an incomplete install...): erase only, never a silent fresh
      install over data;
    - installed version in `upgrade_from`: upgrade (recommended) or erase;
    - same version: repair (reinstall the system slot, keep data) or erase;
    - older but not in `upgrade_from` (4.0.0 with a 5.0.0 medium): upgrade refused, the line
      names the version to go through first; erase stays possible;
    - newer than the medium: downgrade refused; erase stays possible.
    """
    medium = _parse(medium_version)
    sources = [_parse(v) for v in upgrade_from]
    if installed is None and other_data:
        return Decision(
            str(medium),
            None,
            allowed=(InstallMode.ERASE,),
            refused={
                InstallMode.FRESH: (
                    f"the target holds data but no Engine installation ({other_data}); "
                    "choose erase and confirm the disk id"
                )
            },
            hints={InstallMode.FRESH: 'use action = "erase" with confirm_erase = "<disk id>"'},
        )
    if installed is None:
        return Decision(str(medium), None, allowed=(InstallMode.FRESH,))
    current = _parse(installed)
    layout_change = None
    if installed_layout is not None and DiskLayout(installed_layout) != DiskLayout(medium_layout):
        layout_change = (DiskLayout(installed_layout), DiskLayout(medium_layout))
    refused: dict[InstallMode, str] = {}
    hints: dict[InstallMode, str] = {}
    allowed: tuple[InstallMode, ...]
    if current == medium:
        allowed = (InstallMode.REPAIR, InstallMode.ERASE)
        refused[InstallMode.UPGRADE] = (
            f"the target already runs Engine {current}, the medium's version; "
            "choose repair to reinstall it"
        )
        hints[InstallMode.UPGRADE] = 'use action = "repair" (keeps VMs and settings)'
    elif current in sources:
        allowed = (InstallMode.UPGRADE, InstallMode.ERASE)
        refused[InstallMode.REPAIR] = (
            f"repair needs a medium of the installed version {current}; this medium is {medium}"
        )
        hints[InstallMode.REPAIR] = 'use action = "upgrade"'
    elif current > medium:
        allowed = (InstallMode.ERASE,)
        refused[InstallMode.UPGRADE] = (
            f"Engine {current} is newer than this medium's {medium}; a downgrade is not possible"
        )
        hints[InstallMode.UPGRADE] = (
            f"use a medium of Engine {current} or newer, or erase the disk and reinstall"
        )
    else:
        allowed = (InstallMode.ERASE,)
        stone = _stepping_stone(current, medium, sources)
        if stone is not None:
            refused[InstallMode.UPGRADE] = (
                f"Engine {current} cannot be upgraded to {medium} directly; "
                f"upgrade {current} to {stone} first"
            )
            hints[InstallMode.UPGRADE] = f"boot the Engine {stone} medium and upgrade with it"
        else:
            accepted = ", ".join(str(v) for v in sources) or "none"
            refused[InstallMode.UPGRADE] = (
                f"this {medium} medium cannot upgrade Engine {current} "
                f"(it upgrades only from: {accepted})"
            )
            hints[InstallMode.UPGRADE] = "use a medium that upgrades your version"
    if InstallMode.REPAIR not in allowed and InstallMode.REPAIR not in refused:
        refused[InstallMode.REPAIR] = (
            f"repair needs a medium of the installed version {current}; this medium is {medium}"
        )
        hints[InstallMode.REPAIR] = f"use the Engine {current} medium to repair"
    return Decision(
        str(medium),
        str(current),
        allowed=allowed,
        refused=refused,
        hints=hints,
        layout_change=layout_change,
    )


def require_allowed(decision: Decision, mode: InstallMode) -> None:
    """Raise InstallRefused (one line plus a hint) unless `decision` allows `mode`."""
    reason = decision.refusal(mode)
    if reason is not None:
        raise InstallRefused(reason, hint=decision.hints.get(mode))


class VmLike(Protocol):
    """What `vm_notes` needs to know of a VM (disk_images.probe.VmInfo has these)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def pv_drivers(self) -> str: ...
    @property
    def published_for(self) -> str: ...


def vm_note(vm: VmLike, target_version: str, target_pv_drivers: str) -> VmNote:
    """What upgrading to `target_version` means for one VM (the guide's rules)."""
    target = _parse(target_version)
    try:
        published = _parse(vm.published_for)
    except UserInputError:
        published = None
    if published is not None and published > target:
        message = (
            f"published for Engine {published}; it will not run on Engine {target} "
            "until this computer runs that version"
        )
    elif vm.pv_drivers == target_pv_drivers:
        message = f"{vm.kind} VM: PV drivers are already at {target_pv_drivers}"
    elif vm.kind == VmKind.SHARED:
        message = (
            f"shared VM: Engine updates its PV drivers from {vm.pv_drivers} to "
            f"{target_pv_drivers} automatically"
        )
    elif vm.kind in (VmKind.CUSTOM, VmKind.LOCAL):
        message = (
            f"{vm.kind} VM: upgrade its PV drivers from {vm.pv_drivers} to "
            f"{target_pv_drivers} by hand (upgrade guide, step 5)"
        )
    else:
        message = f"unknown VM kind {vm.kind!r}: check its PV drivers by hand"
    return VmNote(name=vm.name, kind=vm.kind, message=message)


def vm_notes(
    vms: Iterable[VmLike], target_version: str, target_pv_drivers: str
) -> tuple[VmNote, ...]:
    """One note per VM, in name order, for an upgrade or repair to `target_version`."""
    return tuple(
        vm_note(vm, target_version, target_pv_drivers) for vm in sorted(vms, key=lambda v: v.name)
    )
