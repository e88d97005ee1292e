"""A real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium) on
the console of a real server: sign-in, page helpers that wait on DOM state (never sleep),
and screenshots saved as test artifacts."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
# The form controls a screen reader could not name (no label, no aria-label, no text).
UNLABELLED = """
return [...document.querySelectorAll('input:not([type=hidden]), select, button')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.textContent.trim())
  .map(e => e.outerHTML);
"""
# How far the page scrolls sideways (more than 0: it does not fit the window).
OVERFLOW = "return document.documentElement.scrollWidth - window.innerWidth"
PHONE = (390, 844)
# Where the screenshots of each screen go: $ENGINEKIT_SCREENSHOTS, else the test's tmp_path.
SCREENSHOTS_ENV = "ENGINEKIT_SCREENSHOTS"


@contextmanager
def chromium(profile: Path, width: int = 1280, height: int = 720) -> Iterator[WebDriver]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """The console at `url` in `driver`; `shot(name)` saves a screenshot of the screen."""

    def __init__(self, driver: WebDriver, url: str, shots: Path) -> None:
        self.driver, self.url, self.shots = driver, url.rstrip("/") + "/console", shots
        shots.mkdir(parents=True, exist_ok=True)

    def open(self, path: str) -> None:
        self.driver.get(self.url + path)

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def wait(self, condition: Callable[[WebDriver], object], timeout: float = 60.0) -> object:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(condition)

    def el(self, css: str) -> object:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def click(self, css: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def follow(self, css: str) -> None:
        """Click a link or submit button and wait until the next page has loaded."""
        self.driver.execute_script("window.__leaving = true")
        self.click(css)
        self.wait(
            lambda d: d.execute_script(
                "return window.__leaving === undefined && document.readyState === 'complete'"
            )
        )

    def text(self, css: str) -> str:
        """The element's rendered text, read in one script call (htmx may swap it any time)."""
        found = self.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null", css
        )
        assert isinstance(found, str), f"no element {css}"
        return found.strip()

    def attr(self, css: str, name: str) -> str | None:
        found = self.driver.execute_script(
            "const e = document.querySelector(arguments[0]);"
            " return e ? e.getAttribute(arguments[1]) : null",
            css,
            name,
        )
        return found if isinstance(found, str) else None

    def sign_in(self, token: str) -> None:
        from selenium.webdriver.common.by import By

        self.open("/login")
        self.driver.find_element(By.ID, "token").send_keys(token)
        self.driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        self.wait(lambda d: d.current_url.endswith("/console/library"))
        # htmx must be loaded for the live fragments.
        self.wait(lambda d: d.execute_script("return typeof htmx !== 'undefined'"))


@contextmanager
def console_in(root: Path, server_url: str, admin_token: str | None = None) -> Iterator[Console]:
    """A browser on the server's console, its profile and screenshots under `root`; signed
    in with `admin_token` when one is given."""
    with chromium(root / "chromium-profile") as driver:
        console = Console(driver, server_url, screenshot_dir(root))
        if admin_token is not None:
            console.sign_in(admin_token)
        yield console


def screenshot_dir(tmp_path: Path) -> Path:
    chosen = os.environ.get(SCREENSHOTS_ENV)
    return Path(chosen) if chosen else tmp_path / "screenshots"
