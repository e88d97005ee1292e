"""`spawn()` arms the parent-death signal with util-linux setpriv (no Python runs in the
forked child of a threaded process) and refuses to start the program when its parent died
before the signal was armed."""

from __future__ import annotations

import os
import signal
import sys
import time

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


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_spawned_child_dies_with_its_sigkilled_owner() -> None:
    proc = run([sys.executable, "-c", _KILLED_OWNER], check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pid = int(proc.stdout.decode().strip())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        raise AssertionError("the spawned child outlived its SIGKILLed owner")


def test_the_program_is_the_spawned_process_and_exits_normally() -> None:
    proc = spawn(["sh", "-c", "echo $$; exit 7"])
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 7
    assert int(out.decode().strip()) == proc.pid  # setpriv and the check exec in place


def test_a_child_whose_parent_already_died_does_not_start() -> None:
    argv = _die_with_parent(["echo", "started"])
    assert argv[-4:] == [_CHECK_PARENT, str(os.getpid()), "echo", "started"]
    # As if the spawner had died before setpriv armed the signal: another parent PID.
    argv[-3] = "1"
    proc = run(argv, check=False)
    assert proc.returncode == 1 and proc.stdout == b""
