"""Remote (branch-office) servers: `engine-sync serve --upstream URL --bandwidth RATE` relays
kits from the main server at that rate, as a task on the main server (throttled, resumed
from its partial file after a restart and after a network link cut under a running remote,
retried while the main server cannot be reached, cancellable); its computers read "Ready to download
update" until the kit is there; a real disk behind it ends Blank on the new version; and the
main server's upgrade is refused while a remote runs (upgrade guide 6.4).

One main and one remote server per module (real processes on 127.0.0.1, free ports); the
remote is restarted at the bandwidth a test needs. Waits end on what the servers report (a
deadline only turns a hang into a failure, it asserts no time)."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from commands import engine_sync
from disk_images.probe import Installation, probe
from disk_images.state import UpgradeStatus
from enginekit.errors import MissingCapability
from reference_builds.media import reference_iso
from sync_server.client import ApiRefused, SyncClient

from .conftest import (
    RunningServer,
    agent,
    registered_disk,
    running_server,
    start_server,
    stop_server,
)
from .link_proxy import LinkProxy

READY = UpgradeStatus.READY_TO_DOWNLOAD.value
SLOW = "4M"  # bytes per second: an 80 MB kit takes 20 s, so a test sees it part-way
FAST = "1G"
LINK = "16M"  # the cut-link test: part-way after a progress report, done seconds later


@dataclass
class RemoteServer:
    """`engine-sync serve --upstream` as its own process, restartable on the same port."""

    data: Path
    log: Path
    upstream: str
    token: str
    port: int = 0
    bandwidth: str = ""
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, bandwidth: str) -> None:
        assert self.proc is None
        self.bandwidth = bandwidth
        self.proc, url = start_server(
            self.data,
            self.log,
            "--listen",
            f"127.0.0.1:{self.port}",
            "--upstream",
            self.upstream,
            "--upstream-token",
            self.token,
            "--bandwidth",
            bandwidth,
            "--contact-interval",
            "0.2",
        )
        self.port = int(url.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL: no goodbye to the main server, the partial file stays as it was."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        assert self.proc is not None
        proc, self.proc = self.proc, None
        stop_server(proc, self.log)

    def restart(self, bandwidth: str, *, empty: bool = False) -> None:
        """Start again at `bandwidth`; with `empty`, with no kit in its cache."""
        if self.proc is not None:
            self.stop()
        if empty:
            for kit in (self.data / "kits").glob("kit-*"):
                kit.unlink()
        self.start(bandwidth)

    def running_at(self, bandwidth: str) -> None:
        if self.proc is None or self.bandwidth != bandwidth:
            self.restart(bandwidth)

    def partials(self) -> list[Path]:
        return sorted((self.data / "kits").glob("*.partial"))


@dataclass(frozen=True)
class Fleet:
    main: RunningServer
    remote: RemoteServer
    kits: dict[str, dict[str, Any]]  # version: the kit's document
    isos: dict[str, Path]


def until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Ask `check` again until it answers something true; fail naming `what` on a hang."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if found := check():
            return found
        pause.wait(0.05)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("remote-servers")
    try:
        isos = {"5.0.0": reference_iso("5.0.0")}
    except MissingCapability as exc:
        pytest.skip(f"cannot build the reference media here: {exc.message}")
    with running_server(base / "main", base / "main.log") as main:
        with main.admin() as admin:
            site = admin.post("/api/v1/sites", {"name": "branch"})
            for iso in isos.values():
                task = admin.upload("/api/v1/imports", iso)
                task = admin.get(f"/api/v1/tasks/{task['id']}?wait=120")
                assert task["state"] == "succeeded", task
            kits = {k["version"]: k for k in admin.get("/api/v1/kits")}
        remote = RemoteServer(base / "remote", base / "remote.log", main.url, site["token"])
        try:
            yield Fleet(main, remote, kits, isos)
        finally:
            if remote.proc is not None:
                remote.stop()


def restart_empty(fleet: Fleet, bandwidth: str) -> None:
    """The remote again at `bandwidth` with an empty cache, once the main server knows."""
    fleet.remote.restart(bandwidth, empty=True)

    def known_empty() -> bool:
        with fleet.main.admin() as admin:
            (site,) = admin.get("/api/v1/sites")
        return bool(site["running"]) and not site["kits"]

    until(known_empty, "the main server sees the remote's empty cache")


def cli(fleet: Fleet, *args: str) -> tuple[int, str, str]:
    """`engine-sync ARGS` against the main server with the admin token, in-process."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    argv = [*args, "--server", fleet.main.url, "--token", fleet.main.admin_token]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = engine_sync.main(argv)
    assert "Traceback" not in err.getvalue()
    return status, out.getvalue(), err.getvalue()


