"""Reference Engine installations on disk images, built through the real fresh-install path.

`create_reference_disk(path, version)` makes a blank sparse image, installs the reference
medium of `version` on it with `installer.engine.run_plan` (keyboard `us`, standalone), then
adds the sample VMs the upgrade tests need: two shared, one custom, one local, each a
`vm.json` and a sparse `disk.img` (256 MiB apparent, a few KiB of known data at known offsets,
so a test can prove an upgrade never rewrote them).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from disk_images.image import new_image
from disk_images.layout import vm_disk_path
from disk_images.session import open_installation
from disk_images.state import VmKind, VmRecord
from enginekit.errors import UserInputError
from enginekit.sizes import human_size, parse_size
from installer.engine import run_plan
from installer.engine.refusals import MINIMUM_DISK_BYTES
from installer.plan import InstallMode, InstallPlan, Registration, RegistrationMode
from reference_builds.builds import reference_build

VM_DISK_APPARENT = 256 * 1024 * 1024
# Where the sample data sits in each VM disk: start, middle (odd offset), end.
VM_DATA_OFFSETS = (0, 100 * 1024 * 1024 + 4096 * 3 + 17, VM_DISK_APPARENT - 4096)
VM_DATA_LEN = 4096


@dataclass(frozen=True)
class SampleVm:
    name: str
    kind: VmKind


SAMPLE_VMS = (
    SampleVm("office-shared", VmKind.SHARED),
    SampleVm("training-shared", VmKind.SHARED),
    SampleVm("finance-custom", VmKind.CUSTOM),
    SampleVm("lab-local", VmKind.LOCAL),
)


def sample_vm_bytes(name: str, index: int) -> bytes:
    """The known data block `index` of VM `name` (deterministic, distinct per VM and block)."""
    out = bytearray()
    counter = 0
    while len(out) < VM_DATA_LEN:
        out += hashlib.sha256(f"{name}:{index}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:VM_DATA_LEN])


def write_sparse_vm_disk(path: Path, name: str, apparent: int = VM_DISK_APPARENT) -> None:
    """A sparse file of `apparent` bytes with the known blocks of `name` at their offsets."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.ftruncate(fd, apparent)
        for index, offset in enumerate(VM_DATA_OFFSETS):
            if offset + VM_DATA_LEN <= apparent:
                os.pwrite(fd, sample_vm_bytes(name, index), offset)
    finally:
        os.close(fd)


def add_sample_vms(
    disk: Path,
    version: str,
    vms: tuple[SampleVm, ...] = SAMPLE_VMS,
    apparent: int = VM_DISK_APPARENT,
) -> None:
    """Add `vms` to the installation on `disk`, published for (and with PV drivers of)
    `version`."""
    pv = reference_build(version).pv_drivers
    with (
        tempfile.TemporaryDirectory(prefix="enginekit-vms-") as tmp,
        open_installation(disk, writable=True) as session,
    ):
        for vm in vms:
            record = VmRecord(vm.name, vm.kind, pv_drivers=pv, published_for=version)
            session.write_vm(record)
            host = Path(tmp) / f"{vm.name}.img"
            write_sparse_vm_disk(host, vm.name, apparent)
            session.storage.copy_in(host, vm_disk_path(vm.name))
            host.unlink()


def create_reference_disk(
    path: Path,
    version: str,
    size: str | int = "8G",
    *,
    with_vms: bool = True,
    force: bool = False,
) -> Path:
    """A reference installation of Engine `version` on a new sparse image at `path`."""
    from reference_builds.media import reference_iso

    build = reference_build(version)
    size_bytes = parse_size(size) if isinstance(size, str) else size
    if size_bytes < MINIMUM_DISK_BYTES:
        raise UserInputError(
            f"{path}: {human_size(size_bytes)} is too small for Engine "
            f"(at least {human_size(MINIMUM_DISK_BYTES)})",
            hint="use --size 8G (or at least 512M)",
        )
    medium = reference_iso(version)  # built (or found) before any file is created
    # Built under a temporary name and renamed over `path` only once complete: a failure
    # removes the half-made disk and never the file that was there before.
    with new_image(path, size_bytes, force=force) as partial:
        _install(partial, medium, str(build.version), with_vms)
    return path


def _install(path: Path, medium: Path, version: str, with_vms: bool) -> None:
    """The real fresh-install path (keyboard us, standalone), then the sample VMs."""
    plan = InstallPlan(
        medium=medium,
        target=path,
        mode=InstallMode.FRESH,
        target_version=version,
        keyboard="us",
        registration=Registration(RegistrationMode.STANDALONE),
        eula_accepted=True,
    )
    run_plan(plan)
    if with_vms:
        add_sample_vms(path, version)
