"""Who is using a file right now: loop devices backed by it and processes holding a lock on it.

Both are matched by device and inode, never by name, so a symbolic link, a hard link or a
relative path cannot hide a user. Loop devices come from sysfs (`loop/backing_file`), locks
from `/proc/locks`, which lists every kind the kernel keeps: OFD byte-range locks (QEMU's on
bytes 100-299 of its drive files, EngineKit's disk lock), classic POSIX locks and flock.
Needs no root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SYS_BLOCK = Path("/sys/block")
PROC_LOCKS = Path("/proc/locks")

FileId = tuple[int, int]

# QEMU (block/file-posix.c) locks byte 100+n for each permission it holds and 200+n for each
# permission it refuses to share; EngineKit's disk lock (disk_images.lock) is one byte at 2**62,
# beyond any real image and far from QEMU's.
QEMU_LOCK_START = 100
QEMU_LOCK_LEN = 200
ENGINEKIT_LOCK_OFFSET = 1 << 62


def file_id(path: str | os.PathLike[str]) -> FileId | None:
    """(st_dev, st_ino) of what `path` names after following links; None if it is absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def loop_devices_backed_by(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """`/dev/loopN` for each attached loop device whose backing file is the file `path`."""
    wanted = file_id(path)
    if wanted is None:
        return ()
    found: list[tuple[int, str]] = []
    for loop_dir in SYS_BLOCK.glob("loop*"):
        try:
            backing = (loop_dir / "loop" / "backing_file").read_text(errors="replace").strip()
        except OSError:
            continue  # not attached
        # A deleted backing file is not `path`: its name ends in " (deleted)" and stats absent.
        if backing and file_id(backing) == wanted:
            number = loop_dir.name.removeprefix("loop")
            found.append((int(number) if number.isdigit() else -1, f"/dev/{loop_dir.name}"))
    return tuple(name for _, name in sorted(found))


@dataclass(frozen=True)
class FileLock:
    """One line of /proc/locks on the file: `OFDLCK WRITE 100-100`."""

    kind: str  # POSIX, OFDLCK, FLOCK, LEASE...
    access: str  # READ or WRITE
    pid: int  # -1 for OFD locks (they belong to an open file, not a process)
    start: int
    end: int | None  # None for EOF (to the end of the file)

    def overlaps(self, start: int, length: int) -> bool:
        return self.start < start + length and (self.end is None or self.end >= start)

    def describe(self) -> str:
        """`by a QEMU virtual machine (process 42)`: who holds it, from what it locks."""
        pid = f"process {self.pid}" if self.pid > 0 else ""
        # QEMU and the disk lock take OFD byte-range locks; a whole-file lock is someone else.
        ranged = self.kind == "OFDLCK" and self.end is not None
        if ranged and self.overlaps(QEMU_LOCK_START, QEMU_LOCK_LEN):
            return f"by a QEMU virtual machine{f' ({pid})' if pid else ''}"
        if ranged and self.overlaps(ENGINEKIT_LOCK_OFFSET, 1):
            return "by another EngineKit process (boot/install)"
        kind = {"OFDLCK": "OFD", "FLOCK": "flock"}.get(self.kind, self.kind)
        who = pid or "an open file"
        if self.pid > 0:
            try:
                who += f" ({Path(f'/proc/{self.pid}/comm').read_text().strip()})"
            except OSError:
                pass
        return f"by {who} (a {kind} {self.access.lower()} lock)"


def locks_on(path: str | os.PathLike[str]) -> tuple[FileLock, ...]:
    """Every lock the kernel lists on the file `path` (any process, any kind)."""
    try:
        st = os.stat(path)
        text = PROC_LOCKS.read_text()
    except OSError:
        return ()
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    found: list[FileLock] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[1] == "->":
            continue  # a blocked request waits for a lock already listed
        _, kind, _mode, access, pid, ident, start, end = fields[:8]
        if ident != key:
            continue
        found.append(
            FileLock(kind, access, int(pid), int(start), None if end == "EOF" else int(end))
        )
    return tuple(found)


def users_of(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """One phrase per user of the file, completing "is in use ...": `(attached to
    /dev/loop3)`, `by a QEMU virtual machine (process 42)`, `by another EngineKit process
    (boot/install)`. Empty when nobody uses it."""
    loops = loop_devices_backed_by(path)
    phrases = [f"(attached to {', '.join(loops)})"] if loops else []
    for lock in locks_on(path):
        phrase = lock.describe()
        if phrase not in phrases:
            phrases.append(phrase)
    return tuple(phrases)
