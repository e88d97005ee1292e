"""Every option and argument of every command and sub-command says what it is in `--help`,
and that help fits a 40-column terminal with nothing lost."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from commands import engine_disk, engine_install, engine_live, engine_media, engine_sync
from reference_builds.builds import REFERENCE_BUILDS


def _parsers(
    name: str, parser: argparse.ArgumentParser
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(f"{name} {sub_name}", sub)


PARSERS = [
    *_parsers("engine-media", engine_media.build_parser(with_usb=True)),
    *_parsers("engine-disk", engine_disk.build_parser()),
    *_parsers("engine-install", engine_install.build_parser()),
    *_parsers("engine-sync", engine_sync.build_parser()),
    *_parsers("engine-live", engine_live.build_parser()),
]


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=[name for name, _ in PARSERS])
def test_every_option_has_a_description(name: str, parser: argparse.ArgumentParser) -> None:
    undescribed = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            undescribed += [
                f"{name} {choice.dest}" for choice in action._choices_actions if not choice.help
            ]
        elif not action.help or action.help == argparse.SUPPRESS:
            undescribed.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert undescribed == []


def _words(text: str) -> list[str]:
    """The words of a help text in order; a comment's `#` is markup the wrapping adds."""
    return [word for word in text.split() if word != "#"]


@pytest.mark.parametrize(("name", "parser"), PARSERS, ids=[name for name, _ in PARSERS])
def test_the_help_fits_40_columns_and_keeps_every_word(
    name: str, parser: argparse.ArgumentParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    wide = parser.format_help()
    monkeypatch.setenv("COLUMNS", "40")
    narrow = parser.format_help()
    assert [line for line in narrow.splitlines() if len(line) > 40] == [], name
    assert _words(narrow) == _words(wide), name


def test_reference_lists_the_versions_in_its_help_and_its_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    build = dict(PARSERS)["engine-media build"]
    assert all(version in build.format_help() for version in REFERENCE_BUILDS)
    assert engine_media.main(["build", "--reference", "3.0.0", "-o", "never.iso"]) == 2
    error = capsys.readouterr().err.splitlines()[0]
    assert all(version in error for version in REFERENCE_BUILDS), error
