"""The guide's Synchronizer screens in a real headless Chromium, against a real server and
real agents on real disk images: sign in, import the 5.0.0 ISO through Import -> Engine
Update -> Specify file -> Finish, tick Upgrade on two of three 4.5.0 computers and watch
their Upgrade column go Pending -> Signalled -> Installed (Reboot Required) -> Blank while
the agents install and boot, without a reload; then cancel an active task."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from disk_images.session import open_installation
from sync_agent.daemon import AgentOptions, CycleResult, run_agents

from .conftest import registered_disk, running_server
from .console_browser import Console, chromium, screenshot_dir

pytestmark = [pytest.mark.browser, pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]

GUIDE_PATH = ["Pending", "Signalled", "Installed (Reboot Required)", "Blank"]


def test_upgrade_column_moves_on_screen_as_the_agents_run(
    engine_medium: Callable[[str], Path], tmp_path: Path
) -> None:
    # --scan-interval: the console's Import step, not the folder watcher, imports the ISO.
    with (
        running_server(
            tmp_path / "sync-data", tmp_path / "server.log", "--scan-interval", "3600"
        ) as server,
        chromium(tmp_path / "chromium-profile") as driver,
    ):
        admin = server.admin()
        disks = []
        for name in ("pc1", "pc2", "pc3"):
            token = admin.post("/api/v1/tokens", {"name": name})["token"]
            disks.append(registered_disk(tmp_path / f"{name}.img", server.url, token))
        cache = tmp_path / "agent-cache"
        lines: list[str] = []
        assert (
            run_agents(disks, AgentOptions(cache), lines.append, once=True, interval=None)
            == [CycleResult.OK] * 3
        )
        ids = {c["name"]: c["id"] for c in admin.get("/api/v1/computers")}
        shutil.copyfile(engine_medium("5.0.0"), server.data / "FileImport" / "engine-5.0.0.iso")

        console = Console(driver, server.url, screenshot_dir(tmp_path))
        console.sign_in(server.admin_token)
        console.shot("01-software-library")
        console.follow("#import")
        console.shot("02-import-engine-update")
        console.follow("#next")
        assert console.text("#file option") == "engine-5.0.0.iso"
        console.shot("03-import-specify-file")
        console.follow("#finish")
        console.wait(lambda _d: console.attr("#task-state", "data-state") == "succeeded", 300)
        console.shot("04-import-task")
        console.open("/library")
        console.follow("tr[data-kit='5.0.0'] a")

        for name in ("pc1", "pc2"):
            console.click(f"#upgrade-box-{ids[name]}")
        console.follow("#assign")
        assert console.text("#summary") == "Engine 5.0.0 assigned to 2 computer(s)."
        seen: dict[str, list[str]] = {"pc1": [], "pc2": [], "pc3": []}

        # Signalled lasts only while an agent downloads and installs (a second or two), less
        # than the page's poll on a busy machine: each agent waits there until the page has
        # shown it, so what is tested is the page, not a race.
        signalled_shown = {name: threading.Event() for name in ("pc1", "pc2")}

        def record(_driver: object) -> dict[str, list[str]]:
            for name, path in seen.items():
                status = console.attr(f"#upgrade-{ids[name]}", "data-status") or "?"
                if not path or path[-1] != status:
                    path.append(status)
                if status == "Signalled" and name in signalled_shown:
                    signalled_shown[name].set()
            return seen

        def agent_says(line: str) -> None:
            lines.append(line)
            if ": Signalled, downloading" in line:
                name = next(n for n in signalled_shown if f"/{n}.img: " in line)
                signalled_shown[name].wait(timeout=120)

        def reached(name: str, status: str) -> Callable[[object], bool]:
            return lambda driver: status in record(driver)[name]

        console.wait(lambda d: record(d)["pc1"] == record(d)["pc2"] == ["Pending"], 10)
        console.shot("05-kit-computers-pending")
        options = AgentOptions(cache, reboot=True)
        results: list[CycleResult] = []
        agents = threading.Thread(
            target=lambda: results.extend(
                run_agents(disks[:2], options, agent_says, once=True, interval=None)
            )
        )
        agents.start()
        try:
            console.wait(reached("pc1", "Installed (Reboot Required)"), 900)
            console.shot("06-kit-computers-installed")
            console.wait(reached("pc1", "Blank"), 900)
            console.wait(reached("pc2", "Blank"), 900)
        finally:
            agents.join()
        assert results == [CycleResult.OK, CycleResult.OK], lines
        assert seen["pc1"] == GUIDE_PATH, (seen, lines)
        assert seen["pc2"] == GUIDE_PATH, (seen, lines)
        assert seen["pc3"] == ["Blank"]
        console.wait(lambda _d: console.text(f"#running-{ids['pc1']}") == "5.0.0")
        console.shot("07-kit-computers-blank")

        console.open("/computers")
        console.wait(
            lambda _d: console.text(f"tr[data-computer='{ids['pc1']}'] .running") == "5.0.0"
        )
        assert console.text(f"tr[data-computer='{ids['pc3']}'] .running") == "4.5.0"
        console.shot("08-computers")
        console.follow(f"tr[data-computer='{ids['pc3']}'] a")
        console.shot("09-computer-software")

        # A Daily Roll-Up Backup scheduled for tomorrow waits queued whatever the machine's
        # speed: an active task whatever its date; its properties cancel it.
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        queued = str(admin.post("/api/v1/backups/daily", {"at": tomorrow})["id"])
        console.open("/tasks")
        console.wait(lambda _d: console.attr(f"tr[data-task='{queued}']", "data-task") == queued)
        console.shot("10-tasks-active")
        console.follow(f"tr[data-task='{queued}'] a")
        assert "must be rescheduled" in console.text("#cancel-warning")
        console.shot("11-task-properties")
        console.follow("#cancel")
        assert console.text("#summary") == f"Task {queued} was cancelled."
        assert console.attr("#task-state", "data-state") == "cancelled"
        console.shot("12-task-cancelled")


def test_a_failed_first_boot_shows_failed_with_its_reason(
    engine_medium: Callable[[str], Path], tmp_path: Path
) -> None:
    with (
        running_server(tmp_path / "sync-data", tmp_path / "server.log") as server,
        chromium(tmp_path / "chromium-profile") as driver,
    ):
        admin = server.admin()
        task = admin.upload("/api/v1/imports", engine_medium("5.0.0"))
        kit_id = admin.get(f"/api/v1/tasks/{task['id']}?wait=300")["kit_id"]
        token = admin.post("/api/v1/tokens", {"name": "pc1"})["token"]
        disk = registered_disk(tmp_path / "pc1.img", server.url, token)
        cache = tmp_path / "agent-cache"
        lines: list[str] = []
        assert run_agents([disk], AgentOptions(cache), lines.append, once=True, interval=None)
        (computer,) = admin.get("/api/v1/computers")
        admin.post(f"/api/v1/kits/{kit_id}/assignments", {"computers": [computer["id"]]})
        assert run_agents([disk], AgentOptions(cache), lines.append, once=True, interval=None)
        # The new slot's first boot fails: its initramfs is not one.
        with open_installation(disk) as session:
            session.esp.write_atomic("/engine/b/initrd.img", b"not an initramfs\n" * 512)

        console = Console(driver, server.url, screenshot_dir(tmp_path))
        console.sign_in(server.admin_token)
        console.open(f"/kits/{kit_id}/computers")
        cell = f"#upgrade-{computer['id']}"
        assert console.attr(cell, "data-status") == "Installed (Reboot Required)"
        options = AgentOptions(cache, reboot=True)
        results = run_agents([disk], options, lines.append, once=True, interval=None)
        assert results == [CycleResult.FAILED], lines
        console.wait(lambda _d: console.attr(cell, "data-status") == "Failed", 30)
        assert console.text(cell) == "Failed: reverted to 4.5.0 after a failed boot"
        console.shot("13-kit-computers-failed")
