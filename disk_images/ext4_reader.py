"""Read files and directory listings from an ext4 filesystem inside an image, read-only.

`debugfs -c` (read-only, "catastrophic" mode: no bitmaps loaded) on `image?offset=N`, with all
reads of one round batched into a single debugfs process whose `dump` commands write into a
private temp dir. No root, no mount, no write flag.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from enginekit.errors import UserInputError
from enginekit.process import require_tool, run
from enginekit.scratch import scratch_tree
from enginekit.tool_paths import plain_name


class NoExt4Filesystem(Exception):
    """Internal: debugfs found no ext4 filesystem at the offset (the label names the place)."""

    def __init__(self, label: str) -> None:
        super().__init__(label)
        self.label = label


@dataclass(frozen=True)
class DirEntry:
    name: str
    mode: int
    size: int

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


class Ext4Reader:
    """Batched read-only access to one ext4 filesystem inside the image."""

    def __init__(self, image: Path, offset: int, label: str, workdir: Path) -> None:
        self.image = image
        self.offset = offset
        self.label = label
        self.workdir = workdir
        self._counter = 0

    def batch(
        self, files: list[str], dirs: list[str]
    ) -> tuple[dict[str, bytes | None], dict[str, list[DirEntry] | None]]:
        """Read `files` (None when missing) and list `dirs` in one debugfs run."""
        debugfs = require_tool("debugfs", "e2fsprogs")
        commands = []
        targets: dict[str, Path] = {}
        for path in files:
            self._counter += 1
            target = self.workdir / f"{self.label}-{self._counter}"
            targets[path] = target
            commands.append(f'dump "{path}" "{target}"')
        for path in dirs:
            commands.append(f'ls -p "{path}"')
        with plain_name(self.image) as image:  # a `?` in the name is e2fsprogs syntax
            proc = run(
                [debugfs, "-c", "-f", "-", f"{image}?offset={self.offset}"],
                input=("\n".join(commands) + "\n").encode(),
                check=False,
                timeout=60,
            )
        stderr = (proc.stderr or b"").decode("utf-8", "replace")
        if proc.returncode or "while trying to open" in stderr or "not open" in stderr:
            raise NoExt4Filesystem(self.label)
        contents: dict[str, bytes | None] = {}
        for path, target in targets.items():
            contents[path] = target.read_bytes() if target.is_file() else None
        listings = self._parse_listings((proc.stdout or b"").decode("utf-8", "replace"), dirs)
        return contents, listings

    @staticmethod
    def _parse_listings(output: str, dirs: list[str]) -> dict[str, list[DirEntry] | None]:
        listings: dict[str, list[DirEntry] | None] = {d: None for d in dirs}
        current: str | None = None
        for line in output.splitlines():
            if line.startswith("debugfs: "):
                command = line[len("debugfs: ") :]
                current = None
                if command.startswith("ls -p "):
                    current = command[len("ls -p ") :].strip('"')
                    listings[current] = None
                continue
            if current is None or not line.startswith("/"):
                continue
            # /inode/mode/uid/gid/name/size/  (the name cannot contain '/')
            fields = line.split("/")
            if len(fields) < 7:
                continue
            name = fields[5]
            if name in (".", ".."):
                entries = listings[current]
                if entries is None:
                    listings[current] = []
                continue
            entries = listings[current]
            if entries is None:
                entries = listings[current] = []
            try:
                entries.append(DirEntry(name, int(fields[2], 8), int(fields[6] or 0)))
            except ValueError:
                continue
        return listings


def read_ext4_files(
    image: Path, offset: int, paths: list[str], label: str = "partition"
) -> dict[str, bytes | None]:
    """Read files from the ext4 filesystem at `offset` of `image`, read-only, in one debugfs
    run (None for a missing file). Raises UserInputError if there is no ext4 there."""
    with scratch_tree("probe") as workdir:
        try:
            contents, _ = Ext4Reader(image, offset, label, Path(workdir)).batch(paths, [])
        except NoExt4Filesystem:
            raise UserInputError(
                f"{image}: no ext4 filesystem at offset {offset}",
                hint="the partition holds no ext4 filesystem; 'engine-disk inspect DISK' "
                "shows the partitions",
            ) from None
    return contents
