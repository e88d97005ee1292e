"""One interface to the files of every partition, whether ext4 (mounted) or FAT (mtools).

The installer reads and writes the ESP, the system slots and storage only through
`PartitionFiles`: `DirectoryFiles` works on a mounted directory, `FatFiles` on a FAT
filesystem inside an image or device through mtools (the kernel here has no vfat driver).
Paths are absolute inside the partition (`/engine/state.json`); `..` and escapes are refused.
"""

from __future__ import annotations

import errno
import os
import posixpath
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, runtime_checkable

from disk_images.errors import PartitionFileError
from enginekit.errors import CommandFailed
from enginekit.process import require_tool, run
from enginekit.scratch import scratch_file
from enginekit.tool_paths import plain_name

COPY_CHUNK = 1024 * 1024


def normalise(path: str, where: str) -> str:
    """`path` as a normalised absolute path inside a partition, or a PartitionFileError."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise PartitionFileError(f"{where}: {path!r} is not an absolute path in the partition")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts or any("\0" in p for p in parts):
        raise PartitionFileError(f"{where}: {path!r} leaves the partition")
    return "/" + "/".join(parts)


@runtime_checkable
class PartitionFiles(Protocol):
    """File access inside one partition. `label` names it in errors (e.g. 'storage')."""

    label: str

    def read(self, path: str) -> bytes: ...

    def write_atomic(self, path: str, data: bytes | Path) -> None:
        """Write the whole file (bytes, or the content of a host file) so that a reader sees
        either the old or the new content: temp file, flush, rename over."""
        ...

    def exists(self, path: str) -> bool: ...

    def is_dir(self, path: str) -> bool: ...

    def size(self, path: str) -> int:
        """Apparent size in bytes (a sparse VM disk's full size)."""
        ...

    def list(self, directory: str) -> list[str]:
        """Names in `directory`, sorted (no '.' or '..')."""
        ...

    def remove(self, path: str) -> None: ...

    def rename(self, source: str, dest: str) -> None:
        """Rename, replacing `dest` if it exists."""
        ...

    def makedirs(self, path: str) -> None: ...

    def copy_in(self, source: Path, dest: str) -> None:
        """Stream a host file into the partition (sparse-aware where the filesystem allows)."""
        ...


def _sparse_copy(src_fd: int, dst_fd: int) -> None:
    """Copy data regions only (SEEK_DATA/SEEK_HOLE), then set the length: holes stay holes."""
    end = os.fstat(src_fd).st_size
    position = 0
    while position < end:
        try:
            data = os.lseek(src_fd, position, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole remains
            break
        hole = os.lseek(src_fd, data, os.SEEK_HOLE)
        os.lseek(src_fd, data, os.SEEK_SET)
        os.lseek(dst_fd, data, os.SEEK_SET)
        remaining = hole - data
        while remaining > 0:
            chunk = os.read(src_fd, min(COPY_CHUNK, remaining))
            if not chunk:
                break
            os.write(dst_fd, chunk)
            remaining -= len(chunk)
        position = hole
    os.ftruncate(dst_fd, end)


class DirectoryFiles:
    """PartitionFiles over a mounted filesystem at `root`."""

    def __init__(self, root: Path, label: str = "partition") -> None:
        self.root = Path(root)
        self.label = label

    def __repr__(self) -> str:
        return f"DirectoryFiles({str(self.root)!r}, label={self.label!r})"

    def _host(self, path: str) -> Path:
        clean = normalise(path, self.label)
        host = self.root / clean.lstrip("/")
        # refuse symlinks that point outside the partition (an absolute link on the disk)
        real = os.path.realpath(host)
        root = os.path.realpath(self.root)
        if real != root and not real.startswith(root + os.sep):
            raise PartitionFileError(f"{self.label}:{clean} points outside the partition")
        return host

    def _error(self, path: str, exc: OSError) -> PartitionFileError:
        hint = None
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = f"free space on the {self.label} partition, or use a larger disk"
        return PartitionFileError(f"{self.label}:{path}: {exc.strerror or exc}", hint=hint)

    def read(self, path: str) -> bytes:
        try:
            return self._host(path).read_bytes()
        except OSError as exc:
            raise self._error(path, exc) from None

    def write_atomic(self, path: str, data: bytes | Path) -> None:
        target = self._host(path)
        if not target.parent.is_dir():
            raise PartitionFileError(f"{self.label}:{path}: directory does not exist")
        try:
            fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        except OSError as exc:  # a read-only or full partition: one error line, no traceback
            raise self._error(path, exc) from None
        try:
            try:
                if isinstance(data, bytes):
                    view = memoryview(data)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                else:
                    src = os.open(data, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        _sparse_copy(src, fd)
                    finally:
                        os.close(src)
                os.fchmod(fd, 0o644)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp_name, target)
        except BaseException as exc:
            try:
                os.unlink(temp_name)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise self._error(path, exc) from None
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def exists(self, path: str) -> bool:
        return os.path.lexists(self._host(path))

    def is_dir(self, path: str) -> bool:
        return self._host(path).is_dir()

    def size(self, path: str) -> int:
        try:
            return self._host(path).stat().st_size
        except OSError as exc:
            raise self._error(path, exc) from None

    def list(self, directory: str) -> list[str]:
        try:
            return sorted(os.listdir(self._host(directory)))
        except OSError as exc:
            raise self._error(directory, exc) from None

    def remove(self, path: str) -> None:
        try:
            self._host(path).unlink()
        except OSError as exc:
            raise self._error(path, exc) from None

    def rename(self, source: str, dest: str) -> None:
        try:
            os.rename(self._host(source), self._host(dest))
        except OSError as exc:
            raise self._error(source, exc) from None

    def makedirs(self, path: str) -> None:
        try:
            self._host(path).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._error(path, exc) from None

    def copy_in(self, source: Path, dest: str) -> None:
        self.write_atomic(dest, Path(source))


class FatFiles:
    """PartitionFiles over a FAT filesystem at byte `offset` of `image` (a file or a device),
    through mtools. FAT has no atomic rename-over, so `write_atomic` writes a temp file and
    then moves it over the target in one mtools call (`mmove -D o`)."""

    def __init__(
        self, image: Path, offset: int = 0, label: str = "esp", *, read_only: bool = False
    ) -> None:
        self.image = Path(image)
        self.offset = offset
        self.label = label
        self.read_only = read_only
        self._env = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}

    def __repr__(self) -> str:
        return f"FatFiles({str(self.image)!r}, offset={self.offset}, label={self.label!r})"

    @contextmanager
    def _drive(self) -> Iterator[str]:
        # `@@` in the image's own name would be read as an offset: mtools gets a plain name.
        with plain_name(self.image) as image:
            yield f"{image}@@{self.offset}" if self.offset else image

    def _run(self, tool: str, *args: str, path: str) -> bytes:
        writes = tool in ("mmove", "mdel", "mmd", "mrd") or (tool == "mcopy" and "-o" in args)
        if self.read_only and writes:
            raise PartitionFileError(f"{self.label}:{path}: the partition is open read-only")
        program = require_tool(tool, "mtools")
        try:
            with self._drive() as drive:
                proc = run([program, "-i", drive, *args], env=self._env, timeout=300)
        except CommandFailed as exc:
            lines = [ln for ln in exc.stderr.strip().splitlines() if not ln.startswith("Warning")]
            detail = lines[-1] if lines else exc.message
            hint = exc.hint
            if "disk full" in exc.stderr.lower():
                hint = f"free space on the {self.label} partition, or use a larger disk"
            raise PartitionFileError(f"{self.label}:{path}: {detail}", hint=hint) from None
        return proc.stdout or b""

    def _entries(self, directory: str) -> dict[str, bool] | None:
        """name -> is_dir for `directory`, or None if it does not exist / is not a directory."""
        clean = normalise(directory, self.label)
        program = require_tool("mdir", "mtools")
        with self._drive() as drive:
            proc = run(
                [program, "-i", drive, "-b", "-a", f"::{clean}"],
                env=self._env,
                check=False,
                timeout=60,
            )
        if proc.returncode != 0:
            return None
        prefix = "::" + (clean.rstrip("/") + "/")
        entries: dict[str, bool] = {}
        for line in (proc.stdout or b"").decode("utf-8", "replace").splitlines():
            if not line.startswith(prefix):
                # mdir -b on a file prints the file itself: not a directory
                return None
            rest = line[len(prefix) :]
            if not rest:
                continue
            is_dir = rest.endswith("/")
            entries[rest.rstrip("/")] = is_dir
        return entries

    def _parent_entry(self, path: str) -> bool | None:
        """True if `path` is a directory, False if a file, None if it does not exist."""
        clean = normalise(path, self.label)
        if clean == "/":
            return True
        parent, name = posixpath.split(clean)
        entries = self._entries(parent)
        if entries is None:
            return None
        for entry, is_dir in entries.items():
            if entry.lower() == name.lower():  # FAT names are case-insensitive
                return is_dir
        return None

    def read(self, path: str) -> bytes:
        clean = normalise(path, self.label)
        if self._parent_entry(clean) is not False:
            raise PartitionFileError(f"{self.label}:{clean}: no such file")
        return self._run("mcopy", "-n", f"::{clean}", "-", path=clean)

    def write_atomic(self, path: str, data: bytes | Path) -> None:
        clean = normalise(path, self.label)
        parent, name = posixpath.split(clean)
        if self._parent_entry(parent) is not True:
            raise PartitionFileError(f"{self.label}:{clean}: directory does not exist")
        temp = posixpath.join(parent, f"{name}.new")
        if isinstance(data, bytes):
            with scratch_file("fat") as host:
                host.write(data)
                host.flush()
                self._run("mcopy", "-o", host.name, f"::{temp}", path=clean)
        else:
            self._run("mcopy", "-o", str(data), f"::{temp}", path=clean)
        self._run("mmove", "-D", "o", f"::{temp}", f"::{clean}", path=clean)

    def exists(self, path: str) -> bool:
        return self._parent_entry(path) is not None

    def is_dir(self, path: str) -> bool:
        return self._parent_entry(path) is True

    def size(self, path: str) -> int:
        return len(self.read(path))

    def list(self, directory: str) -> list[str]:
        clean = normalise(directory, self.label)
        entries = self._entries(clean)
        if entries is None:
            raise PartitionFileError(f"{self.label}:{clean}: no such directory")
        return sorted(entries)

    def remove(self, path: str) -> None:
        clean = normalise(path, self.label)
        self._run("mdel", f"::{clean}", path=clean)

    def rename(self, source: str, dest: str) -> None:
        src = normalise(source, self.label)
        dst = normalise(dest, self.label)
        self._run("mmove", "-D", "o", f"::{src}", f"::{dst}", path=src)

    def makedirs(self, path: str) -> None:
        clean = normalise(path, self.label)
        current = ""
        for part in clean.strip("/").split("/"):
            if not part:
                continue
            current += "/" + part
            state = self._parent_entry(current)
            if state is None:
                self._run("mmd", f"::{current}", path=current)
            elif state is False:
                raise PartitionFileError(f"{self.label}:{current}: exists and is not a directory")

    def copy_in(self, source: Path, dest: str) -> None:
        self.write_atomic(dest, Path(source))
