"""Recognise an Engine installation on a disk image without root, without mounting, read-only.

The partition table is parsed in Python by `enginekit.gpt` (any GPT problem, such as a CRC
mismatch, means "no installation": the probe does not fall back to the backup GPT, though
a backup's disk GUID is still the disk's id; a disk with no readable table at all is named
`data-<hash of its size and first MiB>`); the ext4
partitions are read by `debugfs -c` (read-only, "catastrophic" mode: no bitmaps loaded) on
`image?offset=N` (`disk_images.ext4_reader`); the ESP's boot entries are listed with mtools
(`mdir -i image@@offset`). VM disks are never read: their apparent size comes from the
directory listing. The image is only ever opened O_RDONLY and no tool is given a write flag.
"""

from __future__ import annotations

import enum
import hashlib
import os
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from disk_images.errors import InvalidStateFile
from disk_images.esp_check import EspCheck, check_esp
from disk_images.ext4_reader import Ext4Reader, NoExt4Filesystem
from disk_images.image import SECTOR, partition
from disk_images.layout import (
    CONFIG_PATH,
    ESP_REGION,
    RELEASE_PATH,
    STATE_PATH,
    VM_NAME,
    VMS_DIR,
    BootEntryName,
    PartitionRole,
    Slot,
    match_layout,
    partition_number,
)
from disk_images.lock import held_by_enginekit, held_by_qemu
from disk_images.loop import loops_backed_by
from disk_images.state import (
    EngineConfig,
    EngineRelease,
    EngineState,
    Registration,
    UpgradeStatus,
    VmRecord,
)
from enginekit import gpt
from enginekit.errors import UserInputError
from enginekit.scratch import scratch_tree
from enginekit.versions import DiskLayout

EXT4_MAGIC_OFFSET = 1024 + 56
EXT4_MAGIC = b"\x53\xef"
BACKUP_GPT_REGION = 1024 * 1024  # the last MiB of an Engine GPT disk (DESIGN.md)


class NoInstallationKind(enum.StrEnum):
    """Why there is no Engine installation: lets the installer decide what to offer."""

    BLANK = "blank"  # nothing on the disk
    NO_TABLE = "no-table"  # data but no partition table
    FOREIGN = "foreign"  # a partition table without Engine partitions
    CORRUPT = "corrupt"  # a broken partition table
    TRUNCATED = "truncated"  # the file is shorter than its table says
    INCOMPLETE = "incomplete"  # Engine partitions, but not a finished installation
    DAMAGED = "damaged"  # Engine files present but unreadable or invalid


@dataclass(frozen=True)
class VmInfo:
    name: str
    kind: str  # shared | custom | local (VmKind value)
    pv_drivers: str
    published_for: str
    size_bytes: int  # apparent size of disk.img (0 when there is none)
    image_version: int | None = None  # Synchronizer image version running (None: never synced)
    pending_version: int | None = None  # downloaded, waits for the VM to restart

    def as_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "name": self.name,
            "kind": self.kind,
            "pv_drivers": self.pv_drivers,
            "published_for": self.published_for,
            "size_bytes": self.size_bytes,
        }
        if self.image_version is not None:
            doc["image_version"] = self.image_version
        if self.pending_version is not None:
            doc["pending_version"] = self.pending_version
        return doc


class Repair(enum.StrEnum):
    """A repair for damage the probe found on an otherwise readable Engine installation."""

    REBUILD_BACKUP_GPT = "rebuild-backup-gpt"  # sgdisk -e: a new backup GPT at the disk's end
    REWRITE_STATE = "rewrite-state"  # state.json rewritten from what the ESP and slots show

    @property
    def description(self) -> str:
        if self is Repair.REBUILD_BACKUP_GPT:
            return (
                "give the image back the size its GPT describes and write a new backup GPT "
                "at its end (sgdisk -e)"
            )
        return f"rewrite {STATE_PATH} from the boot entries and slots on the disk"


@dataclass(frozen=True)
class UnreadableVm:
    """A directory under /vms that is not a usable VM, and why: shown wherever VMs are
    counted, so that nothing an erase would destroy goes unmentioned."""

    name: str
    reason: str

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "reason": self.reason}


