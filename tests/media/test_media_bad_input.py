"""Every bad input, through the CLI: one clear `error:` line naming the problem,
a non-zero exit status, never a traceback."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pycdlib
import pytest

from commands.engine_media import main
from enginekit.errors import UserInputError
from enginekit.process import run
from media.reader import MediumReader

from .conftest import BlockNode, SmallPayload


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, captured.err
    assert status != 0
    return status, errors[0]


def _xorriso_iso(tree: Path, out: Path) -> Path:
    """A plain Rock Ridge + Joliet ISO of `tree` made by an outside tool."""
    run(["xorriso", "-as", "mkisofs", "-R", "-J", "-V", "ENGINE_5_0_0", "-o", out, tree])
    return out


def test_truncated_iso(reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    size = reference_iso_copy.stat().st_size
    with open(reference_iso_copy, "r+b") as fp:
        fp.truncate(size // 2)
    # One wording everywhere; a failed verification (exit 1) where the command verifies,
    # bad input (exit 2) for inspect.
    expected = (
        f"error: {reference_iso_copy}: truncated: the file has {size // 2} bytes but the ISO "
        f"declares {size} bytes"
    )
    for command, exit_status in (
        (["verify"], 1),
        (["verify", "--json"], 1),
        (["verify", "--boot"], 1),
        (["md5", "check"], 1),
        (["inspect"], 2),
    ):
        status, line = _run_cli([*command, str(reference_iso_copy)], capsys)
        assert (status, line) == (exit_status, expected), command


def test_flipped_byte_in_a_payload_file(
    reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = "/system/root/etc/engine/defaults.json"
    iso = pycdlib.PyCdlib()
    iso.open(str(reference_iso_copy))
    extent = iso.get_record(rr_path=target).extent_location()
    iso.close()
    with open(reference_iso_copy, "r+b") as fp:
        fp.seek(extent * 2048 + 3)
        byte = fp.read(1)
        fp.seek(extent * 2048 + 3)
        fp.write(bytes([byte[0] ^ 0x01]))
    status, line = _run_cli(["verify", str(reference_iso_copy)], capsys)
    assert status == 1
    assert "verification failed" in line
    assert "system/root/etc/engine/defaults.json: sha256 is" in line
    # The JSON report names the same file and check.
    assert main(["verify", "--json", str(reference_iso_copy)]) == 1
    report = json.loads(capsys.readouterr().out)
    failed = {c["name"]: c["detail"] for c in report["checks"] if not c["ok"]}
    assert set(failed) == {"md5", "files"}
    assert "defaults.json" in failed["files"]


def test_missing_manifest(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = small_payload()
    (tree / "engine/manifest.json").unlink()
    iso = _xorriso_iso(tree, tmp_path / "nomanifest.iso")
    status, line = _run_cli(["verify", str(iso)], capsys)
    assert status == 1
    assert "no /engine/manifest.json on the medium" in line


@pytest.mark.parametrize(
    ("bad_path", "why"), [("../x", "escapes the medium"), ("/etc/x", "is absolute")]
)
def test_manifest_path_escaping(
    small_payload: SmallPayload,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad_path: str,
    why: str,
) -> None:
    tree = small_payload()
    manifest_path = tree / "engine/manifest.json"
    doc = json.loads(manifest_path.read_text())
    doc["files"].append({"path": bad_path, "size": 1, "sha256": "0" * 64})
    manifest_path.write_text(json.dumps(doc))
    # As a payload to build from: refused before anything is written.
    out = tmp_path / "x.iso"
    status, line = _run_cli(["build", "--payload", str(tree), "-o", str(out)], capsys)
    assert status == 2
    assert why in line
    assert bad_path in line
    assert not out.exists()
    # On a medium made by another tool: verify refuses the manifest.
    iso = _xorriso_iso(tree, tmp_path / "escape.iso")
    status, line = _run_cli(["verify", str(iso)], capsys)
    assert status == 1
    assert why in line
    assert bad_path in line


def test_not_an_iso(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "notes.iso"
    junk.write_bytes(b"this is a text file, not an ISO\n" * 3000)
    for command in (["verify"], ["inspect", "--json"], ["md5", "check"]):
        status, line = _run_cli([*command, str(junk)], capsys)
        assert status == 2
        assert str(junk) in line


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.iso"
    for command in (["verify"], ["inspect"], ["md5", "check"], ["md5", "implant"]):
        status, line = _run_cli([*command, str(missing)], capsys)
        assert status == 2
        assert line == f"error: {missing}: no such file"


@contextlib.contextmanager
def _searchable_by_everyone(path: Path) -> Iterator[None]:
    """Let other users reach `path` (o+x on each ancestor that lacks it), restored after."""
    changed = []
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            changed.append((parent, mode))
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    try:
        yield
    finally:
        for parent, mode in reversed(changed):
            parent.chmod(stat.S_IMODE(mode))


@pytest.mark.root
def test_an_iso_the_user_cannot_read(reference_iso_copy: Path) -> None:
    """A 0600 root file, read as nobody: one error line naming the file, exit 2."""
    reference_iso_copy.chmod(0o600)
    script = Path(sys.executable).with_name("engine-media")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    with _searchable_by_everyone(reference_iso_copy.parent):
        for command in (["inspect"], ["inspect", "--json"], ["verify"], ["md5", "check"]):
            proc = run([*nobody, script, *command, reference_iso_copy], check=False, timeout=60)
            err = proc.stderr.decode()
            errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
            assert proc.returncode == 2, (command, err)
            assert len(errors) == 1, (command, err)
            assert errors[0].startswith(f"error: {reference_iso_copy}: "), command
            assert "ermission denied" in errors[0], command
            assert "\nhint: " in err, command


@pytest.mark.parametrize("kind", ["directory", "fifo", "/dev/null"])
def test_not_a_regular_file(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Never opened: a FIFO would block the read until someone writes to it."""
    target = {"directory": tmp_path, "fifo": tmp_path / "pipe.iso", "/dev/null": None}[kind]
    if kind == "fifo":
        os.mkfifo(tmp_path / "pipe.iso")
    target = target or Path("/dev/null")
    for command in (["inspect"], ["verify"], ["md5", "check"]):
        status, line = _run_cli([*command, str(target)], capsys)
        assert (status, line) == (2, f"error: {target}: not a regular file"), command


