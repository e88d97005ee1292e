"""The live installer image (generic kernel + Debian userland initramfs), built once a session.

Building it the first time downloads Debian's generic kernel and the userland packages into
the cache; later sessions find both there and only repack the initramfs when its inputs
changed.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest

from commands.engine_media import main as engine_media
from disk_images.loop import LoopDevice
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


MiB = 1024 * 1024


def written_stick(medium: Path, backing: Path) -> Path:
    """`backing`: the image of a stick that `engine-media usb write` wrote `medium` to (a
    loop device over a file larger than the ISO, detached after writing), so what boots is
    exactly what was written."""
    with open(backing, "wb") as f:
        f.truncate((medium.stat().st_size // MiB + 16) * MiB)
    with LoopDevice(backing) as loop, pytest.MonkeyPatch.context() as patch:
        patch.setattr("sys.stdin", io.StringIO(""))
        with contextlib.redirect_stdout(io.StringIO()):
            status = engine_media(
                ["usb", "write", "--force", "--yes", str(medium), str(loop.device)]
            )
        assert status == 0
    return backing


UPGRADE_ANSWERS = """\
[eula]
accept = true

[existing]
action = "upgrade"

[finish]
reboot = true
"""


def unattended_medium(tmp_path: Path, medium: Path, answers: str) -> Path:
    """`medium` with `answers` baked in, by the real `engine-media remaster`."""
    answer_file = tmp_path / "answers.toml"
    answer_file.write_text(answers)
    out = tmp_path / "unattended.iso"
    with contextlib.redirect_stdout(io.StringIO()):
        status = engine_media(
            ["remaster", str(medium), "--answers", str(answer_file), "-o", str(out)]
        )
    assert status == 0
    return out
