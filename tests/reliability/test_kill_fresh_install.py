"""A fresh install killed midway: SIGKILL at every install checkpoint and at random
moments in between, then nothing may be left attached, and running the installer again must
either complete the install or say clearly that the disk holds an incomplete install and
offer erase (and the erase then completes it).

The installer runs as the real console script (`engine-install --answers`) on a blank sparse
image. Checkpoint kills use the engine's own seam (`ENGINEKIT_CRASH_AT=<checkpoint>`: the
process SIGKILLs itself on reaching that step); random kills SIGKILL the whole process group
after a delay hypothesis picks, so a child such as mkfs or mcopy dies mid-write too, as on a
power cut. Each kill point records whether the disk survived; the terminal summary (see
conftest) prints how many were tried and how many survived.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disk_images.image import SECTOR, create_image, partition_image
from disk_images.layout import engine_partitions, table_type
from disk_images.loop import backing_file
from disk_images.probe import Installation, NoInstallation, NoInstallationKind, probe
from enginekit.process import spawn
from enginekit.versions import DiskLayout
from installer.engine.checkpoints import CRASH_ENV, FRESH_STEPS
from reference_builds.answer_files import FRESH_STANDALONE, erase_standalone

from .conftest import (
    CliOutcome,
    assert_clean_outcome,
    console_script,
    error_lines,
    fuzz_examples,
    run_console,
)

pytestmark = [pytest.mark.root, pytest.mark.slow]

KILL_PROPERTY = "kill_fresh_install"
DISK_SIZE = 1024 * 1024 * 1024


@dataclass
class KillRun:
    """One blank disk, the answers, and a private TMPDIR for the installer's temp files."""

    workdir: Path
    medium: Path

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.image = create_image(self.workdir / "blank.img", DISK_SIZE)
        self.answers = self.workdir / "fresh.toml"
        self.answers.write_text(FRESH_STANDALONE)
        self.tmpdir = self.workdir / "tmp"
        self.tmpdir.mkdir()

    def argv(self, answers: Path | None = None) -> list[object]:
        return [
            "--media",
            self.medium,
            "--target",
            self.image,
            "--answers",
            answers or self.answers,
        ]

    def install(self, answers: Path | None = None, crash_at: str | None = None) -> CliOutcome:
        env = {"TMPDIR": str(self.tmpdir)}
        if crash_at is not None:
            env[CRASH_ENV] = crash_at
        return run_console("engine-install", *self.argv(answers), timeout=180, env=env)


def loops_backed_by(image: Path) -> list[str]:
    found = []
    for block in sorted(Path("/sys/block").glob("loop*")):
        current = backing_file(Path("/dev") / block.name)
        if current is not None and current.removesuffix(" (deleted)") == str(image):
            found.append(f"/dev/{block.name}")
    return found


def mounts_of(image: Path, workdir: Path) -> list[str]:
    loops = set(loops_backed_by(image))
    found = []
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if fields[0] in loops or fields[1].startswith(str(workdir)):
                found.append(f"{fields[0]} on {fields[1]}")
    return found


def assert_nothing_left_attached(run: KillRun) -> None:
    """Loop devices detach themselves once the dead process's namespace is gone, which the
    kernel does asynchronously: wait for that (the bound only catches a release that never
    comes, generous so a loaded machine cannot trip it), then nothing may remain."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not loops_backed_by(run.image) and not mounts_of(run.image, run.workdir):
            return
        time.sleep(0.1)
    raise AssertionError(
        f"left behind after the kill: loops {loops_backed_by(run.image)}, "
        f"mounts {mounts_of(run.image, run.workdir)}"
    )


def litter(run: KillRun) -> list[str]:
    """Temp files and empty mount point dirs the killed process could not remove."""
    return sorted(str(p.relative_to(run.tmpdir)) for p in run.tmpdir.iterdir())


def complete_5_0_0(image: Path) -> bool:
    found = probe(image)
    return isinstance(found, Installation) and found.install_complete and found.version == "5.0.0"


def recover(run: KillRun) -> str:
    """Run the installer again after a kill; return how the disk came back (or fail)."""
    assert_nothing_left_attached(run)
    left = litter(run)
    how = _recover(run)
    return f"{how}; temp entries left by the kill: {', '.join(left)}" if left else how


def _recover(run: KillRun) -> str:
    after_kill = probe(run.image)
    if isinstance(after_kill, Installation) and after_kill.install_complete:
        # Killed after the last write: the install had completed; the fresh answers are
        # now refused in one clear line because an Engine is there.
        assert complete_5_0_0(run.image), after_kill
        again = run.install()
        assert_clean_outcome(again)
        return "already complete"
    assert isinstance(after_kill, NoInstallation), after_kill
    assert after_kill.kind in (
        NoInstallationKind.BLANK,
        NoInstallationKind.INCOMPLETE,
        NoInstallationKind.DAMAGED,
    ), f"after the kill the probe says {after_kill.kind}: {after_kill.reason}"
    again = run.install()
    assert_clean_outcome(again)
    if again.status == 0:
        assert complete_5_0_0(run.image), probe(run.image)
        return f"completed by running again (disk was {after_kill.kind.value})"
    # Not completed: then it must say the install is incomplete and offer erase.
    message = " ".join(error_lines(again.err)) + again.err
    assert "incomplete" in message, again.describe()
    assert "erase" in message, again.describe()
    assert after_kill.disk_id, after_kill
    erase = run.workdir / "erase.toml"
    erase.write_text(erase_standalone(after_kill.disk_id))
    erased = run.install(erase)
    assert erased.status == 0, erased.describe()
    assert complete_5_0_0(run.image), probe(run.image)
    return f"completed by erase (disk was {after_kill.kind.value})"


def record(
    record_property: Callable[[str, object], None], point: str, body: Callable[[], str]
) -> None:
    """Run one kill point's checks and record the verdict for the terminal summary."""
    try:
        how = body()
    except BaseException as exc:
        record_property(
            KILL_PROPERTY, json.dumps({"point": point, "survived": False, "how": str(exc)[:200]})
        )
        raise
    record_property(KILL_PROPERTY, json.dumps({"point": point, "survived": True, "how": how}))


