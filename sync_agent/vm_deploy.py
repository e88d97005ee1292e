"""Deploying the VM image versions the server offers at check-in onto the computer's disk:
each offered version is written to `/vms/<name>/vm.json` as pending (downloaded, the VM must
restart to run it); with `restart`, pending versions become the running ones, with the PV
drivers the version carries (shared VMs) or the ones the VM already had (custom VMs, whose
drivers are upgraded by hand). A local VM of the same name is never replaced: that is a
failure the server shows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from disk_images.probe import Installation, VmInfo
from disk_images.session import open_installation
from disk_images.state import VmKind, VmRecord
from enginekit.versions import EngineVersion
from sync_server.schemas import VmOffer


@dataclass(frozen=True)
class VmDeployment:
    written: tuple[str, ...]  # "name: version N pending" / "name: version N running"
    failures: dict[str, str]


def _record(vm: VmInfo) -> VmRecord:
    return VmRecord(
        vm.name,
        VmKind(vm.kind),
        vm.pv_drivers,
        vm.published_for,
        vm.image_version,
        vm.pending_version,
    )


def _newer(a: str, b: str) -> str:
    return a if EngineVersion.parse(a) >= EngineVersion.parse(b) else b


def _planned(offer: VmOffer, vm: VmInfo | None, restart: bool) -> VmRecord | None:
    kind = VmKind(offer.kind)
    if vm is None:
        current = VmRecord(offer.name, kind, offer.pv_drivers, offer.published_for)
    else:
        current = _record(vm)
    if current.pending_version == offer.version and not restart:
        return None  # downloaded already; waits for the VM to restart
    if not restart:
        return replace(current, pending_version=offer.version)
    pv = (
        _newer(offer.pv_drivers, current.pv_drivers)
        if kind is VmKind.SHARED
        else current.pv_drivers
    )
    return replace(
        current,
        kind=kind,
        pv_drivers=pv,
        published_for=offer.published_for,
        image_version=offer.version,
        pending_version=None,
    )


def deploy_vms(
    disk: Path, installed: Installation, offers: list[VmOffer], *, restart: bool
) -> VmDeployment:
    on_disk = {vm.name: vm for vm in installed.vms}
    failures: dict[str, str] = {}
    plans: list[VmRecord] = []
    for offer in offers:
        vm = on_disk.get(offer.name)
        if vm is not None and vm.kind == VmKind.LOCAL:
            failures[offer.name] = (
                f"a local VM named {offer.name} is installed on this computer; "
                "Synchronizer does not replace it"
            )
            continue
        plan = _planned(offer, vm, restart)
        if plan is not None:
            plans.append(plan)
    if plans:
        with open_installation(disk, writable=True) as session:
            for record in plans:
                session.write_vm(record)
    written = tuple(
        f"{r.name}: version {r.pending_version} waits for the VM to restart"
        if r.pending_version is not None
        else f"{r.name}: version {r.image_version} running"
        for r in plans
    )
    return VmDeployment(written, failures)
