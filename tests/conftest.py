"""Shared test scaffolding: capability probes, per-test leak checks, common fixtures.

Tests that need root and loop devices are marked `root`; tests that boot QEMU are marked
`qemu`; tests that drive a real headless Chromium are marked `browser`. Whether they run is
decided by *probing the capability* (attach a loop device, find
QEMU and the cached kernel), never by checking the uid. In CI every probe succeeds; a skip
there is a failure of the setup, and `ENGINEKIT_REQUIRE_ALL=1` (set by .ci/run) turns every
skip, whatever raised it, into a failure.

After every test we check that nothing it created is still attached: no loop device backed
by a file under the test's tmp_path, no mount under it. Scoping the check to the test's own
directory keeps it correct when tests run in parallel under pytest-xdist. A leak is reported,
never detached by its number: by then the number may belong to another test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Generator, Iterator
from functools import cache
from pathlib import Path

import pytest

from reference_builds.kernel import Kernel


@cache
def loop_capability() -> str | None:
    """None if we can attach a loop device here, else the reason we cannot."""
    from disk_images.errors import LoopDeviceError
    from disk_images.loop import LoopDevice

    with tempfile.NamedTemporaryFile(prefix="enginekit-probe-") as backing:
        backing.truncate(1024 * 1024)
        backing.flush()
        try:
            # Held by its descriptor and released through it: never detached by number.
            with LoopDevice(Path(backing.name)):
                pass
        except LoopDeviceError as exc:
            return f"cannot attach a loop device: {exc}"
    return None


@cache
def qemu_capability() -> str | None:
    """None if QEMU, OVMF and the cached kernel are all here, else what is missing."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (run tools/setup)"
    if not Path("/usr/share/OVMF/OVMF_CODE_4M.fd").exists():
        return "OVMF is not installed (run tools/setup)"
    from reference_builds.kernel import cached_kernel

    if cached_kernel() is None:
        return "no kernel in the cache (run tools/setup)"
    return None


@cache
def browser_capability() -> str | None:
    """None if Debian's chromium, chromium-driver and Selenium are all here, else what is
    missing."""
    missing = [p for p in ("/usr/bin/chromium", "/usr/bin/chromedriver") if not Path(p).exists()]
    if missing:
        return f"{' and '.join(missing)} not installed (run tools/setup)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "Selenium is not installed in the venv (run tools/setup)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    reasons = []
    if item.get_closest_marker("browser"):
        reason = browser_capability()
        if reason:
            reasons.append(reason)
    if item.get_closest_marker("root"):
        reason = loop_capability()
        if reason:
            reasons.append(reason)
    if item.get_closest_marker("qemu"):
        reason = qemu_capability()
        if reason:
            reasons.append(reason)
    if reasons:
        pytest.skip("; ".join(reasons))


# --- ENGINEKIT_REQUIRE_ALL=1: a skip is a failure ----------------------------------------------
# Every way a test can be skipped ends in a report whose outcome is "skipped": a marker probe
# above, a fixture, a module-level skipif, `pytest.importorskip`, a skip while collecting a
# module. Where every capability is required (CI), these two hooks turn each such report into
# a failure that names the reason, so a missing tool can never pass as a green run.


