"""Bad input in the console, in a real browser against a real server: a form with a wrong
CSRF token, an expired session, a kit that does not exist and an HTML-looking computer name
each give a clear page, and nothing changes."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from itsdangerous import TimestampSigner

from sync_server.console.auth import SECRET_FILE, SESSION_COOKIE, SESSION_LIFETIME

from .conftest import RunningServer
from .console_browser import Console, console_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = '<img src=x onerror="window.pwned=1">'


@pytest.fixture
def console(sync_server: RunningServer, tmp_path: Path) -> Iterator[Console]:
    with console_in(tmp_path, sync_server.url) as page:
        yield page


def test_a_form_with_a_wrong_csrf_token_is_refused_and_changes_nothing(
    sync_server: RunningServer, console: Console
) -> None:
    iso = sync_server.data / "FileImport" / "engine.iso"
    iso.write_bytes(b"not imported")
    console.sign_in(sync_server.admin_token)
    console.open("/library/import/file?kind=Engine+Update")
    console.driver.execute_script("document.querySelector('#finish').form.csrf.value = 'forged'")
    console.follow("#finish")
    console.wait(lambda d: "Form refused" in d.title)
    assert "nothing was changed" in console.text("#error-message")
    console.shot("refused-csrf")
    assert iso.read_bytes() == b"not imported"
    assert sync_server.admin().get("/api/v1/tasks") == []


def test_an_expired_session_goes_back_to_sign_in(
    sync_server: RunningServer, console: Console
) -> None:
    secret = (sync_server.data / SECRET_FILE).read_text().strip()
    old = {"token_id": 1, "signed_in_at": int(time.time()) - SESSION_LIFETIME - 60, "csrf": "x"}
    payload = base64.b64encode(json.dumps(old).encode())
    cookie = TimestampSigner(secret).sign(payload).decode()
    console.open("/login")
    console.driver.add_cookie({"name": SESSION_COOKIE, "value": cookie, "path": "/console"})
    console.open("/library")
    console.wait(lambda d: "/console/login?expired=1" in d.current_url)
    assert console.text("#expired") == "Your session has expired: sign in again."
    console.shot("expired-session")


def test_a_kit_that_does_not_exist_is_a_clear_page(
    sync_server: RunningServer, console: Console
) -> None:
    console.sign_in(sync_server.admin_token)
    console.open("/kits/999/computers")
    assert console.text("#error-title") == "No such kit"
    assert "no kit 999" in console.text("#error-message")
    console.shot("no-such-kit")


def test_an_html_looking_computer_name_is_shown_as_text_and_never_run(
    sync_server: RunningServer, console: Console
) -> None:
    token = sync_server.admin().post("/api/v1/tokens", {"name": HOSTILE})["token"]
    sync_server.client(token).post("/api/v1/checkin", {"version": "4.5.0", "upgrade_status": ""})
    console.sign_in(sync_server.admin_token)
    console.open("/computers")
    assert console.text("#computer-rows th a") == HOSTILE
    assert console.driver.find_elements("css selector", "#computers img") == []
    assert console.driver.execute_script("return window.pwned === undefined")
    console.shot("escaped-name")


def test_ticking_a_computer_behind_a_barrier_shows_the_reason_and_assigns_nothing(
    sync_server: RunningServer, console: Console, engine_medium: Callable[[str], Path]
) -> None:
    admin = sync_server.admin()
    task = admin.upload("/api/v1/imports", engine_medium("5.0.0"))
    kit_id = admin.get(f"/api/v1/tasks/{task['id']}?wait=300")["kit_id"]
    # A computer that checks in as 4.0.0 (the agent's protocol, no disk needed for a refusal).
    token = admin.post("/api/v1/tokens", {"name": "old-pc"})["token"]
    computer = sync_server.client(token).post("/api/v1/checkin", {"version": "4.0.0"})
    console.sign_in(sync_server.admin_token)
    console.open(f"/kits/{kit_id}/computers")
    console.click(f"#upgrade-box-{computer['computer_id']}")
    console.follow("#assign")
    assert console.text("#summary") == "Engine 5.0.0 was assigned to no computer: 1 refused"
    assert console.text("#refused") == (
        f"computer {computer['computer_id']} (old-pc): Engine 4.0.0 cannot upgrade to 5.0.0 "
        "directly: 4.5.0 is a barrier; assign the 4.5.0 kit first"
    )
    console.shot("refused-barrier")
    assert console.attr(f"#upgrade-{computer['computer_id']}", "data-status") == "Blank"
    assert admin.get(f"/api/v1/kits/{kit_id}/assignments") == []
