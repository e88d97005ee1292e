"""What the installer reads from a medium besides the file list, checked before anyone relies
on it: the EULA it shows (non-empty UTF-8 text) and `engine/keyboards.json`, the names of the
layouts the manifest offers (an object of strings naming every one of them).

`content_problems` is the one check: the ISO builder runs it on the payload tree before
writing, `engine-media verify` on the medium, both through a function that reads a file by
its manifest path.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from media.manifest import Manifest

KEYBOARDS_PATH = "engine/keyboards.json"

# Reads a file of the medium by its manifest path; None when there is no such file.
ReadFile = Callable[[str], bytes | None]


def content_problems(manifest: Manifest, read: ReadFile) -> list[str]:
    """One phrase per problem, each naming the file and the manifest key it serves."""
    return _eula_problems(manifest, read) + _keyboard_problems(manifest, read)


def _eula_problems(manifest: Manifest, read: ReadFile) -> list[str]:
    where = f"{manifest.eula} (manifest key eula)"
    data = read(manifest.eula)
    if data is None:
        return [f"{where}: missing"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [f"{where}: not UTF-8 text (byte {exc.start}); the installer shows it as is"]
    if not text.strip():
        return [f"{where}: empty; the installer would ask to accept a blank licence"]
    return []


def _keyboard_problems(manifest: Manifest, read: ReadFile) -> list[str]:
    where = f"{KEYBOARDS_PATH} (names of the manifest's keyboards)"
    data = read(KEYBOARDS_PATH)
    if data is None:
        return [f"{where}: missing"]
    try:
        names = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return [f"{where}: not JSON in UTF-8 ({type(exc).__name__})"]
    if not isinstance(names, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in names.items()
    ):
        return [f"{where}: must be an object of layout code to non-empty name, like "
                '{"us": "English (US)"}']  # fmt: skip
    return [
        f"{where}: no name for keyboards[{i}] {code!r}"
        for i, code in enumerate(manifest.keyboards)
        if code not in names
    ]
