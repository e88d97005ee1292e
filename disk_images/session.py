"""Open an Engine disk image for reading and writing its partitions' files.

`open_installation(path)` attaches the whole image as one loop device (partition scan), gives
a `PartitionFiles` per partition (ext4 partitions are mounted on first use; the ESP goes
through mtools at its offset in the image), and releases everything in reverse order on exit,
on an exception and on Ctrl-C. The installer writes disks only through this session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from disk_images.errors import InvalidDiskImage, NotAnEngineInstallation
from disk_images.filesystems import make_ext4, make_vfat
from disk_images.image import partition, read_table
from disk_images.layout import (
    CONFIG_PATH,
    ENGINE_DIR,
    RELEASE_PATH,
    STATE_PATH,
    VMS_DIR,
    FsType,
    PartitionRole,
    Slot,
    match_layout,
    partition_number,
    regions,
    vm_dir,
    vm_json_path,
)
from disk_images.lock import disk_lock
from disk_images.loop import LoopDevice, loops_backed_by
from disk_images.mount import MountStack
from disk_images.partition_files import DirectoryFiles, FatFiles, PartitionFiles
from disk_images.state import EngineConfig, EngineRelease, EngineState, VmRecord
from enginekit import gpt
from enginekit.versions import DiskLayout


class InstallationSession:
    """An attached Engine disk. Get one from `open_installation`, never construct directly."""

    def __init__(
        self,
        path: Path,
        layout: DiskLayout,
        table: gpt.PartitionTable,
        loop: LoopDevice,
        mounts: MountStack,
        writable: bool,
    ) -> None:
        self.path = path
        self.layout = layout
        self.table = table
        self.loop = loop
        self.writable = writable
        self._mounts = mounts
        self._files: dict[PartitionRole, PartitionFiles] = {}
        self._mountpoints: dict[PartitionRole, Path] = {}

    def number(self, role: PartitionRole) -> int:
        return partition_number(self.layout, role)

    def device(self, role: PartitionRole) -> Path:
        """The loop partition node of `role` (e.g. for extlinux --install on MBR)."""
        return self.loop.partition(self.number(role))

    def mountpoint(self, role: PartitionRole) -> Path:
        """Where an ext4 partition is mounted (mounting it now if it is not yet)."""
        self.files(role)
        try:
            return self._mountpoints[role]
        except KeyError:
            raise NotAnEngineInstallation(f"{role.value} is not a mounted partition") from None

    def files(self, role: PartitionRole) -> PartitionFiles:
        if role in self._files:
            return self._files[role]
        number = self.number(role)
        region = regions(self.layout)[number]
        part = partition(self.table, number)
        files: PartitionFiles
        if region.fs_type is FsType.VFAT:
            files = FatFiles(
                self.path, part.start_bytes, label=role.value, read_only=not self.writable
            )
        else:
            options = () if self.writable else ("noload",)
            mountpoint = self._mounts.mount(
                self.loop.partition(number),
                role.value,
                read_only=not self.writable,
                options=options,
            )
            self._mountpoints[role] = mountpoint
            files = DirectoryFiles(mountpoint, label=role.value)
        self._files[role] = files
        return files

    def format(self, role: PartitionRole) -> None:
        """Make a new, empty filesystem on `role` (e.g. the slot an upgrade writes).

        ext4 goes through the loop partition device, so later mounts in this session see it
        through the same block device cache; the ESP is formatted in place in the image, as
        FatFiles reads it. Refused while the partition is mounted or its files are in use.
        """
        if not self.writable:
            raise NotAnEngineInstallation(f"{self.path}: opened read-only; cannot format")
        if role in self._files:
            raise NotAnEngineInstallation(
                f"{self.path}: {role.value} is in use in this session; format it before "
                "reading or writing its files"
            )
        number = self.number(role)
        region = regions(self.layout)[number]
        if region.fs_type is FsType.VFAT:
            part = partition(self.table, number)
            make_vfat(self.path, region.fs_label, offset=part.start_bytes, size=part.size_bytes)
        else:
            make_ext4(self.loop.partition(number), region.fs_label)

    @property
    def esp(self) -> PartitionFiles:
        return self.files(PartitionRole.ESP)

    @property
    def storage(self) -> PartitionFiles:
        return self.files(PartitionRole.STORAGE)

    def slot(self, slot: Slot) -> PartitionFiles:
        return self.files(PartitionRole.for_slot(slot))

    @property
    def system(self) -> PartitionFiles:
        """MBR's one system partition (it sits in slot A's region)."""
        return self.files(PartitionRole.SYSTEM_A)

    # --- the Engine files ---------------------------------------------------------------------

    def read_release(self, slot: Slot) -> EngineRelease | None:
        files = self.slot(slot)
        if not files.exists(RELEASE_PATH):
            return None
        source = f"{self.path}: {files.label}:{RELEASE_PATH}"
        return EngineRelease.from_json(files.read(RELEASE_PATH), source)

    def write_release(self, slot: Slot, release: EngineRelease) -> None:
        self.slot(slot).write_atomic(RELEASE_PATH, release.to_json())

    def read_state(self) -> EngineState | None:
        if not self.storage.exists(STATE_PATH):
            return None
        source = f"{self.path}: storage:{STATE_PATH}"
        return EngineState.from_json(self.storage.read(STATE_PATH), source)

    def write_state(self, state: EngineState) -> None:
        self.storage.makedirs(ENGINE_DIR)
        self.storage.write_atomic(STATE_PATH, state.to_json())

    def read_config(self) -> EngineConfig | None:
        if not self.storage.exists(CONFIG_PATH):
            return None
        source = f"{self.path}: storage:{CONFIG_PATH}"
        return EngineConfig.from_json(self.storage.read(CONFIG_PATH), source)

    def write_config(self, config: EngineConfig) -> None:
        self.storage.makedirs(ENGINE_DIR)
        self.storage.write_atomic(CONFIG_PATH, config.to_json())

    def read_vms(self) -> list[VmRecord]:
        if not self.storage.is_dir(VMS_DIR):
            return []
        vms = []
        for name in self.storage.list(VMS_DIR):
            path = vm_json_path(name)
            if self.storage.exists(path):
                source = f"{self.path}: storage:{path}"
                vms.append(VmRecord.from_json(self.storage.read(path), source))
        return vms

    def write_vm(self, vm: VmRecord) -> None:
        self.storage.makedirs(vm_dir(vm.name))
        self.storage.write_atomic(vm_json_path(vm.name), vm.to_json())


@contextmanager
def open_installation(
    path: Path,
    writable: bool = True,
    *,
    layout: DiskLayout | None = None,
    mount_parent: Path | None = None,
) -> Iterator[InstallationSession]:
    """Attach the Engine disk `path` and yield an InstallationSession.

    `layout` defaults to what the partition table says (an error if it is not an Engine
    table). Partitions are mounted read-only when not `writable`. Mount points go under a
    new temp dir in `mount_parent` (default: the system temp dir).
    """
    path = Path(path)
    if not (path.is_file() or path.is_block_device()):
        raise InvalidDiskImage(f"{path}: not a disk image file or a disk")
    with ExitStack() as stack:
        # Held for the whole session: a second writer (an install, an upgrade, a boot) on the
        # same image gets one clear line instead of changing the disk under this one.
        stack.enter_context(disk_lock(path, exclusive=writable))
        if writable:
            busy = loops_backed_by(path)
            if busy:
                raise InvalidDiskImage(
                    f"{path}: in use (attached to {', '.join(map(str, busy))})",
                    hint="close whatever uses the disk image (another install, a mount) first",
                )
        table = read_table(path)
        found = match_layout(table)
        if layout is None:
            if found is None:
                raise NotAnEngineInstallation(
                    f"{path}: the partition table is not an Engine layout",
                    hint="create Engine partitions first (disk_images.layout.engine_partitions)",
                )
            layout = found
        elif found is not layout:
            raise NotAnEngineInstallation(
                f"{path}: the partition table is not a {layout.value} Engine layout"
            )
        loop = stack.enter_context(LoopDevice(path, read_only=not writable))
        mounts = stack.enter_context(MountStack(mount_parent))
        yield InstallationSession(path, layout, table, loop, mounts, writable)
