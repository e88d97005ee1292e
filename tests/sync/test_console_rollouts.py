"""The Rollouts pages in a real headless Chromium against a real server and simulated
computers: a rollout created on the form (test group, stages, thresholds) is watched stage by
stage without a reload, then paused, resumed and cancelled with its buttons; the server's own
validation shows on the form; a forged form, an unknown rollout and an HTML-looking name
change nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reference_builds.media import reference_iso
from sync_agent.simulated import FleetOptions, Outcomes, SimulatedFleet

from .conftest import RunningServer, running_server
from .console_browser import OVERFLOW, PHONE, UNLABELLED, Console, console_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = '<img src=x onerror="window.pwned=1">'
INTERVAL = 60.0
# Every simulated upgrade succeeds, each step taking ten simulated seconds.
SURE = Outcomes(
    download_failure=0.0,
    install_failure=0.0,
    boot_fallback=0.0,
    download_seconds=(10.0, 10.0),
    install_seconds=(10.0, 10.0),
    reboot_seconds=(10.0, 10.0),
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("console-rollouts")
    with running_server(root / "sync-data", root / "server.log") as running:
        with running.admin() as admin:
            task = admin.upload("/api/v1/imports", reference_iso("5.0.0"))
            assert admin.get(f"/api/v1/tasks/{task['id']}?wait=300")["state"] == "succeeded"
        yield running


@pytest.fixture(scope="module")
def fleet(server: RunningServer) -> Iterator[SimulatedFleet]:
    options = FleetOptions(count=5, seed=3, outcomes=SURE, interval=INTERVAL, name_prefix="pc")
    with SimulatedFleet(server.url, server.admin_token, options) as simulated:
        simulated.run_for(INTERVAL)  # every computer has checked in once
        yield simulated


@pytest.fixture(scope="module")
def console(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """One browser for the module, signed in once."""
    with console_in(tmp_path_factory.mktemp("browser"), server.url, server.admin_token) as page:
        yield page


def _rollouts(server: RunningServer) -> list[dict[str, Any]]:
    with server.admin() as admin:
        found: list[dict[str, Any]] = admin.get("/api/v1/rollouts")
        return found


def _fill(console: Console, field: str, value: str) -> None:
    element: Any = console.el(f"#{field}")
    element.clear()
    element.send_keys(value)


def test_a_rollout_made_on_the_form_moves_stage_by_stage_and_obeys_its_buttons(
    server: RunningServer, fleet: SimulatedFleet, console: Console
) -> None:
    first = fleet.computers[0].computer_id
    console.open("/rollouts")
    console.follow("#new-rollout")
    console.click(f"#test-{first}")
    _fill(console, "name", "Engine 5.0 to the office")
    _fill(console, "stages", "50%,100%")
    _fill(console, "success_threshold", "100%")
    _fill(console, "error_threshold", "50")
    console.shot("15-rollout-new")
    console.follow("#create")
    assert console.text("#rollout-state") == "running"
    assert console.attr("#stage-0", "data-started") == "yes"
    assert console.attr("#stage-1", "data-started") == "no"
    assert console.attr(f"#stage-0 tr[data-target='{first}'] .upgrade", "data-status") == "Pending"
    rollout_id = _rollouts(server)[0]["id"]

    # The test group upgrades; the page follows without a reload.
    while _rollouts(server)[0]["stage"] < 1:
        fleet.run_for(5.0)
    outcome = f"#stage-0 tr[data-target='{first}'] .outcome"
    console.wait(lambda _d: console.attr(outcome, "data-outcome") == "succeeded", 10)
    console.wait(lambda _d: console.attr("#stage-1", "data-started") == "yes", 10)
    assert console.attr("#stage-2", "data-started") == "no"
    console.shot("16-rollout-stage-1")

    console.follow("#pause")
    assert console.text("#summary") == f"Rollout {rollout_id} is paused."
    assert _rollouts(server)[0]["state"] == "paused"
    console.follow("#pause")
    assert console.text("#summary").startswith(f"rollout {rollout_id}: cannot pause")
    assert _rollouts(server)[0]["state"] == "paused"
    console.follow("#resume")
    assert console.text("#summary") == f"Rollout {rollout_id} is running."
    console.follow("#cancel")
    assert console.text("#summary") == f"Rollout {rollout_id} is cancelled."
    assert console.attr("#rollout-state", "data-state") == "cancelled"
    stage_2 = [t for t in _rollouts(server)[0]["targets"] if t["stage"] == 2]
    assert stage_2
    assert {t["outcome"] for t in stage_2} == {"not offered"}
    for target in stage_2:
        cell = f"#stage-2 tr[data-target='{target['computer_id']}'] .outcome"
        assert console.attr(cell, "data-outcome") == "not offered"
    console.shot("17-rollout-cancelled")
    console.open("/rollouts")
    assert console.attr(f"tr[data-rollout='{rollout_id}'] .rollout-state", "data-state") == (
        "cancelled"
    )


def test_the_servers_validation_shows_on_the_form_and_creates_nothing(
    server: RunningServer, fleet: SimulatedFleet, console: Console
) -> None:
    before = _rollouts(server)
    console.open("/rollouts/new")
    _fill(console, "stages", "half")
    _fill(console, "error_threshold", "0")
    console.follow("#create")
    problems = console.text("#problems")
    assert "Test group:" in problems
    assert "Stages: stage 'half' is not a count (3) or a percent (30%)" in problems
    assert "Error threshold:" in problems
    assert console.el("#stages").get_attribute("value") == "half"  # type: ignore[attr-defined]
    console.shot("18-rollout-form-refused")
    # Stages the server finds do not fit the computers left: its own refusal, on the form.
    console.click(f"#test-{fleet.computers[4].computer_id}")
    _fill(console, "stages", "50%")
    _fill(console, "error_threshold", "20")
    console.follow("#create")
    assert "the stages do not fit: the last stage (50%)" in console.text("#problems")
    assert _rollouts(server) == before


def test_forged_forms_unknown_rollouts_and_hostile_names_change_nothing(
    server: RunningServer, fleet: SimulatedFleet, console: Console
) -> None:
    # A name that looks like markup is shown as text.
    console.open("/rollouts/new")
    console.click(f"#test-{fleet.computers[4].computer_id}")
    _fill(console, "name", HOSTILE)
    _fill(console, "stages", "100%")
    console.follow("#create")
    rollout_id = max(r["id"] for r in _rollouts(server))
    assert console.text("h1") == f"Rollout {rollout_id}: {HOSTILE}"
    console.open("/rollouts")
    assert HOSTILE in console.text(f"tr[data-rollout='{rollout_id}'] th")
    assert console.driver.execute_script("return window.pwned === undefined")

    before = _rollouts(server)
    console.open(f"/rollouts/{rollout_id}")
    console.driver.execute_script("document.querySelector('#pause').form.csrf.value = 'forged'")
    console.follow("#pause")
    console.wait(lambda d: "Form refused" in d.title)
    console.shot("refused-rollout-csrf")
    assert _rollouts(server) == before

    console.open("/rollouts/new")
    console.click(f"#test-{fleet.computers[4].computer_id}")
    console.driver.execute_script("document.querySelector('#create').form.csrf.value = 'forged'")
    console.follow("#create")
    console.wait(lambda d: "Form refused" in d.title)
    assert _rollouts(server) == before

    console.open("/rollouts/999999")
    console.wait(lambda d: "No such rollout" in d.title)
    assert console.text("#error-message") == "There is no rollout 999999: nothing was changed."


@pytest.mark.usefixtures("fleet")
def test_rollout_pages_have_named_controls_and_fit_a_phone(
    server: RunningServer, console: Console
) -> None:
    with server.admin() as admin:
        kit_id = admin.get("/api/v1/kits")[0]["id"]
        computers = [c["id"] for c in admin.get("/api/v1/computers")]
        admin.post(
            "/api/v1/rollouts",
            {
                "kit_id": kit_id,
                "test_group": computers[-1:],
                "computers": computers[-1:],
                "stages": ["100%"],
                "success_threshold": 100,
                "error_threshold": 50,
            },
        )
    rollout_id = max(r["id"] for r in _rollouts(server))
    pages = ("/rollouts", "/rollouts/new", f"/rollouts/{rollout_id}")
    for path in pages:
        console.open(path)
        assert console.driver.execute_script(UNLABELLED) == [], path
    console.driver.set_window_size(*PHONE)
    try:
        for path in pages:
            console.open(path)
            assert console.driver.execute_script(OVERFLOW) <= 0, path
        console.shot("phone-rollout")
    finally:
        console.driver.set_window_size(1280, 720)
