"""The files the installer shows are checked in one place before anyone relies on them: the
EULA (non-empty UTF-8 text), engine/keyboards.json (an object of strings naming every layout
the manifest offers) and the product. `engine-media build` refuses a payload that breaks one,
in one error line naming the file and the manifest key; `engine-media verify` fails a medium
that breaks one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from commands.engine_media import main as engine_media
from enginekit.process import require_tool, run
from media.manifest import MANIFEST_PATH

from .conftest import SmallPayload

BAD_CONTENT = {
    "empty EULA": (
        {"engine/EULA.txt": b""},
        "engine/EULA.txt (manifest key eula): empty",
    ),
    "blank EULA": (
        {"engine/EULA.txt": b" \n\t\n"},
        "engine/EULA.txt (manifest key eula): empty",
    ),
    "EULA in Latin-1": (
        {"engine/EULA.txt": "Licence: vous acceptez les conditions générales\n".encode("latin-1")},
        "engine/EULA.txt (manifest key eula): not UTF-8 text (byte 39)",
    ),
    "layout without a name": (
        {"engine/keyboards.json": b'{"de": "German"}\n'},
        "engine/keyboards.json (names of the manifest's keyboards): no name for keyboards[0] 'us'",
    ),
    "keyboards.json a list": (
        {"engine/keyboards.json": b'["us"]\n'},
        "engine/keyboards.json (names of the manifest's keyboards): must be an object",
    ),
    "keyboards.json names not strings": (
        {"engine/keyboards.json": b'{"us": 1}\n'},
        "engine/keyboards.json (names of the manifest's keyboards): must be an object",
    ),
}


def _build(payload: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = engine_media(["build", "--payload", str(payload), "-o", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, [ln for ln in err.splitlines() if ln.startswith("error:")]


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_build_refuses_content_the_installer_cannot_show(
    case: str, small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files, expected = BAD_CONTENT[case]
    payload = small_payload(files)
    out = tmp_path / "out.iso"
    status, errors = _build(payload, out, capsys)
    assert status == 2, errors
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"error: {payload}: {expected}")
    assert not out.exists()


def test_build_refuses_a_product_other_than_engine(
    small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = small_payload()
    manifest = json.loads((payload / MANIFEST_PATH).read_bytes())
    manifest["product"] = "Synchronizer"
    (payload / MANIFEST_PATH).write_text(json.dumps(manifest))
    status, errors = _build(payload, tmp_path / "out.iso", capsys)
    assert (status, errors) == (
        2,
        [f"error: {payload / MANIFEST_PATH}: product: 'Synchronizer' is not 'Engine' "
         "(media for Engine only)"],
    )  # fmt: skip


@pytest.mark.parametrize("case", ["empty EULA", "EULA in Latin-1", "layout without a name"])
def test_verify_fails_a_medium_with_such_content(
    case: str, small_payload: SmallPayload, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A medium made by another tool from such a payload: the files match the manifest, but
    the manifest check names the file the installer could not show."""
    files, expected = BAD_CONTENT[case]
    payload = small_payload(files)
    iso = tmp_path / "other-tool.iso"
    xorriso = require_tool("xorriso", "xorriso")
    run([xorriso, "-as", "mkisofs", "-quiet", "-R", "-J", "-V", "ENGINE_5_0_0", "-o", iso, payload])
    assert engine_media(["verify", "--json", str(iso)]) == 1
    report = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["files"]["ok"] is True
    assert checks["manifest"]["ok"] is False
    assert expected in checks["manifest"]["detail"]
