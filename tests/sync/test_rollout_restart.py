"""A server killed with SIGKILL during a rollout and started again on the same data loses no
committed state: every computer's Upgrade column and running version agree with its disk, and
the rollout carries on from where it was to done."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commands import engine_sync
from disk_images.probe import Installation, probe
from enginekit.process import spawn
from reference_builds.pytest_plugin import EngineMediumFactory

from .conftest import agent, registered_disk

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]


class ServerProcess:
    """`engine-sync serve` that can be killed and started again on the same address."""

    def __init__(self, data: Path, log: Path) -> None:
        self.data, self.log = data, log
        self.listen = "127.0.0.1:0"
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log_file:
            proc = spawn(
                [
                    sys.executable,
                    "-m",
                    "commands.engine_sync",
                    "serve",
                    "--data",
                    self.data,
                    "--listen",
                    self.listen,
                ],
                stderr=log_file.fileno(),
            )
        self._proc = proc
        assert proc.stdout is not None
        first = proc.stdout.readline().decode()
        assert first.startswith("listening on "), self.log.read_text()
        self.url = first.split()[2]
        self.listen = self.url.removeprefix("http://")  # the disks know this address

    def kill(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGKILL)
        self._proc.wait()
        self._proc = None

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> Any:
        token = (self.data / "admin-token").read_text().strip()
        status = engine_sync.main([*args, "--json", "--server", self.url, "--token", token])
        out = capsys.readouterr().out
        assert status == 0, out
        return json.loads(out)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "sync-data", tmp_path / "server.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def _agree(server: ServerProcess, capsys: pytest.CaptureFixture[str], disks: list[Path]) -> None:
    """Every computer's Upgrade column (its newest assignment; Blank without one) and running
    version are what its disk says."""
    computers = {c["name"]: c for c in server.cli(capsys, "computers")}
    assert len(computers) == len(disks)
    for disk in disks:
        computer = computers[disk.stem]
        found = probe(disk)
        assert isinstance(found, Installation)
        column = computer["assignments"][-1]["status"] if computer["assignments"] else ""
        assert (computer["running_version"], column) == (
            found.version,
            found.upgrade_status.value,
        ), computer["name"]


def test_a_server_killed_during_a_rollout_loses_no_committed_state(
    server: ServerProcess,
    engine_medium: EngineMediumFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.cli(capsys, "import", str(engine_medium("5.0.0")), "--wait")
    disks = []
    for name in ("pc0", "pc1"):
        token = server.cli(capsys, "token", "create", "--name", name)["token"]
        disks.append(registered_disk(tmp_path / f"{name}.img", server.url, token))
    cache = str(tmp_path / "cache")
    assert agent("--once", "--cache", cache, *map(str, disks)) == 0
    capsys.readouterr()
    (test_id,) = [c["id"] for c in server.cli(capsys, "computers") if c["name"] == "pc0"]
    rollout = server.cli(
        capsys,
        "rollout",
        "create",
        "5.0.0",
        "--test-group",
        str(test_id),
        "--stages",
        "100%",
        "--success-threshold",
        "100",
        "--error-threshold",
        "50",
    )
    number = str(rollout["id"])

    assert agent("--once", "--cache", cache, *map(str, disks)) == 0  # pc0 installs
    capsys.readouterr()
    server.kill()
    server.start()
    _agree(server, capsys, disks)
    assert server.cli(capsys, "rollout", "status", number)["stage"] == 0

    assert (
        agent("--once", "--reboot", "--timeout", "600", "--cache", cache, str(disks[0])) == 0
    )  # pc0 commits
    assert agent("--once", "--cache", cache, str(disks[1])) == 0  # stage 1: pc1 installs
    capsys.readouterr()
    server.kill()
    server.start()
    _agree(server, capsys, disks)
    rollout = server.cli(capsys, "rollout", "status", number)
    assert (rollout["state"], rollout["stage"]) == ("running", 1)

    assert agent("--once", "--reboot", "--timeout", "600", "--cache", cache, str(disks[1])) == 0
    capsys.readouterr()
    _agree(server, capsys, disks)
    assert server.cli(capsys, "rollout", "status", number)["state"] == "done"
