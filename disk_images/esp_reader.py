"""The ESP of a disk image, read with mtools (never mounted, no root): every path on it, one
file, its free space. The one ESP reader: the boot check (`esp_check`) and the installer's
preflight both read through it.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from enginekit.process import require_tool, run
from enginekit.tool_paths import plain_name

_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}
_BYTES_FREE = re.compile(r"^\s*([\d ]+) bytes free\s*$", re.MULTILINE)


@dataclass(frozen=True)
class EspReader:
    """The FAT filesystem at byte `offset` of `image`, read only."""

    image: Path
    offset: int

    def _mtools(self, tool: str, *args: str) -> subprocess.CompletedProcess[bytes]:
        with plain_name(self.image) as name:  # `@@` in the name is mtools syntax
            return run(
                [require_tool(tool, "mtools"), "-i", f"{name}@@{self.offset}", *args],
                env=_ENV,
                check=False,
                timeout=60,
            )

    def paths(self) -> frozenset[str] | None:
        """Every path on the filesystem (lower case, directories end in '/'), or None when
        there is no readable FAT filesystem."""
        proc = self._mtools("mdir", "-/", "-b", "-a", "::/")
        if proc.returncode != 0:
            return None
        lines = (proc.stdout or b"").decode("utf-8", "replace").splitlines()
        return frozenset(line[2:].lower() for line in lines if line.startswith("::/"))

    def read(self, path: str) -> bytes | None:
        """The contents of the file at `path`, or None when it cannot be read."""
        proc = self._mtools("mcopy", "-n", f"::{path}", "-")
        return proc.stdout if proc.returncode == 0 else None

    def free_bytes(self) -> int | None:
        """The free space on the filesystem, or None when there is no readable one."""
        proc = self._mtools("mdir", "::")
        match = _BYTES_FREE.search((proc.stdout or b"").decode("utf-8", "replace"))
        if proc.returncode != 0 or match is None:
            return None
        return int(match.group(1).replace(" ", ""))