def test_the_reader_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    """The installer opens its medium with MediumReader: a FIFO must be refused, not read
    (that would wait for a writer forever)."""
    fifo = tmp_path / "pipe.iso"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def open_it() -> None:
        try:
            MediumReader.open(fifo).close()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    worker = threading.Thread(target=open_it, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        # Unblock the reader (open a writer end and close it) so the thread can finish.
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join()
        pytest.fail("MediumReader.open blocked on a FIFO")
    assert len(outcome) == 1
    assert isinstance(outcome[0], UserInputError)
    assert outcome[0].message == f"{fifo}: not an ISO file, a block device or a payload directory"


def test_payload_directory_without_manifest(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = small_payload()
    (tree / "engine/manifest.json").unlink()
    out = tmp_path / "x.iso"
    status, line = _run_cli(["build", "--payload", str(tree), "-o", str(out)], capsys)
    assert status == 2
    assert "no engine/manifest.json" in line
    assert str(tree) in line
    assert not out.exists()
    status, line = _run_cli(
        ["build", "--payload", str(tmp_path / "absent"), "-o", str(out)], capsys
    )
    assert line == f"error: payload {tmp_path / 'absent'} does not exist"


def test_changed_payload_file_is_refused_at_build(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = small_payload()
    (tree / "engine/EULA.txt").write_text("changed after the manifest was made\n")
    status, line = _run_cli(
        ["build", "--payload", str(tree), "-o", str(tmp_path / "x.iso")], capsys
    )
    assert status == 2
    assert "engine/EULA.txt" in line
    assert [p for p in tmp_path.iterdir() if p.suffix in (".iso", ".partial")] == []
    shutil.rmtree(tree)


@pytest.mark.root
def test_build_and_implant_refuse_a_block_device(
    small_payload: SmallPayload,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    block_node: BlockNode,
) -> None:
    from enginekit.errors import UserInputError
    from media import isomd5

    node = block_node.path
    status, line = _run_cli(["build", "--payload", str(small_payload()), "-o", str(node)], capsys)
    assert status == 2
    assert line == (
        f"error: {node}: is a block device; to write a stick use 'engine-media usb write'"
    )
    status, line = _run_cli(["build", "--reference", "5.0.0", "-o", str(node)], capsys)
    assert status == 2
    assert "is a block device" in line
    status, line = _run_cli(["md5", "implant", str(node)], capsys)
    assert status == 2
    assert str(node) in line
    with pytest.raises(UserInputError, match="is a block device; to write a stick use"):
        isomd5.implant(node)
    assert stat.S_ISBLK(node.lstat().st_mode)
    assert node.lstat().st_rdev == block_node.rdev
    assert block_node.backing.read_bytes() == bytes(1 << 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fakeblk", "payload0"]


def test_second_implant_names_the_force_option(
    reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The reference ISO has its checksum implanted already.
    assert main(["md5", "implant", str(reference_iso_copy)]) == 2
    err = capsys.readouterr().err
    assert "already holds an isomd5sum checksum" in err
    (hint,) = [ln for ln in err.splitlines() if ln.startswith("hint:")]
    assert "add --force to overwrite it" in hint
    assert "pass force" not in hint


def test_a_file_name_that_is_not_utf8_is_refused_at_build(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Latin-1 name from an old archive: one line naming it, not an encoding crash."""
    payload = small_payload()
    (payload / "extra").mkdir()
    bad = os.path.join(os.fsencode(payload / "extra"), b"caf\xe9.txt")
    with open(bad, "wb") as stream:
        stream.write(b"menu\n")
    status, line = _run_cli(["build", "--payload", str(payload), "-o", str(tmp_path / "o.iso")],
                            capsys)  # fmt: skip
    assert status == 2
    assert line == f"error: {payload}: 'extra/caf\\udce9.txt' is not valid UTF-8"
    assert not (tmp_path / "o.iso").exists()


@pytest.mark.root
def test_an_unreadable_payload_file_is_refused_before_any_tool_runs(
    small_payload: SmallPayload, tmp_path: Path
) -> None:
    """A mode-000 boot/initrd.img, built by root without its DAC override: one error line
    naming the payload's file (not a tool's scratch copy), exit 2, no image."""
    tree = small_payload()
    unreadable = tree / "boot/initrd.img"
    unreadable.chmod(0)
    out = tmp_path / "x.iso"
    script = Path(sys.executable).with_name("engine-media")
    drop_dac = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"]
    proc = run([*drop_dac, script, "build", "--payload", tree, "-o", out], check=False, timeout=120)
    err = proc.stderr.decode()
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2, err
    assert errors == [f"error: {unreadable}: cannot read it: Permission denied"], err
    assert "\nhint: " in err
    assert "mcopy" not in err
    assert "Traceback" not in err
    assert [p for p in tmp_path.iterdir() if p.suffix in (".iso", ".partial")] == []