@dataclass(frozen=True)
class Installation:
    disk_id: str
    layout: DiskLayout
    version: str
    active_slot: Slot | None  # None on MBR
    slots: dict[Slot, str | None]  # version installed in each slot (None: empty)
    upgrade_status: UpgradeStatus
    registered: bool
    keyboard: str | None
    vms: tuple[VmInfo, ...]
    partitions: tuple[gpt.Partition, ...]
    boot_entries: tuple[BootEntryName, ...]  # GPT: ESP loader entries, sorted by file name
    install_complete: bool
    state: EngineState
    problems: tuple[str, ...] = ()  # VMs skipped because their vm.json is broken, etc.
    in_use_by: tuple[str, ...] = ()  # loop devices the image is attached to right now
    registration: Registration | None = None  # config.json's; None when there is none
    esp: EspCheck | None = None  # GPT: what a boot needs from the ESP (None on MBR)
    unreadable_vms: tuple[UnreadableVm, ...] = ()  # also named in `problems`
    # What is damaged (one sentence each) and the repairs that fix it; `state` is then what
    # the disk shows when state.json itself is the damage. Empty on a sound installation.
    damage: tuple[str, ...] = ()
    repairs: tuple[Repair, ...] = ()

    @property
    def found(self) -> bool:
        return True


@dataclass(frozen=True)
class NoInstallation:
    reason: str
    kind: NoInstallationKind
    partitions: tuple[gpt.Partition, ...] = ()
    disk_id: str | None = None
    layout: DiskLayout | None = None  # set when Engine partitions were recognised
    table: str | None = None  # "gpt" | "mbr" | None
    in_use_by: tuple[str, ...] = field(default_factory=tuple)

    @property
    def found(self) -> bool:
        return False


ProbeResult = Installation | NoInstallation


