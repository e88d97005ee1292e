"""Named operators in the console, in a real headless Chromium against a real server: an
operator signs in with name and password (the admin token still works), a wrong password is
refused, removing the operator ends their open session, and an HTML-looking operator name is
shown as text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import RunningServer, running_server
from .console_browser import Console, console_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = '<img src=x onerror="window.pwned=1">'
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("console-operators")
    with running_server(root / "sync-data", root / "server.log") as running:
        yield running


@pytest.fixture(scope="module")
def console(server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with console_in(tmp_path_factory.mktemp("browser"), server.url) as page:
        yield page


def _add(server: RunningServer, name: str) -> None:
    with server.admin() as admin:
        admin.post("/api/v1/operators", {"name": name, "password": PASSWORD})


def _remove(server: RunningServer, name: str) -> None:
    with server.admin() as admin:
        admin.post(f"/api/v1/operators/{name}/remove")


def _sign_in(console: Console, name: str, password: str) -> None:
    from selenium.webdriver.common.keys import Keys

    console.driver.delete_all_cookies()
    console.open("/login")
    console.el("#name").send_keys(name)  # type: ignore[attr-defined]
    console.el("#password").send_keys(password, Keys.ENTER)  # type: ignore[attr-defined]
    console.wait(lambda d: d.execute_script("return document.readyState === 'complete'"))


def test_an_operator_signs_in_and_removing_them_ends_the_session(
    server: RunningServer, console: Console
) -> None:
    _add(server, "olga")
    _sign_in(console, "olga", PASSWORD)
    console.wait(lambda d: d.current_url.endswith("/console/library"))
    assert console.text("#signed-in-as") == "Signed in as olga"
    console.shot("21-operator-signed-in")
    console.open("/computers")
    assert console.driver.current_url.endswith("/console/computers")
    _remove(server, "olga")
    console.open("/computers")
    console.wait(lambda d: "/console/login?expired=1" in d.current_url)
    # Re-adding the name does not bring the old session back.
    _add(server, "olga")
    console.open("/computers")
    console.wait(lambda d: "/console/login" in d.current_url)
    _remove(server, "olga")


def test_a_wrong_password_or_unknown_name_is_refused(
    server: RunningServer, console: Console
) -> None:
    _add(server, "piotr")
    for name, password in (("piotr", "not his password"), ("nobody", PASSWORD)):
        _sign_in(console, name, password)
        assert console.driver.current_url.endswith("/console/login")
        assert console.text("#problem") == "The operator name or password is not right."
    console.shot("refused-operator-password")
    console.open("/computers")
    console.wait(lambda d: d.current_url.endswith("/console/login"))
    console.sign_in(server.admin_token)  # the admin token still signs in
    assert console.text("#signed-in-as") == "Signed in as admin token"


def test_an_html_looking_operator_name_is_shown_as_text(
    server: RunningServer, console: Console
) -> None:
    _add(server, HOSTILE)
    _sign_in(console, HOSTILE, PASSWORD)
    console.wait(lambda d: d.current_url.endswith("/console/library"))
    assert console.text("#signed-in-as") == f"Signed in as {HOSTILE}"
    assert console.driver.execute_script("return window.pwned === undefined")