def _require_all() -> bool:
    return os.environ.get("ENGINEKIT_REQUIRE_ALL") == "1"


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _as_required_failure(report: pytest.CollectReport | pytest.TestReport) -> None:
    if _require_all() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = (
            f"skipped where ENGINEKIT_REQUIRE_ALL=1 requires it to run: {_skip_reason(report)}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport() -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _as_required_failure(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report() -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _as_required_failure(report)
    return report


def _loops_backed_under(directory: Path) -> list[str]:
    proc = subprocess.run(
        ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    found = []
    for line in proc.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[1].strip().removesuffix(" (deleted)").startswith(
            str(directory)
        ):
            found.append(line.strip())
    return found


def _mounts_under(directory: Path) -> list[str]:
    found = []
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 1 and fields[1].startswith(str(directory)):
                found.append(fields[1])
    return found


@pytest.fixture(autouse=True)
def _no_leaked_kernel_resources(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a loop device or a mount behind in its tmp_path."""
    if "tmp_path" not in request.fixturenames:
        yield
        return
    tmp_path: Path = request.getfixturevalue("tmp_path")
    yield
    leaked = _loops_backed_under(tmp_path) + _mounts_under(tmp_path)
    if leaked:
        # Mounts under our own tmp_path are ours to undo; a loop device is only reported: a
        # number read here may belong to another test by the time we act on it, so nothing
        # is detached by number (the session check below fails the run as well).
        for mnt in reversed(_mounts_under(tmp_path)):
            subprocess.run(["umount", "-l", mnt], check=False)
        pytest.fail(f"test leaked kernel resources: {leaked}")


@pytest.fixture(scope="session")
def kernel() -> Kernel:
    """The Debian kernel from the cache (tools/setup fetched it)."""
    from reference_builds.kernel import cached_kernel

    found = cached_kernel()
    if found is None:
        pytest.skip("no kernel in the cache (run tools/setup)")
    return found


# --- the session-wide check -----------------------------------------------------------------
# The per-test check above only sees each test's own tmp_path. This one runs once, in the
# process that controls the run (the xdist controller, or the only process without xdist),
# after every test of every worker has finished: any loop device backed by a file of this run
# (its base temp dir, the EngineKit cache) or any mount under the base temp dir that was not
# there at the start fails the whole suite, whoever leaked it.


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def _session_roots(config: pytest.Config) -> list[Path]:
    from enginekit.cache import cache_dir

    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return [Path(base), cache_dir()]


def _session_resources(roots: list[Path]) -> set[str]:
    found: set[str] = set()
    for root in roots:
        found.update(f"loop {line}" for line in _loops_backed_under(root))
        found.update(f"mount {mnt}" for mnt in _mounts_under(root))
    return found


def _mount_namespace_of_our_own(config: pytest.Config) -> None:
    """Every process that runs tests mounts in a private mount namespace of its own, entered
    before its first test. A mount made in the host's namespace is copied into every mount
    namespace created while it exists (by another xdist worker, or by the product's own
    mounting in another test); that copy keeps the test's loop device busy after the test has
    unmounted it, so the test would no longer hold what it released. Without root the tests
    that mount are skipped by their probe anyway."""
    from disk_images.errors import MountError
    from disk_images.mount import private_mount_namespace

    if _is_controller(config) and getattr(config.option, "dist", "no") != "no":
        return  # the xdist controller runs no tests
    try:
        private_mount_namespace()
    except MountError:
        pass


def _sigint_delivered() -> None:
    """Ctrl-C reaches every test and the programs it starts. A shell without job control
    starts background commands with SIGINT ignored, and that disposition is inherited down to
    the commands a test interrupts on purpose; tests that send SIGINT would then prove
    nothing (and fail). Python installs its handler only where SIGINT was not ignored."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_sessionstart(session: pytest.Session) -> None:
    _sigint_delivered()
    _mount_namespace_of_our_own(session.config)
    if _is_controller(session.config):
        roots = _session_roots(session.config)
        session.config.stash[_BEFORE] = (roots, _session_resources(roots))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _is_controller(session.config) or _BEFORE not in session.config.stash:
        return
    roots, before = session.config.stash[_BEFORE]
    leaked = sorted(_session_resources(roots) - before)
    if leaked:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"FAILED session-wide leak check: {len(leaked)} kernel resource(s) left "
                f"attached: {leaked}",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_BEFORE = pytest.StashKey[tuple[list[Path], set[str]]]()


# --- figures the suite reports at its end ----------------------------------------------------
# Tests record figures with `record_property`; user properties travel with each report, so the
# controller prints them here under pytest-xdist too (a conftest below tests/ would not even be
# loaded by the xdist controller, and a worker's print never reaches the terminal).

KILL_TALLIES = {
    "kill_fresh_install": "fresh install killed midway",
    "kill_upgrade": "upgrade 4.5.0 -> 5.0.0 killed midway",
    "kill_migration": "migration 4.0.0 -> 4.5.0 killed midway",
}


def _kill_tallies(terminalreporter: pytest.TerminalReporter) -> None:
    """Count the verdicts the kill tests recorded with `record_property` (user properties
    travel with each report, so this works under pytest-xdist too). A verdict is JSON:
    `point`, `how`, `survived`, and optionally `booted` (a copy of the disk was booted)."""
    verdicts: dict[str, list[dict[str, object]]] = {name: [] for name in KILL_TALLIES}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", []):
                if name in verdicts:
                    verdicts[name].append(json.loads(str(value)))
    for name, found in verdicts.items():
        if not found:
            continue
        survived = [v for v in found if v["survived"]]
        booted = [v for v in found if v.get("booted")]
        terminalreporter.write_sep("-", KILL_TALLIES[name])
        line = (
            f"kill points tried: {len(found)}, survived: {len(survived)}, "
            f"lost: {len(found) - len(survived)}"
        )
        if any("booted" in v for v in found):
            line += f", booted after the kill: {len(booted)}"
        terminalreporter.write_line(line)
        for verdict in sorted(found, key=lambda v: str(v["point"])):
            mark = "ok  " if verdict["survived"] else "LOST"
            boot = " [booted]" if verdict.get("booted") else ""
            terminalreporter.write_line(f"  {mark} {verdict['point']}: {verdict['how']}{boot}")


def _upgrade_matrix(terminalreporter: pytest.TerminalReporter) -> None:
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", []):
                if name != "upgrade_matrix" or getattr(report, "when", None) != "call":
                    continue
                cells: dict[str, str] = json.loads(str(value))
                terminalreporter.write_sep("-", "upgrade matrix (installed -> medium)")
                for pair, outcome in sorted(cells.items()):
                    terminalreporter.write_line(f"  {pair}: {outcome}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    _upgrade_matrix(terminalreporter)
    _kill_tallies(terminalreporter)
