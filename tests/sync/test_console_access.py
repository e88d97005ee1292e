"""The console without a mouse and on a small screen, in a real browser: sign-in and the
menu work with the keyboard alone, every form control has a name a screen reader reads,
and the pages fit a phone-width window without sideways scrolling of the page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import RunningServer
from .console_browser import OVERFLOW, PHONE, UNLABELLED, Console, console_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PAGES = (
    "/library",
    "/library/import",
    "/library/import/file",
    "/computers",
    "/rollouts",
    "/rollouts/new",
    "/vms",
    "/tasks",
)


@pytest.fixture
def console(sync_server: RunningServer, tmp_path: Path) -> Iterator[Console]:
    with console_in(tmp_path, sync_server.url) as page:
        yield page


def test_sign_in_and_the_menu_work_with_the_keyboard_alone(
    sync_server: RunningServer, console: Console
) -> None:
    from selenium.webdriver.common.keys import Keys

    console.open("/login")
    # The token field has the focus: type, Enter submits.
    console.driver.switch_to.active_element.send_keys(sync_server.admin_token, Keys.ENTER)
    console.wait(lambda d: d.current_url.endswith("/console/library"))
    body = console.driver.switch_to.active_element
    body.send_keys(Keys.TAB)  # the skip link first
    assert console.driver.switch_to.active_element.text == "Skip to content"
    for _ in range(5):  # Software Library, Computers, Rollouts, Virtual Machines, Tasks
        console.driver.switch_to.active_element.send_keys(Keys.TAB)
    assert console.driver.switch_to.active_element.text == "Tasks"
    console.driver.switch_to.active_element.send_keys(Keys.ENTER)
    console.wait(lambda d: d.current_url.endswith("/console/tasks"))


def test_every_form_control_has_a_name_for_screen_readers(
    sync_server: RunningServer, console: Console
) -> None:
    (sync_server.data / "FileImport" / "engine.iso").write_bytes(b"x")
    console.sign_in(sync_server.admin_token)
    for path in PAGES:
        console.open(path)
        assert console.driver.execute_script(UNLABELLED) == [], path


def test_the_pages_fit_a_phone_width_window(sync_server: RunningServer, console: Console) -> None:
    console.sign_in(sync_server.admin_token)
    console.driver.set_window_size(*PHONE)
    for path in PAGES:
        console.open(path)
        assert console.driver.execute_script(OVERFLOW) <= 0, path
    console.open("/library")
    console.shot("phone-software-library")
