"""Text that comes from the medium (the licence, keyboard names) is shown as text: escape
sequences and other terminal controls are neutralised before any front end gets it, while
the licence keeps its lines and tabs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enginekit.text import display_text
from installer.frontends.api import Installer, load_medium
from installer.model import Screen, TargetInfo
from media.payload_tree import load_tree_manifest, manifest_for_tree, write_manifest
from reference_builds.payload import write_reference_payload

CLEAR = "\x1b[2J"
TITLE = "\x1b]0;title\x07"
CONTROLS = [chr(c) for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)]]
BIDI = ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200f", "\u061c"]


def test_display_text_keeps_lines_and_tabs() -> None:
    assert display_text("1. Grant.\n\tYou may\r\ninstall.") == "1. Grant.\n\tYou may\ninstall."


@given(st.text(alphabet=st.sampled_from([*CONTROLS, *BIDI, "a", "\n", "\t", "\ud800"])))
def test_display_text_leaves_no_control_but_newline_and_tab(text: str) -> None:
    shown = display_text(text)
    assert not any(c in shown for c in [*CONTROLS, *BIDI])
    shown.encode("utf-8")  # no lone surrogate left either


def payload_with(tmp_path: Path, kernel: object, eula: str, names: dict[str, str]) -> Path:
    payload = tmp_path / "payload"
    write_reference_payload("5.0.0", payload, kernel)  # type: ignore[arg-type]
    (payload / "engine" / "EULA.txt").write_text(eula)
    (payload / "engine" / "keyboards.json").write_text(json.dumps(names))
    old = load_tree_manifest(payload)
    write_manifest(
        payload,
        manifest_for_tree(
            payload,
            product=old.product,
            version=old.version,
            upgrade_from=old.upgrade_from,
            pv_drivers=old.pv_drivers,
            layout=old.layout,
            keyboards=list(old.keyboards),
        ),
    )
    return payload


@pytest.fixture
def hostile_medium(tmp_path: Path, kernel: object) -> Path:
    return payload_with(
        tmp_path,
        kernel,
        f"LICENCE{CLEAR}\nline two{TITLE}\n\tindented \u202eevil\n",
        {"us": f"English{CLEAR}", "de": f"German{TITLE}"},
    )


def installer_for(medium: Path, tmp_path: Path) -> Installer:
    target = TargetInfo(tmp_path / "blank.img", 8 << 30, None, None, "blank disk")
    return Installer(load_medium(medium), target, dry_run=True)


def test_the_licence_screen_neutralises_escape_sequences(
    hostile_medium: Path, tmp_path: Path
) -> None:
    installer = installer_for(hostile_medium, tmp_path)
    installer.choose("install")
    installer.choose("next")
    assert installer.screen is Screen.EULA
    text = installer.view.text
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\u202e" not in text
    assert "LICENCE\\x1b[2J\nline two\\x1b]0;title\\x07\n\tindented \\u202eevil" in text


def test_keyboard_names_from_the_medium_are_neutralised(
    hostile_medium: Path, tmp_path: Path
) -> None:
    installer = installer_for(hostile_medium, tmp_path)
    installer.choose("install")
    installer.choose("next")
    installer.choose("accept")
    assert installer.screen is Screen.KEYBOARD
    labels = [choice.label for choice in installer.view.choices]
    assert "us  English\\x1b[2J" in labels
    assert "de  German\\x1b]0;title\\x07" in labels
    assert not any("\x1b" in label or "\x07" in label for label in labels)
