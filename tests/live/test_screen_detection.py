"""engine-live tells a computer with a screen from one with only a serial console, by what
the kernel lists under /sys/class (the entries as the live kernel makes them in QEMU: no
display, standard VGA on BIOS, the UEFI frame buffer). tests/live/test_screen_console.py
boots the real thing."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.engine_live import has_screen


def _sys_class(root: Path, vtconsoles: dict[str, tuple[str, str]], fbs: tuple[str, ...]) -> Path:
    for name, (title, bind) in vtconsoles.items():
        entry = root / "vtconsole" / name
        entry.mkdir(parents=True)
        (entry / "name").write_text(title + "\n")
        (entry / "bind").write_text(bind + "\n")
    for fb in fbs:
        (root / "graphics" / fb).mkdir(parents=True)
    return root


@pytest.mark.parametrize(
    ("vtconsoles", "fbs", "expected"),
    [
        ({"vtcon0": ("(S) dummy device", "1")}, (), False),  # -vga none
        ({"vtcon0": ("(S) VGA+", "1")}, (), True),  # SeaBIOS with a VGA card
        ({"vtcon0": ("(S) dummy device", "0"), "vtcon1": ("(M) frame buffer device", "1")},
         ("fb0",), True),  # OVMF's frame buffer, fbcon bound
        ({"vtcon0": ("(S) dummy device", "1")}, ("fb0",), True),  # fbcon not bound yet
        ({"vtcon0": ("(S) VGA+", "0")}, (), False),  # unbound
        ({}, (), False),  # no virtual terminals at all
    ],
)  # fmt: skip
def test_a_screen_is_a_bound_console_other_than_the_dummy_or_a_frame_buffer(
    tmp_path: Path, vtconsoles: dict[str, tuple[str, str]], fbs: tuple[str, ...], expected: bool
) -> None:
    assert has_screen(_sys_class(tmp_path, vtconsoles, fbs)) is expected
