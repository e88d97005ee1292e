"""Every path a command takes, given something that is not what it needs, is one error line.

Each sub-command of engine-media, engine-disk, engine-install and engine-sync (its `import`;
`serve --data` creates what is missing, so tests/sync/test_serve.py covers it) is run with
each of its path arguments set, in turn, to a missing path, a directory, a FIFO, /dev/null, a
file it may not read, and (where the command writes) a place it may not write. Every run must
end with an exit status of 1-3, exactly one `error:` line naming the path and one `hint:` line, no
traceback, no nested parentheses, and the file at the path as it was. A run that hangs (a FIFO
opened for reading waits for a writer forever) fails at its timeout.

Each run keeps root but loses CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (`setpriv
--bounding-set`): root reads and writes through any mode bits, and without those two it meets
a mode-000 file and a read-only directory as any user does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pytest

from enginekit.text import parenthesis_depth

pytestmark = pytest.mark.root

DROP_DAC = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")
TIMEOUT = 30  # seconds; a failing run takes a few, a FIFO waiting for a writer forever
ANSWERS = '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[registration]\nmode = "standalone"\n'


class Case(StrEnum):
    MISSING = "missing"
    DIRECTORY = "directory"
    FIFO = "fifo"
    DEV_NULL = "dev-null"
    UNREADABLE = "unreadable"
    UNWRITABLE = "unwritable"


class Use(StrEnum):
    """What the command does with the path."""

    READS = "reads"  # an existing file or tree it reads
    CREATES = "creates"  # a new file it writes
    CHANGES = "changes"  # an existing file it reads and writes in place

    @property
    def cases(self) -> tuple[Case, ...]:
        common = (Case.MISSING, Case.DIRECTORY, Case.FIFO, Case.DEV_NULL)
        if self is Use.READS:
            return (*common, Case.UNREADABLE)
        if self is Use.CREATES:
            return (*common, Case.UNWRITABLE)
        return (*common, Case.UNREADABLE, Case.UNWRITABLE)


@dataclass(frozen=True)
class PathArgument:
    """`argv` holds `{P}` where the path under test goes, and `{ISO}`, `{DISK}`, `{ANSWERS}`,
    `{WORK}` for valid values of the other arguments."""

    command: str
    argument: str
    use: Use
    argv: tuple[str, ...]


MEDIA = (sys.executable, "-m", "commands.engine_media")
DISK = (sys.executable, "-m", "commands.engine_disk")
INSTALL = (sys.executable, "-m", "commands.engine_install")
SYNC = (sys.executable, "-m", "commands.engine_sync")
SYNC_CLIENT = ("--server", "http://127.0.0.1:9", "--token", "t")  # checked after the path
INSTALL_ARGS = ("--media", "{ISO}", "--target", "{DISK}", "--answers", "{ANSWERS}")

ARGUMENTS = (
    PathArgument(
        "media-build",
        "payload",
        Use.READS,
        (*MEDIA, "build", "--payload", "{P}", "-o", "{WORK}/out.iso"),
    ),
    PathArgument(
        "media-build", "output", Use.CREATES, (*MEDIA, "build", "--reference", "5.0.0", "-o", "{P}")
    ),
    PathArgument("media-inspect", "iso", Use.READS, (*MEDIA, "inspect", "{P}")),
    PathArgument("media-verify", "iso", Use.READS, (*MEDIA, "verify", "{P}")),
    PathArgument(
        "media-md5-implant", "iso", Use.CHANGES, (*MEDIA, "md5", "implant", "--force", "{P}")
    ),
    PathArgument("media-md5-check", "iso", Use.READS, (*MEDIA, "md5", "check", "{P}")),
    PathArgument("media-usb-list", "image", Use.READS, (*MEDIA, "usb", "list", "--image", "{P}")),
    PathArgument(
        "media-usb-write",
        "iso",
        Use.READS,
        (*MEDIA, "usb", "write", "--yes", "{P}", "{WORK}/stick.img"),
    ),
    PathArgument(
        "media-usb-write", "target", Use.CHANGES, (*MEDIA, "usb", "write", "--yes", "{ISO}", "{P}")
    ),
    PathArgument(
        "media-usb-verify", "iso", Use.READS, (*MEDIA, "usb", "verify", "{P}", "{WORK}/stick.img")
    ),
    PathArgument(
        "media-usb-verify", "target", Use.READS, (*MEDIA, "usb", "verify", "{ISO}", "{P}")
    ),
    PathArgument("disk-create", "disk", Use.CREATES, (*DISK, "create", "{P}", "--size", "64M")),
    PathArgument("disk-inspect", "disk", Use.READS, (*DISK, "inspect", "{P}")),
    PathArgument("disk-boot", "disk", Use.CHANGES, (*DISK, "boot", "{P}", "--timeout", "30")),
    PathArgument(
        "install",
        "media",
        Use.READS,
        (*INSTALL, "--media", "{P}", "--target", "{DISK}", "--answers", "{ANSWERS}"),
    ),
    PathArgument(
        "install",
        "target",
        Use.CHANGES,
        (*INSTALL, "--media", "{ISO}", "--target", "{P}", "--answers", "{ANSWERS}"),
    ),
    PathArgument(
        "install",
        "answers",
        Use.READS,
        (*INSTALL, "--media", "{ISO}", "--target", "{DISK}", "--answers", "{P}"),
    ),
    PathArgument("install", "validate", Use.READS, (*INSTALL, "--validate", "{P}")),
    PathArgument(
        "install",
        "record-answers",
        Use.CREATES,
        (*INSTALL, *INSTALL_ARGS, "--record-answers", "{P}"),
    ),
    PathArgument("sync-import", "iso", Use.READS, (*SYNC, "import", "{P}", *SYNC_CLIENT)),
)

MATRIX = [
    pytest.param(argument, case, id=f"{argument.command}-{argument.argument}-{case}")
    for argument in ARGUMENTS
    for case in argument.use.cases
]


@dataclass(frozen=True)
class Inputs:
    """Valid values for the arguments not under test."""

    iso: Path
    disk: Path
    answers: Path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    from disk_images.image import MIB, create_image
    from reference_builds.media import reference_iso

    top = tmp_path_factory.mktemp("inputs")
    iso = top / "engine-5.0.0.iso"
    shutil.copyfile(reference_iso("5.0.0"), iso)
    disk = top / "blank.img"
    create_image(disk, 600 * MIB)
    answers = top / "fresh.toml"
    answers.write_text(ANSWERS)
    return Inputs(iso, disk, answers)


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    for path in tmp_path.rglob("*"):  # mode 000 and 555 directories, for the cleanup
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


def _make(case: Case, use: Use, argument: PathArgument, work: Path, inputs: Inputs) -> Path:
    """The path for `case`."""
    if case is Case.MISSING:
        # A new output in a directory that is not there; an input that is not there.
        return work / "no-such-dir" / "out" if use is Use.CREATES else work / "no-such-file"
    if case is Case.DIRECTORY:
        path = work / "a-directory"
        path.mkdir()
        path.chmod(0o755)
        return path
    if case is Case.FIFO:
        path = work / "a-fifo"
        os.mkfifo(path, 0o666)
        return path
    if case is Case.DEV_NULL:
        return Path("/dev/null")
    if case is Case.UNREADABLE:
        if argument.argument == "payload":  # a tree whose manifest may not be read
            path = work / "tree"
            (path / "engine").mkdir(parents=True)
            (path / "engine" / "manifest.json").write_text("{}")
            (path / "engine" / "manifest.json").chmod(0o000)
            return path
        path = work / "secret.bin"
        path.write_bytes(b"\x55" * 65536)
        path.chmod(0o000)
        return path
    # UNWRITABLE: a new file in a read-only directory, or a read-only file.
    if use is Use.CREATES:
        parent = work / "read-only-dir"
        parent.mkdir()
        parent.chmod(0o555)
        return parent / "out"
    path = work / "read-only.img"
    shutil.copyfile(
        inputs.disk if argument.command.startswith(("disk", "install")) else inputs.iso, path
    )
    path.chmod(0o444)
    return path


def _snapshot(path: Path) -> tuple[object, ...] | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    digest = ""
    if stat.S_ISREG(st.st_mode):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, digest)


@pytest.mark.parametrize(("argument", "case"), MATRIX)
def test_a_bad_path_is_one_error_line_with_a_hint(
    argument: PathArgument, case: Case, inputs: Inputs, work: Path
) -> None:
    (work / "stick.img").write_bytes(b"")
    path = _make(case, argument.use, argument, work, inputs)
    values = {
        "{P}": str(path),
        "{ISO}": str(inputs.iso),
        "{DISK}": str(inputs.disk),
        "{ANSWERS}": str(inputs.answers),
    }
    argv = [values.get(a, a).replace("{WORK}", str(work)) for a in argument.argv]
    before = _snapshot(path)
    env = {**os.environ, "TMPDIR": str(work), "HOME": str(work)}
    env.pop("ENGINEKIT_DEBUG", None)
    try:
        done = subprocess.run(
            [*DROP_DAC, *argv],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argument.command} hung on a {case} {argument.argument}")
    err = done.stderr
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    hints = [line for line in lines if line.startswith("hint:")]
    assert "Traceback" not in err, err
    assert done.returncode in (1, 2, 3), (done.returncode, err)
    assert len(errors) == 1, err
    assert len(hints) == 1, err
    names = (str(path), path.name, str(path.parent))
    assert any(name in errors[0] for name in names), err
    assert parenthesis_depth(errors[0]) <= 1, err
    assert parenthesis_depth(hints[0]) <= 1, err
    assert _snapshot(path) == before
