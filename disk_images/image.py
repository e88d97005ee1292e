"""Create sparse raw disk images and partition them from a declarative list of partitions.

Partitioning is done by util-linux `sfdisk` with scripted input, which works on a plain image
file without root; the table is read back by `enginekit.gpt`, the project's one reader. Sizes
and offsets are bytes (use `enginekit.sizes.parse_size` for `8G`); everything is aligned to
1 MiB.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from disk_images.errors import InvalidDiskImage
from disk_images.lock import disk_lock
from enginekit import gpt
from enginekit.errors import UserInputError
from enginekit.outputs import check_new_output, publish
from enginekit.process import require_tool, run
from enginekit.scratch import PARTIAL_TAG, create_owned_partial, sweep_owned_partials
from enginekit.sizes import human_size

MIB = 1024 * 1024
SECTOR = 512


class TableType(enum.StrEnum):
    GPT = "gpt"
    MBR = "dos"  # sfdisk's name for an MBR partition table

    @property
    def display(self) -> str:
        return "gpt" if self is TableType.GPT else "mbr"


class PartitionType(enum.StrEnum):
    """sfdisk type shortcuts that mean the same on GPT and MBR."""

    LINUX = "L"  # GPT 0FC63DAF-..., MBR 0x83
    ESP = "U"  # GPT C12A7328-..., MBR 0xef
    SWAP = "S"


@dataclass(frozen=True)
class PartitionSpec:
    """One partition to create. `start`/`size` are bytes; None means 'next free' / 'the rest'.

    A partition without `start` begins at the first MiB boundary after the previous one.
    `name` is the GPT PARTLABEL (ignored on MBR, where it must be None). `type` is an sfdisk
    shortcut or a raw type (a GUID on GPT, hex like '83' on MBR). `bootable` is MBR's active flag.
    """

    size: int | None
    start: int | None = None
    type: str = PartitionType.LINUX
    name: str | None = None
    bootable: bool = False


def partition(table: gpt.PartitionTable, number: int) -> gpt.Partition:
    """Partition `number` of `table`; KeyError when the table has no such partition."""
    found = table.by_number(number)
    if found is None:
        raise KeyError(number)
    return found


def partition_type(part: gpt.Partition) -> str:
    """How disk_images shows a partition's type: the GPT type GUID in upper case, or the MBR
    type as 2 hex digits."""
    return part.type.upper() if part.type_guid is not None else part.type.lower()


def partition_json(part: gpt.Partition) -> dict[str, object]:
    """One partition as `engine-disk` reports it in JSON (bytes; GPT fields None on MBR)."""
    is_gpt = part.type_guid is not None
    return {
        "number": part.number,
        "start": part.start_bytes,
        "size": part.size_bytes,
        "type": partition_type(part),
        "name": part.name if is_gpt else None,
        "uuid": part.part_guid.lower() if is_gpt and part.part_guid else None,
        "bootable": part.bootable,
    }


# `<name>.enginekit-partial.<pid>.<random>`, flocked by its builder (see enginekit.scratch).
PARTIAL_MARK = f".{PARTIAL_TAG}."


def _sweep_partials(path: Path) -> None:
    """Remove partials of `path` a killed create left (nobody holds their lock)."""
    sweep_owned_partials(path.parent, f"{path.name}{PARTIAL_MARK}")


@contextmanager
def new_image(path: Path, size: int, *, force: bool = False) -> Iterator[Path]:
    """Yield a new sparse image of `size` bytes to fill in; it becomes `path` on success.

    The image is built as `<path>.enginekit-partial.<pid>.<random>` (flocked by us) and
    published as `path` only when the body succeeds, so a failed or killed build never harms
    an existing `path` (a later create sweeps a dead builder's partial). A file that appears
    at `path` meanwhile is never replaced. An existing `path` is replaced only with `force`, never
    while it is attached to a loop device, locked by another EngineKit process or open in
    QEMU, and never through a symbolic link.
    """
    path = Path(path)
    if size < MIB:
        raise UserInputError(
            f"{path}: a disk image must be at least 1 MiB, asked for {size} B",
            hint="give a size of at least 1M, e.g. --size 8G",
        )
    output = check_new_output(path, force=force)
    _sweep_partials(path)
    with ExitStack() as stack:
        if output.replaces is not None:
            # Held until the rename: no boot or install starts on the old image meanwhile.
            stack.enter_context(disk_lock(path, exclusive=True))
        # The open fd holds the partial's ownership lock until it is published or removed.
        fd, partial = create_owned_partial(path.parent, f"{path.name}{PARTIAL_MARK}")
        stack.callback(os.close, fd)
        try:
            try:
                os.ftruncate(fd, size)
            except (OSError, OverflowError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "beyond any file's size"
                raise UserInputError(
                    f"{path}: the filesystem of {path.parent} cannot hold a {human_size(size)} "
                    f"file: {why}",
                    hint="choose a smaller --size, or a directory on a filesystem that can "
                    "hold it; ext4 holds files up to 16 TiB",
                ) from None
            yield partial
            # With --force our own disk lock is on the old file: it must not count as a user.
            publish(partial, output, "the image", recheck_users=False)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


def create_image(path: Path, size: int, *, force: bool = False) -> Path:
    """Create a sparse raw image of `size` bytes. Refuses to replace an existing file
    unless `force`, and even then one that is in use; a directory, special file or symbolic
    link is never replaced. The new file appears in one rename (see `new_image`)."""
    with new_image(path, size, force=force):
        pass
    return Path(path)


def _sfdisk_script(table: TableType, specs: Sequence[PartitionSpec]) -> str:
    lines = [f"label: {table.value}", "unit: sectors"]
    if table is TableType.MBR and len(specs) > 4:
        raise UserInputError(
            "an MBR partition table holds at most 4 primary partitions",
            hint="use a GPT table, or at most 4 partitions",
        )
    cursor = MIB  # where a partition without an explicit start goes: after the previous one
    for index, spec in enumerate(specs, start=1):
        fields = []
        start = spec.start if spec.start is not None else cursor
        if start % MIB:
            raise UserInputError(
                f"partition {index}: start {start} is not MiB-aligned",
                hint="start partitions at a whole MiB",
            )
        fields.append(f"start={start // SECTOR}")
        if spec.size is not None:
            cursor = start + -(-spec.size // MIB) * MIB
        if spec.size is not None:
            if spec.size <= 0 or spec.size % SECTOR:
                raise UserInputError(
                    f"partition {index}: size {spec.size} is not whole sectors",
                    hint="give partition sizes in whole 512-byte sectors",
                )
            fields.append(f"size={spec.size // SECTOR}")
        elif index != len(specs):
            raise UserInputError(
                f"partition {index}: only the last partition may take the rest",
                hint="give every partition but the last a size",
            )
        fields.append(f"type={spec.type}")
        if spec.name is not None:
            if table is not TableType.GPT:
                raise UserInputError(
                    f"partition {index}: MBR partitions have no name",
                    hint="leave out the name, or use a GPT table",
                )
            if '"' in spec.name or "\n" in spec.name:
                raise UserInputError(
                    f"partition {index}: bad name {spec.name!r}",
                    hint="use a name without quotes or newlines",
                )
            fields.append(f'name="{spec.name}"')
        if spec.bootable:
            if table is not TableType.MBR:
                raise UserInputError(
                    f"partition {index}: the boot flag exists only on MBR",
                    hint="leave out the boot flag, or use an MBR table",
                )
            fields.append("bootable")
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


def partition_image(
    path: Path,
    table: TableType,
    specs: Sequence[PartitionSpec],
    *,
    disk_id: str | None = None,
) -> gpt.PartitionTable:
    """Write a new partition table holding `specs` (in order, numbered from 1) and return it.

    `disk_id` optionally fixes the GPT disk GUID or the MBR signature (0x12345678) so tests
    and reference images are reproducible.
    """
    sfdisk = require_tool("sfdisk", "fdisk")
    script = _sfdisk_script(table, specs)
    if disk_id is not None:
        script = script.replace("unit: sectors", f"unit: sectors\nlabel-id: {disk_id}", 1)
    run(
        [sfdisk, "--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "always", str(path)],
        input=script.encode(),
    )
    return read_table(path)


def read_table(path: Path) -> gpt.PartitionTable:
    """The partition table of `path`, read by `enginekit.gpt` (needs a sound table)."""
    try:
        found = gpt.read_partition_table(path)
    except gpt.InvalidPartitionTable as exc:
        raise InvalidDiskImage(f"{path}: no readable partition table ({exc.message})") from None
    if found.kind is gpt.PartitionTableKind.NONE:
        raise InvalidDiskImage(f"{path}: no partition table")
    if found.problems:
        raise InvalidDiskImage(
            f"{path}: damaged partition table ({found.problems[0]})",
            hint="engine-disk inspect shows what is damaged and the repair",
        )
    return found