class _NotEngine(Exception):
    """Internal: stops the probe with a NoInstallation."""

    def __init__(self, kind: NoInstallationKind, reason: str, disk_id: str | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.disk_id = disk_id  # the table's id when one was read but is not usable


# --- the partition table -----------------------------------------------------------------------


def _read_at(fd: int, offset: int, length: int) -> bytes:
    return os.pread(fd, length, offset)


def _gpt_cut_short(fd: int) -> bool:
    """An Engine GPT whose writing was cut short: sfdisk writes the entry array before the
    primary header and the protective MBR, so a power cut (or SIGKILL) in between leaves
    LBA 0 and 1 blank and the ESP's entry at LBA 2."""
    if any(_read_at(fd, 0, 2 * SECTOR)):
        return False
    first = _read_at(fd, 2 * SECTOR, gpt.GPT_ENTRY_SIZE)
    size = gpt.GPT_ENTRY_SIZE
    entries = gpt.parse_gpt_entries(first, size) if len(first) == size else ()
    return [e.name for e in entries] == [ESP_REGION.partlabel]


def _gpt_reason(problems: tuple[str, ...]) -> str:
    for problem in problems:
        if problem.startswith("primary GPT header: CRC mismatch"):
            return "GPT header CRC mismatch"
    for problem in problems:
        if "CRC mismatch" in problem:
            return f"GPT CRC mismatch ({problem})"
    return f"corrupt GPT ({problems[0]})"


def _read_table(fd: int, size: int) -> tuple[gpt.PartitionTable, tuple[str, ...]]:
    """The MBR or GPT of an open image (read by `enginekit.gpt`) and the damage it tolerated,
    or a _NotEngine saying why there is none: blank, not partitioned, truncated, or a GPT with
    any other problem (a damaged primary is not silently replaced by the backup here: that is
    for a repair). A GPT that lost only its backup is returned with that damage."""
    if size < SECTOR:
        raise _NotEngine(
            NoInstallationKind.TRUNCATED, f"truncated image ({size} bytes, not even one sector)"
        )
    handle = os.fdopen(os.dup(fd), "rb")
    try:
        found = gpt.read_partition_table(handle)
    except gpt.InvalidPartitionTable as exc:
        raise _NotEngine(NoInstallationKind.CORRUPT, f"corrupt partition table ({exc})") from None
    finally:
        handle.close()
    if found.kind is gpt.PartitionTableKind.NONE:
        if not any(_read_at(fd, 0, 1024 * 1024)):
            raise _NotEngine(NoInstallationKind.BLANK, "blank disk (no partition table)")
        if _read_at(fd, EXT4_MAGIC_OFFSET, 2) == EXT4_MAGIC:
            raise _NotEngine(
                NoInstallationKind.NO_TABLE,
                "no partition table (the disk holds an ext4 filesystem)",
            )
        if _gpt_cut_short(fd):
            raise _NotEngine(
                NoInstallationKind.INCOMPLETE,
                "an Engine partition table cut short while it was written: its GPT entries "
                "without their header (incomplete install)",
            )
        raise _NotEngine(NoInstallationKind.NO_TABLE, "no partition table (unrecognised content)")
    is_gpt = found.kind is gpt.PartitionTableKind.GPT
    sectors = size // SECTOR
    described = 0
    if is_gpt and found.header is not None and not found.used_backup:
        described = (found.header.alternate_lba + 1) * SECTOR
    for part in found.partitions:
        described = max(described, (part.end_lba + 1) * SECTOR)
    parts_end = max(((p.end_lba + 1) * SECTOR for p in found.partitions), default=0)
    header = found.header
    if (
        is_gpt
        and header is not None
        and not found.used_backup
        and sectors * SECTOR < described <= sectors * SECTOR + BACKUP_GPT_REGION
        and header.alternate_lba == header.last_usable_lba + header.entry_array_sectors + 1
        and parts_end <= sectors * SECTOR
    ):
        # Only the backup GPT is gone (the file was cut short after the last partition, by
        # no more than the region the layout keeps for the backup, and the primary header
        # agrees with itself): the primary and every partition are intact, so this is a
        # repairable installation.
        damage = (
            f"the backup GPT is missing: the GPT describes a disk of {described} bytes, the "
            f"file has {size}",
        )
        return found, damage
    if described > sectors * SECTOR:
        what = "the GPT" if is_gpt else "the partition table"
        raise _NotEngine(
            NoInstallationKind.TRUNCATED,
            f"truncated image ({what} describes a disk of {described} bytes, the file has {size})",
            found.disk_id or None,
        )
    if is_gpt and found.problems:
        reason = _gpt_reason(found.problems)
        if found.used_backup and match_layout(found):
            # Still no fallback (a repair decides that), but say what the backup holds.
            reason += (
                "; the backup GPT at the end of the disk is intact and lists the Engine "
                "partitions (repair: `sgdisk -e DISK.img` rebuilds the primary GPT from it)"
            )
        # The header the partitions came from (the backup's when the primary is damaged)
        # still names the disk: that GUID is the id a person confirms an erase with.
        raise _NotEngine(NoInstallationKind.CORRUPT, reason, found.disk_id or None)
    return found, ()


# --- the probe ----------------------------------------------------------------------------------


def _open_image(path: Path) -> tuple[int, int]:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserInputError(
            f"{path}: no such file",
            hint="check the path, or create an image with 'engine-disk create DISK --size 8G'",
        ) from None
    except OSError as exc:
        raise UserInputError(
            f"{path}: cannot read it ({exc.strerror})",
            hint="check the file's permissions, or run as a user who may read it",
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise UserInputError(
            f"{path}: is a directory, not a disk image", hint="give the path of a disk image file"
        )
    is_disk = stat.S_ISBLK(info.st_mode)  # the live installer probes the machine's disks
    if not stat.S_ISREG(info.st_mode) and not is_disk:
        raise UserInputError(
            f"{path}: is not a regular file (give a disk image file)",
            hint="give the path of a disk image file",
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOATIME)
    except PermissionError:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise UserInputError(
                f"{path}: cannot read it ({exc.strerror})",
                hint="check the file's permissions, or run as a user who may read it",
            ) from None
    except OSError as exc:
        raise UserInputError(
            f"{path}: cannot read it ({exc.strerror})",
            hint="check the file's permissions, or run as a user who may read it",
        ) from None
    # A block device's st_size is 0; its size is where a seek to the end lands.
    return fd, os.lseek(fd, 0, os.SEEK_END) if is_disk else info.st_size


def in_use_by(path: Path) -> tuple[str, ...]:
    """Who has `path` right now: its loop devices, another EngineKit process holding the
    disk lock (a boot or an install), a QEMU that has it open as a drive."""
    found = [str(d) for d in loops_backed_by(path)]
    if held_by_enginekit(path):
        found.append("another EngineKit process (boot/install)")
    if held_by_qemu(path):
        found.append("a QEMU virtual machine")
    return tuple(found)


CONTENT_ID_BYTES = 1024 * 1024


def content_disk_id(path: Path, size: int) -> str:
    """`data-<12 hex>`: the id of a disk with no readable table, from the SHA-256 of its size
    (decimal) and its first MiB, so it names this content, not whatever file has the name."""
    digest = hashlib.sha256(str(size).encode())
    try:
        with open(path, "rb") as stream:
            digest.update(stream.read(CONTENT_ID_BYTES))
    except OSError as exc:
        raise UserInputError(
            f"{path}: cannot read it ({exc.strerror})",
            hint="check the file's permissions, or run as a user who may read it",
        ) from None
    return f"data-{digest.hexdigest()[:12]}"


def probe(path: Path) -> ProbeResult:
    """What `path` holds: an `Installation` or a `NoInstallation` with the reason.

    Raises UserInputError (one line) only when `path` is not a readable regular file or
    block device.
    """
    path = Path(path)
    fd, size = _open_image(path)
    table: gpt.PartitionTable | None = None
    layout: DiskLayout | None = None
    in_use = in_use_by(path)
    try:
        try:
            table, table_damage = _read_table(fd, size)
            layout = match_layout(table)
            if layout is None:
                raise _NotEngine(
                    NoInstallationKind.FOREIGN, "foreign partition table (no Engine partitions)"
                )
            with scratch_tree("probe") as workdir:
                try:
                    found = _probe_engine(path, table, layout, Path(workdir), in_use)
                    if not table_damage:
                        return found
                    return replace(
                        found,
                        damage=table_damage + found.damage,
                        repairs=(Repair.REBUILD_BACKUP_GPT, *found.repairs),
                    )
                except NoExt4Filesystem as missing:
                    raise _NotEngine(
                        NoInstallationKind.INCOMPLETE,
                        f"Engine partitions present but {missing.label} holds no ext4 "
                        "filesystem (incomplete install)",
                    ) from None
        finally:
            os.close(fd)
    except _NotEngine as stop:
        disk_id = table.disk_id if table else stop.disk_id
        if disk_id is None and stop.kind is not NoInstallationKind.BLANK:
            # Data but no readable table, so no GUID or MBR signature: an id derived from the
            # content is what a person types to confirm erasing it (shown by inspect, asked by
            # the installer). Not the file name: that would confirm any disk of that name.
            disk_id = content_disk_id(path, size)
        return NoInstallation(
            reason=stop.reason,
            kind=stop.kind,
            partitions=table.partitions if table else (),
            disk_id=disk_id,
            layout=layout,
            table=table.kind.value if table else None,
            in_use_by=in_use,
        )


def _parse(kind: type, data: bytes, source: str) -> object:
    try:
        return kind.from_json(data, source)  # type: ignore[attr-defined]
    except InvalidStateFile as exc:
        raise _NotEngine(
            NoInstallationKind.DAMAGED, f"damaged installation: {exc.message}"
        ) from None


def _probe_engine(
    path: Path,
    table: gpt.PartitionTable,
    layout: DiskLayout,
    workdir: Path,
    in_use: tuple[str, ...],
) -> Installation:
    def reader(role: PartitionRole) -> Ext4Reader:
        part = partition(table, partition_number(layout, role))
        return Ext4Reader(path, part.start_bytes, role.value, workdir)

    storage = reader(PartitionRole.STORAGE)
    files, listings = storage.batch([STATE_PATH, CONFIG_PATH], [VMS_DIR])
    state_data = files[STATE_PATH]
    if state_data is None:
        raise _NotEngine(
            NoInstallationKind.INCOMPLETE,
            f"Engine partitions present but storage has no {STATE_PATH} (incomplete install)",
        )
    damage: list[str] = []
    state: EngineState | None = None
    try:
        state = EngineState.from_json(state_data, f"storage:{STATE_PATH}")
    except InvalidStateFile as exc:
        damage.append(exc.message)
    esp_check: EspCheck | None = None
    if layout is DiskLayout.GPT_AB:
        esp = partition(table, partition_number(layout, PartitionRole.ESP))
        esp_check = check_esp(path, esp.start_bytes)
    if state is None:
        state = _state_from_entries(esp_check.entries if esp_check else ())
    config: EngineConfig | None = None
    if files[CONFIG_PATH] is not None:
        parsed = _parse(EngineConfig, files[CONFIG_PATH] or b"", f"storage:{CONFIG_PATH}")
        assert isinstance(parsed, EngineConfig)
        config = parsed

    slots: dict[Slot, str | None] = {Slot.A: None, Slot.B: None}
    slot_list = [Slot.A, Slot.B] if layout is DiskLayout.GPT_AB else [Slot.A]
    for slot in slot_list:
        role = PartitionRole.for_slot(slot)
        try:
            contents, _ = reader(role).batch([RELEASE_PATH], [])
        except NoExt4Filesystem:
            if slot is (state.active_slot or Slot.A):
                raise
            continue  # an inactive slot that was never formatted is fine
        release_data = contents[RELEASE_PATH]
        if release_data is not None:
            release = _parse(EngineRelease, release_data, f"{role.value}:{RELEASE_PATH}")
            assert isinstance(release, EngineRelease)
            slots[slot] = release.version

    active = state.active_slot if layout is DiskLayout.GPT_AB else None
    version = slots[active or Slot.A]
    if version is None:
        raise _NotEngine(
            NoInstallationKind.INCOMPLETE,
            "Engine partitions present but the system slot has no engine-release "
            "(incomplete install)",
        )

    problems: list[str] = []
    pending = state.pending_slot if layout is DiskLayout.GPT_AB else None
    if pending is not None and slots.get(pending) is None:
        problems.append(
            f"the upgrade status says slot {pending.value} is pending, but slot "
            f"{pending.value} holds no Engine ({RELEASE_PATH} missing): its first boot will "
            f"fail and fall back to slot {(active or Slot.A).value}; run the upgrade again"
        )
    vms: list[VmInfo] = []
    unreadable: list[UnreadableVm] = []

    def skip(name: str, reason: str) -> None:
        unreadable.append(UnreadableVm(name, reason))
        problems.append(f"storage:{VMS_DIR}/{name}: {reason}; VM skipped")

    vm_dirs = sorted(e.name for e in (listings.get(VMS_DIR) or []) if e.is_dir)
    for name in vm_dirs:
        if not VM_NAME.match(name):
            skip(name, "not a valid VM directory name")
    vm_names = [name for name in vm_dirs if VM_NAME.match(name)]
    if vm_names:
        vm_files, vm_listings = storage.batch(
            [f"{VMS_DIR}/{n}/vm.json" for n in vm_names], [f"{VMS_DIR}/{n}" for n in vm_names]
        )
        for name in vm_names:
            source = f"storage:{VMS_DIR}/{name}/vm.json"
            data = vm_files[f"{VMS_DIR}/{name}/vm.json"]
            if data is None:
                skip(name, "vm.json is missing")
                continue
            try:
                record = VmRecord.from_json(data, source)
            except InvalidStateFile as exc:
                unreadable.append(UnreadableVm(name, exc.message))
                problems.append(f"{exc.message}; VM skipped")
                continue
            disk_size = 0
            for entry in vm_listings.get(f"{VMS_DIR}/{name}") or []:
                if entry.name == "disk.img" and not entry.is_dir:
                    disk_size = entry.size
            vms.append(
                VmInfo(
                    record.name,
                    record.kind.value,
                    record.pv_drivers,
                    record.published_for,
                    disk_size,
                    record.image_version,
                    record.pending_version,
                )
            )

    boot_entries: tuple[BootEntryName, ...] = ()
    if esp_check is not None:
        boot_entries = esp_check.entries
        problems.extend(esp_check.problems)

    return Installation(
        disk_id=table.disk_id,
        layout=layout,
        version=version,
        active_slot=active,
        slots=slots,
        upgrade_status=state.upgrade_status,
        registered=config.registered if config else False,
        keyboard=config.keyboard if config else None,
        vms=tuple(vms),
        partitions=table.partitions,
        boot_entries=boot_entries,
        install_complete=state.install_complete,
        state=state,
        problems=tuple(problems),
        in_use_by=in_use,
        registration=config.registration if config else None,
        esp=esp_check,
        unreadable_vms=tuple(unreadable),
        damage=tuple(damage),
        repairs=(Repair.REWRITE_STATE,) if damage else (),
    )


def _state_from_entries(entries: tuple[BootEntryName, ...]) -> EngineState:
    """The state a disk with an unreadable state.json shows: the newest entry systemd-boot
    would boot is the active slot, or, while it still counts its first try, the pending one
    (the upgrade waits for its first boot). No entries (MBR): one system slot, no upgrade."""
    if not entries:
        return EngineState(None, UpgradeStatus.BLANK, 0, install_complete=True)
    order = sorted(entries, key=lambda e: (e.tries_left == 0, -e.generation, e.slot is Slot.A))
    first = order[0]
    generation = max(e.generation for e in entries)
    if first.tries_left is not None and first.tries_done == 0:
        older = next((e for e in order if e.slot is not first.slot), None)
        if older is not None:
            return EngineState(
                older.slot,
                UpgradeStatus.INSTALLED_REBOOT_REQUIRED,
                older.generation,
                pending_slot=first.slot,
                install_complete=True,
            )
    return EngineState(first.slot, UpgradeStatus.BLANK, generation, install_complete=True)
