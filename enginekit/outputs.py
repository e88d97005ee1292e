"""The one rule for every command that writes a new file (ISO build, disk create, recorded
answers): check the output path before any work, build beside it, publish in one step.

`check_new_output` refuses, each in one line: a symbolic link (never written through), a
directory, a device, a FIFO or socket, a missing directory; the input itself (same device and
inode, so a hard link or a link to it counts) or a path inside an input tree; a file in use (a
loop device backed by it, any lock on it: QEMU's, EngineKit's disk lock, flock; see
`enginekit.file_users`); and an existing file unless `force`. `publish` then gives the finished
partial its name: by `link()` when nothing was to be replaced, so a file that appeared
meanwhile is never replaced; by `rename()` with `force`, only if the file there is still the
one checked and still unused.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from enginekit.errors import UserInputError
from enginekit.file_users import FileId, file_id, users_of
from enginekit.scratch import PARTIAL_TAG, create_owned_partial, sweep_owned_partials

NEW_NAME_HINT = "choose another name, or pass --force to replace it"


@dataclass(frozen=True)
class NewOutput:
    """An output path that passed the checks; `replaces` is the file `force` may replace."""

    path: Path
    replaces: FileId | None


def _refuse(path: Path, problem: str, hint: str) -> UserInputError:
    return UserInputError(f"{path}: {problem}", hint=hint)


def _inside(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def check_new_output(
    path: Path,
    *,
    force: bool = False,
    inputs: Sequence[tuple[str, Path | None]] = (),
    exists_problem: str = "already exists",
    exists_hint: str = NEW_NAME_HINT,
    block_device_advice: str = "give the name of a new file",
    block_device_hint: str = "an output is always a new regular file",
) -> NewOutput:
    """Refuse an output path we must not write (see the module); return what was checked.
    `inputs` are (what, path) pairs such as ("the payload", DIR); None entries are skipped."""
    path = Path(path)
    try:
        st: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _refuse(path, f"cannot be used as output ({exc.strerror})", NEW_NAME_HINT) from None
    if st is not None:
        mode = st.st_mode
        if stat.S_ISLNK(mode):
            raise _refuse(
                path,
                "is a symbolic link; refusing to write through it",
                f"name the file itself ({os.path.realpath(path)}) or a new file",
            )
        if stat.S_ISDIR(mode):
            raise _refuse(path, "is a directory, not a regular file", "give a file name inside it")
        if stat.S_ISBLK(mode):
            raise _refuse(path, f"is a block device; {block_device_advice}", block_device_hint)
        if not stat.S_ISREG(mode):
            kind = "a character device" if stat.S_ISCHR(mode) else "a FIFO or socket"
            raise _refuse(
                path, f"is not a regular file ({kind})", "give the name of a new regular file"
            )
    parent = path.parent
    if not parent.is_dir():
        raise _refuse(path, f"no such directory {parent}", "create the directory first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _refuse(
            path, f"cannot create a file in {parent} (permission denied)", "write elsewhere"
        )
    real = os.path.join(os.path.realpath(parent), path.name)
    for what, source in inputs:
        if source is None:
            continue
        if st is not None and (st.st_dev, st.st_ino) in _ids_in(Path(source)):
            problem = (
                f"is a file of {what} ({source})"
                if Path(source).is_dir()
                else f"is {what} ({source}) itself"
            )
            raise _refuse(path, problem, "write the output to another file")
        if Path(source).is_dir() and _inside(real, os.path.realpath(source)):
            raise _refuse(
                path, f"is inside {what} ({source})", "write the output outside that directory"
            )
    if st is not None:
        users = users_of(path)
        if users:
            raise _refuse(
                path,
                f"is in use {', '.join(users)}",
                "stop what uses it (detach the loop device, shut the VM down) or pick another name",
            )
        if not force:
            raise _refuse(path, exists_problem, exists_hint)
    return NewOutput(path, (st.st_dev, st.st_ino) if st is not None else None)


def _ids_in(source: Path) -> set[FileId]:
    """The identity of `source` and, for a directory, of every file in its tree (a hard link
    outside the tree is the same file as the one inside)."""
    ids = {i for i in (file_id(source),) if i is not None}
    if source.is_dir():
        for top, _dirs, names in os.walk(source):
            for name in names:
                try:
                    st = os.lstat(os.path.join(top, name))
                except OSError:
                    continue
                ids.add((st.st_dev, st.st_ino))
    return ids


def _current_id(path: Path) -> FileId | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def publish(
    partial: Path, output: NewOutput, what: str = "the output", *, recheck_users: bool = True
) -> NewOutput:
    """Give the finished `partial` (in the output's directory) the output's name. Returns a
    NewOutput that may replace the file just published (for a writer that updates it).
    `recheck_users=False` is for a writer that holds its own lock on the replaced file."""
    path = output.path
    if output.replaces is None:
        try:
            os.link(partial, path)  # EEXIST instead of replacing a newcomer
        except FileExistsError:
            raise _refuse(
                path,
                f"appeared while {what} was being built; left it untouched",
                NEW_NAME_HINT,
            ) from None
        partial.unlink()
    else:
        if _current_id(path) not in (output.replaces, None):
            raise _refuse(
                path,
                f"was replaced by another file while {what} was being built; left it untouched",
                "run the command again to replace the new file",
            )
        users = users_of(path) if recheck_users and _current_id(path) is not None else ()
        if users:
            raise _refuse(
                path,
                f"came into use while {what} was being built ({'; '.join(users)}); "
                "left it untouched",
                "stop what uses it, then run the command again",
            )
        os.replace(partial, path)
    return NewOutput(path, _current_id(path))


def partial_prefix(path: Path) -> str:
    """`.NAME.enginekit-partial.`: where a writer builds `path` (see enginekit.scratch)."""
    return f".{Path(path).name}.{PARTIAL_TAG}."


def write_new_file(output: NewOutput, data: bytes, what: str = "the file") -> NewOutput:
    """Write a small file completely beside its name, then `publish` it."""
    directory = output.path.parent
    sweep_owned_partials(directory, partial_prefix(output.path))
    fd, partial = create_owned_partial(directory, partial_prefix(output.path))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return publish(partial, output, what)
    finally:
        os.close(fd)
        partial.unlink(missing_ok=True)