@pytest.fixture(scope="module")
def medium() -> Path:
    from reference_builds.media import reference_iso

    return reference_iso("5.0.0")


@dataclass(frozen=True)
class Baseline:
    run: KillRun
    outcome: CliOutcome
    seconds: float


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, medium: Path) -> Baseline:
    """One uninterrupted install: the reference result, and how long the command runs (the
    random kills spread over that time, whatever the machine's speed)."""
    run = KillRun(tmp_path_factory.mktemp("baseline"), medium)
    start = time.monotonic()
    outcome = run.install()
    return Baseline(run, outcome, time.monotonic() - start)


def test_uninterrupted_fresh_install(baseline: Baseline) -> None:
    """The same command, not killed, installs 5.0.0 and leaves no temp files behind."""
    assert baseline.outcome.status == 0, baseline.outcome.describe()
    assert complete_5_0_0(baseline.run.image)
    assert_nothing_left_attached(baseline.run)
    assert litter(baseline.run) == []


@pytest.mark.parametrize("checkpoint", [c.value for c in FRESH_STEPS])
def test_killed_at_checkpoint(
    checkpoint: str,
    tmp_path: Path,
    medium: Path,
    record_property: Callable[[str, object], None],
) -> None:
    def body() -> str:
        run = KillRun(tmp_path / "run", medium)
        killed = run.install(crash_at=checkpoint)
        assert killed.status == -signal.SIGKILL, (
            f"the install did not die at {checkpoint}\n{killed.describe()}"
        )
        return recover(run)

    record(record_property, f"checkpoint {checkpoint}", body)


def test_killed_while_sfdisk_writes_the_table(
    tmp_path: Path, medium: Path, record_property: Callable[[str, object], None]
) -> None:
    """The moment a random kill once hit: sfdisk (killed with the installer's process group)
    had written the GPT's entry arrays but not yet the primary header and the protective MBR
    (libfdisk writes them last). Made here exactly: the real sfdisk table, its first two
    sectors blanked again. The probe must call it an incomplete install, not a disk of
    unknown data, and the installer must bring it back."""

    def body() -> str:
        run = KillRun(tmp_path / "run", medium)
        layout = DiskLayout.GPT_AB
        partition_image(run.image, table_type(layout), engine_partitions(layout, DISK_SIZE))
        with run.image.open("r+b") as image:
            image.write(bytes(2 * SECTOR))  # LBA 0 (MBR) and 1 (primary header) not yet written
        found = probe(run.image)
        assert isinstance(found, NoInstallation), found
        assert found.kind is NoInstallationKind.INCOMPLETE, found.reason
        return recover(run)

    record(record_property, "sfdisk cut short (entries without header)", body)


@settings(
    max_examples=fuzz_examples(4),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fraction=st.floats(min_value=0.1, max_value=0.8))
def test_killed_after_random_delay(
    fraction: float,
    tmp_path: Path,
    medium: Path,
    baseline: Baseline,
    record_property: Callable[[str, object], None],
) -> None:
    # A kill at `fraction` of the uninterrupted run's duration (the first ~0.3 s of which is
    # the interpreter starting).
    delay = fraction * baseline.seconds

    def body() -> str:
        run = KillRun(tmp_path / f"delay-{time.monotonic_ns()}", medium)
        script = console_script("engine-install")
        # spawn() starts a new session: killing its process group takes mkfs, mcopy,
        # debugfs... down too, mid-write, like a power cut.
        old_tmpdir = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = str(run.tmpdir)
        try:
            child = spawn([script, *map(str, run.argv())])
        finally:
            if old_tmpdir is None:
                del os.environ["TMPDIR"]
            else:
                os.environ["TMPDIR"] = old_tmpdir
        try:
            time.sleep(delay)
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            output, _ = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        steps = [ln for ln in output.decode(errors="replace").splitlines() if ln.startswith("[")]
        step = steps[-1].split("]", 1)[1].strip() if steps else "start-up"
        if child.returncode == -signal.SIGKILL:
            when = f"killed during {step}"
        else:
            when = f"finished before the kill (exit {child.returncode})"
        return f"{when}; {recover(run)}"

    record(record_property, f"random delay {delay:.2f} s", body)
