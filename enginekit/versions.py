"""Engine versions and disk layouts, as data media, disk images and the installer share.

`EngineVersion` orders versions numerically ("4.10.0" > "4.5.0"); `DiskLayout` names how an
installation lays out its disk. The reference builds' table is `reference_builds.builds`.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import total_ordering

from enginekit.errors import UserInputError

_VERSION = re.compile(r"^(\d{1,4})\.(\d{1,4})\.(\d{1,4})$")


@total_ordering
@dataclass(frozen=True)
class EngineVersion:
    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> EngineVersion:
        match = _VERSION.match(text.strip()) if isinstance(text, str) else None
        if not match:
            raise UserInputError(
                f"{text!r} is not an Engine version", hint="versions look like 5.0.0"
            )
        return cls(*(int(g) for g in match.groups()))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, EngineVersion):
            return NotImplemented
        return (self.major, self.minor, self.patch) < (other.major, other.minor, other.patch)


class DiskLayout(enum.StrEnum):
    """How an Engine installation lays out its disk (see DESIGN.md, 'On-disk layout')."""

    GPT_AB = "gpt-ab"  # GPT, FAT ESP, system slots A and B, storage
    MBR = "mbr"  # MBR, one system partition, storage (Engine 4.0)