def simulated_computer(fleet: Fleet, name: str, version: str) -> tuple[SyncClient, int]:
    """A computer registered with the remote server: its check-ins go through it."""
    with fleet.main.admin() as admin:
        token = admin.post("/api/v1/tokens", {"name": name})["token"]
    computer = SyncClient(fleet.remote.url, token)
    checked_in = computer.post("/api/v1/checkin", {"version": version})
    return computer, int(checked_in["computer_id"])


def relay_task(fleet: Fleet, version: str) -> dict[str, Any] | None:
    with fleet.main.admin() as admin:
        found = [
            t
            for t in admin.get("/api/v1/tasks")
            if t["kind"] == "Relay kit" and t["source"] == f"{version} to site branch"
        ]
    return found[-1] if found else None


def relay_under_way(fleet: Fleet, version: str) -> dict[str, Any]:
    """Wait for the relay task of `version` to have moved some bytes but not all."""
    task: dict[str, Any] = until(
        lambda: (t := relay_task(fleet, version)) and 0 < t["progress"] < 1 and t,
        f"the relay of Engine {version} under way",
    )
    return task


def relay_finished(fleet: Fleet, version: str) -> dict[str, Any]:
    """Wait for the relay task of `version` to have succeeded."""
    task: dict[str, Any] = until(
        lambda: (t := relay_task(fleet, version)) and t["state"] == "succeeded" and t,
        f"the relay of Engine {version} finished",
    )
    return task


def upgrade_status(fleet: Fleet, computer_id: int) -> str:
    with fleet.main.admin() as admin:
        (assignment,) = admin.get(f"/api/v1/computers/{computer_id}")["assignments"]
    return str(assignment["status"])


@pytest.mark.slow  # the module's servers and kit import take seconds
def test_throttled_relay_shows_ready_and_a_cut_link_resumes_from_the_partial(
    fleet: Fleet,
) -> None:
    restart_empty(fleet, SLOW)
    kit = fleet.kits["5.0.0"]
    computer, computer_id = simulated_computer(fleet, "branch-pc", "4.5.0")
    with computer:
        assert cli(fleet, "assign", "5.0.0", "--computer", str(computer_id))[0] == 0
        assert computer.post("/api/v1/checkin", {"version": "4.5.0"})["update"] is None
        assert upgrade_status(fleet, computer_id) == READY

        # Throttled: part of the kit has arrived and the computer still waits for it.
        running = relay_under_way(fleet, "5.0.0")
        assert running["state"] == "running"
        assert computer.post("/api/v1/checkin", {"version": "4.5.0"})["update"] is None
        out = cli(fleet, "computers", "--json")[1]
        (shown,) = [c for c in json.loads(out) if c["id"] == computer_id]
        assert shown["site"] == "branch"
        assert shown["assignments"][0]["status_label"] == "Ready to download update"
        assert "Relay kit 5.0.0 to site branch running" in cli(fleet, "tasks")[1]

        # The link is cut (the remote killed), then the remote comes back, unthrottled.
        fleet.remote.kill()
        (partial,) = fleet.remote.partials()
        have = partial.stat().st_size
        assert 0 < have < kit["size"]
        fleet.remote.start(FAST)
        done = relay_finished(fleet, "5.0.0")
        assert done["id"] == running["id"]  # the same task, resumed
        asked = re.findall(
            rf"kit {kit['id']} to site branch: bytes=(\d+)- of {kit['size']} bytes",
            fleet.main.log.read_text(),
        )
        assert asked, "the remote asked for no range"
        resumed_at = int(asked[-1])
        assert resumed_at == have  # the partial file's size: only the rest is sent again
        assert kit["size"] - resumed_at < kit["size"]

        offer = computer.post("/api/v1/checkin", {"version": "4.5.0"})["update"]
        assert offer["status"] == UpgradeStatus.SIGNALLED.value
        assert upgrade_status(fleet, computer_id) == UpgradeStatus.SIGNALLED.value
        downloaded = fleet.remote.data.parent / "downloaded.iso"
        assert computer.download(offer["download"], downloaded) == kit["size"]
    assert downloaded.read_bytes() == fleet.isos["5.0.0"].read_bytes()
    downloaded.unlink()


