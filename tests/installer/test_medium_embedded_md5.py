"""The installer checks an ISO's embedded isomd5sum MD5 as `engine-media verify` does: a medium
with one byte changed outside every payload file (its volume id) passes every file's sha256
but not the MD5, and both the dry run and the real run refuse it, writing nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from enginekit.process import run
from reference_builds.pytest_plugin import EngineDiskFactory, copy_sparse, sparse_digest

pytestmark = pytest.mark.root

UPGRADE = '[eula]\naccept = true\n[existing]\naction = "upgrade"\n'
#: The first byte of the volume id in the Primary Volume Descriptor (sector 16, offset 40).
VOLUME_ID_OFFSET = 0x8028


def _with_volume_id_changed(iso: Path, dest: Path) -> Path:
    copy_sparse(iso, dest)
    with dest.open("r+b") as stream:
        stream.seek(VOLUME_ID_OFFSET)
        first = stream.read(1)
        stream.seek(VOLUME_ID_OFFSET)
        stream.write(b"Z" if first != b"Z" else b"Y")
    return dest


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "real-run"])
def test_a_medium_whose_embedded_md5_differs_is_refused(
    dry_run: bool, tmp_path: Path, iso: Path, engine_disk: EngineDiskFactory
) -> None:
    flipped = _with_volume_id_changed(iso, tmp_path / "flipped.iso")
    disk = engine_disk("4.5.0", size="1G")
    before = sparse_digest(disk)
    answers = tmp_path / "up.toml"
    answers.write_text(UPGRADE)
    proc = run(
        [sys.executable, "-m", "commands.engine_install", "--media", flipped, "--target", disk,
         "--answers", answers, *(["--dry-run"] if dry_run else [])],
        check=False,
        timeout=600,
    )  # fmt: skip
    err = proc.stderr.decode()
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2, err
    assert len(errors) == 1, err
    assert errors[0].startswith(f"error: {flipped}: the medium fails verification: "), err
    assert "embedded MD5 does not match" in errors[0]
    assert "\nhint: " in err
    assert sparse_digest(disk) == before
