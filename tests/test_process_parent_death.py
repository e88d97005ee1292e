"""`spawn()` arms the parent-death signal with util-linux setpriv (no Python runs in the
forked child of a threaded process) and refuses to start the program when its parent died
before the signal was armed."""

from __future__ import annotations

import os
import select
import signal
import sys

from enginekit.process import _CHECK_PARENT, _die_with_parent, run, spawn

_KILLED_OWNER = """
import os, signal, threading
from enginekit.process import spawn

def start():
    procs.append(spawn(["sleep", "60"]))
    threading.Event().wait()  # the death signal follows the spawning thread: keep it

procs = []
# From a thread of a threaded process, as media/verify.py does; the thread stays alive.
threading.Thread(target=start, daemon=True).start()
while not procs:
    pass
pid = procs[0].pid
os.kill(pid, 0)  # still running while its spawner lives
print(pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _exits(pid: int, within: float) -> bool:
    """Whether `pid` exits (a zombie awaiting its reaper counts as gone) within `within` s:
    woken by the kernel through a pidfd the moment it does, not by polling a clock."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], within)
        return bool(readable)
    finally:
        os.close(pidfd)


def test_a_spawned_child_dies_with_its_sigkilled_owner() -> None:
    proc = run([sys.executable, "-c", _KILLED_OWNER], check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pid = int(proc.stdout.decode().strip())
    if not _exits(pid, within=60):
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the spawned child outlived its SIGKILLed owner")


def test_the_program_is_the_spawned_process_and_exits_normally() -> None:
    proc = spawn(["sh", "-c", "echo $$; exit 7"])
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 7
    assert int(out.decode().strip()) == proc.pid  # setpriv and the check exec in place


def test_a_child_whose_parent_already_died_does_not_start() -> None:
    argv = _die_with_parent(["echo", "started"])
    assert argv[-4:] == [_CHECK_PARENT, str(os.getpid()), "echo", "started"]
    # As if the spawner had died before setpriv armed the signal: another parent PID.
    argv[-3] = "1"
    proc = run(argv, check=False)
    assert proc.returncode == 1
    assert proc.stdout == b""
