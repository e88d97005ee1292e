"""Sector reads from a disk image path or an open file, with the disk's name for messages."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from enginekit.gpt.format import SECTOR_SIZE, InvalidPartitionTable, Target


class Disk:
    """Sector reads from a path or an open file, with the disk's name for messages."""

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self.handle = handle
        self.name = name
        # seek() also sizes block devices, where st_size is 0.
        self.size = handle.seek(0, os.SEEK_END)
        self.sectors = self.size // SECTOR_SIZE

    def read(self, lba: int, count: int = 1) -> bytes | None:
        """`count` sectors from `lba`, or None if the disk does not hold them all."""
        if lba < 0 or count < 0 or lba + count > self.sectors:
            return None
        self.handle.seek(lba * SECTOR_SIZE)
        data = self.handle.read(count * SECTOR_SIZE)
        return data if len(data) == count * SECTOR_SIZE else None


@contextmanager
def open_disk(target: Target) -> Iterator[Disk]:
    if isinstance(target, str | os.PathLike):
        name = os.fspath(target)
        try:
            if stat.S_ISDIR(os.stat(name).st_mode):
                raise InvalidPartitionTable(f"{name}: is a directory, not a disk image")
            handle = open(name, "rb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError as exc:
            raise InvalidPartitionTable(f"{name}: no such file") from exc
        except PermissionError as exc:
            raise InvalidPartitionTable(f"{name}: permission denied") from exc
        except OSError as exc:
            raise InvalidPartitionTable(f"{name}: cannot open: {exc.strerror or exc}") from exc
        with handle:
            yield Disk(handle, name)
    else:
        yield Disk(target, str(getattr(target, "name", "<disk>")))