@pytest.mark.slow  # the module's servers and kit import take seconds
def test_a_link_down_at_start_and_cut_mid_relay_is_retried_and_the_relay_resumes(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The remote keeps running through it all: it starts while the main server cannot be
    reached, retries, relays once the link is up, and after the link breaks mid-transfer
    resumes from its partial file by itself."""
    if fleet.remote.proc is not None:
        fleet.remote.stop()  # one remote per site at a time
    kit = fleet.kits["5.0.0"]
    main_port = int(fleet.main.url.rsplit(":", 1)[1])
    with LinkProxy(main_port) as link:
        remote = RemoteServer(
            tmp_path / "remote", tmp_path / "remote.log", link.url, fleet.remote.token
        )
        remote.start(LINK)
        try:

            def retries() -> int:
                return remote.log.read_text().count("(tried again in 0.2 s)")

            until(lambda: retries() >= 2, "the remote retries its unreachable main server")
            with fleet.main.admin() as admin:
                pc_token = admin.post("/api/v1/tokens", {"name": "branch-link"})["token"]
            with SyncClient(remote.url, pc_token) as computer:
                with pytest.raises(ApiRefused) as refused:
                    computer.post("/api/v1/checkin", {"version": "4.5.0"})
                assert refused.value.status == 503
                assert "cannot reach its main server" in refused.value.message

                link.bring_up()
                computer_id = int(
                    computer.post("/api/v1/checkin", {"version": "4.5.0"})["computer_id"]
                )
                assert cli(fleet, "assign", "5.0.0", "--computer", str(computer_id))[0] == 0
                assert computer.post("/api/v1/checkin", {"version": "4.5.0"})["update"] is None
                assert upgrade_status(fleet, computer_id) == READY
                running = relay_under_way(fleet, "5.0.0")

                link.cut()
                cut_at = retries()
                until(lambda: retries() > cut_at, "the remote retries after the cut")
                (partial,) = remote.partials()
                have = partial.stat().st_size
                assert 0 < have < kit["size"]

                link.bring_up()  # the same remote process finishes the transfer
                done = relay_finished(fleet, "5.0.0")
                assert done["id"] == running["id"]  # the same task, resumed
                asked = re.findall(
                    rf"kit {kit['id']} to site branch: bytes=(\d+)- of {kit['size']} bytes",
                    fleet.main.log.read_text(),
                )
                assert int(asked[-1]) >= have  # from the partial file, not from byte 0
                offer = computer.post("/api/v1/checkin", {"version": "4.5.0"})["update"]
                assert offer["status"] == UpgradeStatus.SIGNALLED.value
        finally:
            if remote.proc is not None:
                remote.stop()


@pytest.mark.slow  # the module's servers and kit import take seconds
def test_a_cancelled_relay_stops_and_its_partial_file_is_removed(fleet: Fleet) -> None:
    restart_empty(fleet, SLOW)
    computer, computer_id = simulated_computer(fleet, "branch-cancel", "4.5.0")
    with computer:
        assert cli(fleet, "assign", "5.0.0", "--computer", str(computer_id))[0] == 0
        computer.post("/api/v1/checkin", {"version": "4.5.0"})
        running = relay_under_way(fleet, "5.0.0")
        status, out, err = cli(fleet, "task", "cancel", str(running["id"]))
        assert status == 0, err
        assert "cancelled" in out
        until(lambda: not fleet.remote.partials(), "the remote dropped its partial file")
        assert computer.post("/api/v1/checkin", {"version": "4.5.0"})["update"] is None
    assert upgrade_status(fleet, computer_id) == READY
    cancelled = relay_task(fleet, "5.0.0")
    assert cancelled is not None
    assert (cancelled["id"], cancelled["state"]) == (running["id"], "cancelled")
    with fleet.main.admin() as admin:
        (site,) = admin.get("/api/v1/sites")
    assert "5.0.0" not in site["kits"]


def console_page(fleet: Fleet, path: str) -> str:
    """A console page as the signed-in admin sees it (the sign-in form, then the page)."""
    with httpx.Client(base_url=f"{fleet.main.url}/console", follow_redirects=True) as browser:
        form = browser.get("/login").text
        match = re.search(r'name="csrf" value="([^"]+)"', form)
        assert match is not None
        signed_in = browser.post(
            "/login", data={"token": fleet.main.admin_token, "csrf": match.group(1)}
        )
        assert signed_in.status_code == 200
        answer = browser.get(path)
        assert answer.status_code == 200
        return answer.text


@pytest.mark.slow  # the module's servers and kit import take seconds
def test_the_console_shows_ready_to_download_update_and_the_site(fleet: Fleet) -> None:
    restart_empty(fleet, SLOW)
    computer, computer_id = simulated_computer(fleet, "branch-console", "4.5.0")
    with computer:
        assert cli(fleet, "assign", "5.0.0", "--computer", str(computer_id))[0] == 0
        computer.post("/api/v1/checkin", {"version": "4.5.0"})
    kit_tab = console_page(fleet, f"/kits/{fleet.kits['5.0.0']['id']}/computers")
    cell = re.search(rf'<span id="upgrade-{computer_id}"[^>]*>([^<]*)<', kit_tab)
    assert cell is not None
    assert cell.group(1) == "Ready to download update"
    computers = console_page(fleet, "/computers")
    row = re.search(rf'<tr data-computer="{computer_id}">(.*?)</tr>', computers, re.S)
    assert row is not None
    assert "<td>branch</td>" in row.group(1)
    assert 'data-status="Ready to download update"' in row.group(1)


@pytest.mark.slow  # the module's servers and kit import take seconds
def test_the_server_upgrade_is_refused_while_a_remote_server_runs(fleet: Fleet) -> None:
    fleet.remote.running_at(fleet.remote.bandwidth or FAST)
    until(lambda: cli(fleet, "sites", "--json")[1].count('"running": true'), "the remote runs")
    status, _, err = cli(fleet, "upgrade-server", "--to", "5.0.0")
    assert status == 2
    (error,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert "stop every remote server" in error
    assert "site 1 (branch)" in error
    fleet.remote.stop()
    err = cli(fleet, "upgrade-server", "--to", "5.0.0")[2]
    assert "stop every remote server" not in err  # another rule may refuse, not the remote


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_a_real_disk_behind_the_remote_server_ends_blank_on_the_new_version(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.remote.running_at(FAST)
    with fleet.main.admin() as admin:
        token = admin.post("/api/v1/tokens", {"name": "branch-disk"})["token"]
    disk = registered_disk(tmp_path / "pc.img", fleet.remote.url, token)
    cache = str(tmp_path / "cache")
    assert agent("--once", "--cache", cache, str(disk)) == 0
    out = cli(fleet, "computers", "--json")[1]
    (computer,) = [c for c in json.loads(out) if c["name"] == "branch-disk"]
    assert computer["site"] == "branch"
    assert cli(fleet, "assign", "5.0.0", "--computer", str(computer["id"]))[0] == 0
    until(lambda: "5.0.0" in json.loads(cli(fleet, "sites", "--json")[1])[0]["kits"], "kit there")
    capsys.readouterr()

    assert agent("--once", "--reboot", "--timeout", "600", "--cache", cache, str(disk)) == 0
    assert "Engine 5.0.0: Installed (Reboot Required) (slot B)" in capsys.readouterr().out
    with fleet.main.admin() as admin:
        after = admin.get(f"/api/v1/computers/{computer['id']}")
    assert (after["running_version"], after["site"]) == ("5.0.0", "branch")
    (assignment,) = after["assignments"]
    assert assignment["status_label"] == "Blank"
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.version == "5.0.0"
    assert f"GET /api/v1/kits/{fleet.kits['5.0.0']['id']}/file" in fleet.remote.log.read_text()


@pytest.mark.parametrize("rate", ["fast", "10", "0M", "1.5B"])
def test_a_bandwidth_that_is_not_a_rate_is_one_error_line(
    rate: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--data", str(tmp_path / "remote"), "--listen", "127.0.0.1:0"]
    argv += ["--upstream", "http://127.0.0.1:9", "--upstream-token", "t", "--bandwidth", rate]
    assert engine_sync.main(argv) == 2
    err = capsys.readouterr().err
    (error,) = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert f"--bandwidth {rate!r}" in error
    assert any(ln.startswith("hint:") for ln in err.splitlines())
    assert "Traceback" not in err
    assert not (tmp_path / "remote").exists()
