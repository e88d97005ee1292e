"""The live installer image (generic kernel + Debian userland initramfs), built once a session.

Building it the first time downloads Debian's generic kernel and the userland packages into
the cache; later sessions find both there and only repack the initramfs when its inputs
changed.
"""

from __future__ import annotations

import os

import pytest

from enginekit.errors import HostError
from reference_builds.live_initramfs import LiveImage, build_live_image

LIVE_VERSION = "4.5.0"


@pytest.fixture(scope="session")
def live_image() -> LiveImage:
    try:
        return build_live_image(LIVE_VERSION)
    except HostError as exc:
        if os.environ.get("ENGINEKIT_REQUIRE_ALL") == "1":
            pytest.fail(f"cannot build the live installer image: {exc.message}")
        pytest.skip(f"cannot build the live installer image here: {exc.message}")


@pytest.fixture(scope="session")
def live_installer() -> LiveImage:
    """The live image of the 5.0.0 medium: the installer that upgrades to 5.0.0."""
    try:
        return build_live_image("5.0.0")
    except HostError as exc:
        if os.environ.get("ENGINEKIT_REQUIRE_ALL") == "1":
            pytest.fail(f"cannot build the live installer image: {exc.message}")
        pytest.skip(f"cannot build the live installer image here: {exc.message}")
