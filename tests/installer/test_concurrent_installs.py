"""`engine-install` holds the target's disk lock from before its probe to its last
write, so two installs started together on one image cannot both pass the guard.

Two real `engine-install` processes race on one blank image: exactly one installs, the other
refuses in one line naming the holder, and the disk ends a complete Engine installation. A
dry run refuses while another process holds the exclusive lock, and holds no lock after it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from disk_images.lock import _HELD, disk_lock, held_by_enginekit
from disk_images.probe import Installation, probe

FRESH = """\
[eula]
accept = true
[keyboard]
layout = "de"
[registration]
mode = "standalone"
"""

ROOT = Path(__file__).resolve().parents[2]

HOLDER = """
import sys
from pathlib import Path
from disk_images.lock import disk_lock
with disk_lock(Path(sys.argv[1]), exclusive=True):
    print("locked", flush=True)
    sys.stdin.read()
"""


def _install(iso: Path, target: Path, answers: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "commands.engine_install",
            "--media",
            str(iso),
            "--target",
            str(target),
            "--answers",
            str(answers),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


def _finish(proc: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.root
@pytest.mark.slow
def test_two_installs_at_once_one_wins_the_other_refuses(
    tmp_path: Path, iso: Path, blank: Path
) -> None:
    answers = tmp_path / "a.toml"
    answers.write_text(FRESH)
    results = [_finish(p) for p in [_install(iso, blank, answers) for _ in range(2)]]
    # Without the lock both partitioned and made filesystems: the disk ended corrupt (a GPT
    # CRC mismatch) although one of them reported success. Which one wins, and whether the
    # loser met the winner's lock or its finished disk, depends on the scheduler.
    found = probe(blank)
    assert isinstance(found, Installation), (found, results)
    assert found.install_complete
    assert found.version == "5.0.0"
    assert found.in_use_by == ()
    assert sorted(status for status, _, _ in results) == [0, 2], results
    _, out, err = next(r for r in results if r[0] == 2)
    assert "partition" not in out, out  # refused before writing
    assert "mkfs" not in out, out
    assert len(err.splitlines()) == 2, err


@pytest.mark.root
@pytest.mark.slow
def test_an_install_started_while_another_writes_names_the_holder(
    tmp_path: Path, iso: Path, blank: Path
) -> None:
    answers = tmp_path / "a.toml"
    answers.write_text(FRESH)
    first = _install(iso, blank, answers)
    assert first.stdout is not None
    # Freeze the first run mid-write (its progress lines are flushed one by one), so the
    # second one certainly starts while the first holds the disk.
    while (line := first.stdout.readline()) and "mkfs" not in line.decode():
        pass
    assert line, "the first install ended before it made filesystems"
    os.kill(first.pid, signal.SIGSTOP)
    try:
        status, out, err = _finish(_install(iso, blank, answers))
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert status == 2, (out, err)
    lines = err.splitlines()
    assert lines[0] == (
        f"error: {blank}: is in use by another EngineKit process (boot/install); "
        "nothing was written"
    ), err
    assert len(lines) == 2, err
    assert lines[1].startswith("hint: "), err
    assert _finish(first)[0] == 0
    found = probe(blank)
    assert isinstance(found, Installation), found
    assert found.install_complete
    assert found.version == "5.0.0"


@pytest.mark.root
def test_dry_run_refuses_while_a_writer_holds_the_disk(
    tmp_path: Path, iso: Path, blank: Path
) -> None:
    answers = tmp_path / "a.toml"
    answers.write_text(FRESH)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(blank)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        dry = _install(iso, blank, answers, "--dry-run")
        out, err = (s.decode() for s in dry.communicate(timeout=120))
        assert dry.returncode == 2, (out, err)
        assert "is in use by another EngineKit process" in err.splitlines()[0]
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=20)
    dry = _install(iso, blank, answers, "--dry-run")
    out, err = (s.decode() for s in dry.communicate(timeout=120))
    assert dry.returncode == 0, err


@pytest.mark.root
def test_dry_run_in_process_leaves_no_lock(iso: Path, blank: Path) -> None:
    from installer.engine.run import dry_run_check
    from installer.plan import InstallMode, InstallPlan

    plan = InstallPlan(
        target=blank,
        medium=iso,
        mode=InstallMode.FRESH,
        target_version="5.0.0",
        eula_accepted=True,
        keyboard="de",
    )
    dry_run_check(plan)
    assert not _HELD
    assert not held_by_enginekit(blank)
    with disk_lock(blank, exclusive=True):  # nothing of the dry run's lock is left
        pass
