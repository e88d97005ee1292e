"""Virtual Machines -> an image -> the "Users" tab in a real headless Chromium against a real
server and simulated computers: the guide's six columns, why Running differs from Assigned in
a details row (and the cell's title), the rows following the computers' check-ins without a
reload, and "Publish new version" staged to a few users first; a forged form, an unknown
image and an HTML-looking name change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sync_agent.simulated import FleetOptions, SimulatedComputer, SimulatedFleet

from .conftest import RunningServer, running_server
from .console_browser import OVERFLOW, PHONE, UNLABELLED, Console, console_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = '<img src=x onerror="window.pwned=1">'
COLUMNS = ["Assign", "Staged", "Name", "Full Name", "Running Version", "Assigned Version"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("console-vms")
    with running_server(root / "sync-data", root / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def fleet(server: RunningServer) -> Iterator[SimulatedFleet]:
    options = FleetOptions(count=3, seed=5, interval=60.0, name_prefix="desk")
    with SimulatedFleet(server.url, server.admin_token, options) as simulated:
        simulated.run_for(60.0)  # every computer has checked in once
        with server.admin() as admin:
            for name, full_name, computer in (
                ("alice", "Alice Archer", simulated.computers[0]),
                ("bob", HOSTILE, simulated.computers[1]),
                ("carol", "Carol Cooper", simulated.computers[2]),
            ):
                body = {"name": name, "full_name": full_name, "computer_id": computer.computer_id}
                admin.post("/api/v1/users", body)
            admin.post("/api/v1/vms/office/publish", {"users": ["alice", "bob", "carol"]})
        yield simulated


@pytest.fixture(scope="module")
def console(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One browser for the module, signed in once."""
    with console_in(tmp_path_factory.mktemp("browser"), server.url, server.admin_token) as page:
        yield page


def _report(server: RunningServer, computer: SimulatedComputer, **vm: int) -> None:
    """`computer` checks in saying what it runs of the office image."""
    body = computer.checkin_request().model_dump()
    body["vms"] = [
        {"name": "office", "kind": "shared", "pv_drivers": "4.5.0", "published_for": "4.5.0"} | vm
    ]
    with server.client(computer.token) as client:
        client.post("/api/v1/checkin", body)


def _users_tab(server: RunningServer) -> dict[str, dict[str, Any]]:
    with server.admin() as admin:
        return {r["name"]: r for r in admin.get("/api/v1/vms")["users"] if r["image"] == "office"}


def _row(console: Console, user: str) -> list[str]:
    cells = f"tr[data-user='{user}'] > *"
    found = console.driver.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0]), c => c.innerText.trim())",
        cells,
    )
    assert isinstance(found, list)
    return [str(c) for c in found]


def test_users_tab_shows_the_six_columns_and_why_running_differs(
    server: RunningServer, fleet: SimulatedFleet, console: Console
) -> None:
    alice, bob, _carol = fleet.computers
    _report(server, alice, image_version=1)
    _report(server, bob, pending_version=1)
    console.open("/vms")
    console.follow("tr[data-image='office'] a")
    headers = console.driver.execute_script(
        "return Array.from(document.querySelectorAll('#vm-users thead th'), c => c.innerText)"
    )
    assert headers == COLUMNS
    assert _row(console, "alice") == ["Yes", "No", "alice", "Alice Archer", "1", "1"]
    assert _row(console, "bob") == ["Yes", "No", "bob", HOSTILE, "", "1"]
    assert console.driver.execute_script("return window.pwned === undefined")
    assert console.text("tr[data-reason-for='bob']") == (
        "Running differs from Assigned: waiting for the VM to restart"
    )
    assert console.text("tr[data-reason-for='carol']") == (
        "Running differs from Assigned: not checked in since the assignment"
    )
    assert console.attr("tr[data-user='carol'] .running", "title") == (
        "not checked in since the assignment"
    )
    assert console.driver.execute_script(
        "return document.querySelector(\"tr[data-reason-for='alice']\") === null"
    )
    console.shot("19-vm-users")

    # The rows follow the check-ins without a reload.
    _report(server, bob, image_version=1)
    console.wait(lambda _d: _row(console, "bob")[4] == "1", 10)
    assert console.driver.execute_script(
        "return document.querySelector(\"tr[data-reason-for='bob']\") === null"
    )


@pytest.mark.usefixtures("fleet")
def test_publish_new_version_staged_goes_to_the_ticked_users_only(
    server: RunningServer, console: Console
) -> None:
    before = _users_tab(server)
    console.open("/vms/office/users")
    latest = max(r["assigned_version"] for r in before.values())
    console.click("label[for='user-1']")  # alice
    assert console.el("#staged").is_selected()  # type: ignore[attr-defined]
    console.follow("#publish")
    assert console.text("#summary") == (
        f"Version {latest + 1} of office published (staged); assigned to alice."
    )
    assert _row(console, "alice")[:2] == ["Yes", "Yes"]
    assert _row(console, "alice")[5] == str(latest + 1)
    assert _row(console, "carol")[5] == str(before["carol"]["assigned_version"])
    after = _users_tab(server)
    assert after["alice"]["assigned_version"] == latest + 1
    assert after["alice"]["staged"] is True
    assert {n: after[n] for n in ("bob", "carol")} == {n: before[n] for n in ("bob", "carol")}
    console.shot("20-vm-publish-staged")

    # Staged with nobody ticked: the server's refusal, nothing published.
    console.follow("#publish")
    assert console.text("#summary").endswith("nothing was published.")
    assert _users_tab(server) == after


@pytest.mark.usefixtures("fleet")
def test_forged_publish_and_unknown_images_change_nothing(
    server: RunningServer, console: Console
) -> None:
    before = _users_tab(server)
    console.open("/vms/office/users")
    console.click("label[for='user-3']")
    console.driver.execute_script("document.querySelector('#publish').form.csrf.value = 'forged'")
    console.follow("#publish")
    console.wait(lambda d: "Form refused" in d.title)
    assert _users_tab(server) == before

    console.open("/vms/" + HOSTILE + "/users")
    console.wait(lambda d: "No such VM image" in d.title)
    assert HOSTILE in console.text("#error-message")
    assert console.driver.execute_script("return window.pwned === undefined")
    console.shot("refused-vm-image")


@pytest.mark.usefixtures("fleet")
def test_vm_pages_have_named_controls_and_fit_a_phone(console: Console) -> None:
    pages = ("/vms", "/vms/office/users")
    for path in pages:
        console.open(path)
        assert console.driver.execute_script(UNLABELLED) == [], path
    console.driver.set_window_size(*PHONE)
    try:
        for path in pages:
            console.open(path)
            assert console.driver.execute_script(OVERFLOW) <= 0, path
        console.shot("phone-vm-users")
    finally:
        console.driver.set_window_size(1280, 720)
