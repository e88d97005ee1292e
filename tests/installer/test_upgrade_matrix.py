"""Every reference version's disk against every reference medium: upgraded, repaired or
refused exactly as the rules say, with refused disks unchanged. Prints the matrix."""

from __future__ import annotations

from pathlib import Path

import pytest

from disk_images.probe import Installation, probe
from enginekit.errors import UserInputError
from enginekit.versions import REFERENCE_BUILDS, EngineVersion
from installer import rules
from installer.engine import run_plan
from installer.plan import InstallMode, InstallPlan
from installer.pytest_plugin import sparse_digest

pytestmark = [pytest.mark.root, pytest.mark.slow]
VERSIONS = sorted(REFERENCE_BUILDS, key=EngineVersion.parse)


def _mode(installed: str, medium: str) -> InstallMode:
    return InstallMode.REPAIR if installed == medium else InstallMode.UPGRADE


def _expected(installed: str, medium: str) -> bool:
    build = REFERENCE_BUILDS[medium]
    decision = rules.decide(
        medium, build.upgrade_from, installed, REFERENCE_BUILDS[installed].layout
    )
    return decision.allows(_mode(installed, medium))


def test_upgrade_matrix(engine_disk, engine_medium, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    outcome: dict[tuple[str, str], str] = {}
    failures = []
    for installed in VERSIONS:
        for medium in VERSIONS:
            disk: Path = engine_disk(installed, size="1G", with_vms=False)
            mode = _mode(installed, medium)
            plan = InstallPlan(engine_medium(medium), disk, mode, medium, eula_accepted=True)
            before = sparse_digest(disk)
            try:
                report = run_plan(plan)
            except UserInputError as exc:
                outcome[installed, medium] = f"refused: {exc.message}"
                if sparse_digest(disk) != before:
                    failures.append(f"{installed}->{medium}: refused but the disk changed")
                allowed = False
            else:
                outcome[installed, medium] = f"{mode.value}: {report.upgrade_status or 'Blank'}"
                found = probe(disk)
                assert isinstance(found, Installation)
                if mode is InstallMode.UPGRADE or found.layout.value == "gpt-ab":
                    assert found.slots[found.state.pending_slot] == medium  # type: ignore[index]
                allowed = True
            if allowed != _expected(installed, medium):
                failures.append(f"{installed}->{medium}: {outcome[installed, medium]}")
    with capsys.disabled():
        print("\nupgrade matrix (rows: installed, columns: medium)")
        for installed in VERSIONS:
            for medium in VERSIONS:
                print(f"  {installed} -> {medium}: {outcome[installed, medium]}")
    assert not failures, failures
    assert outcome["4.0.0", "5.0.0"].startswith("refused") and "4.5.0" in outcome["4.0.0", "5.0.0"]
    assert outcome["4.5.0", "5.0.0"].startswith("upgrade")
    assert outcome["4.0.0", "4.5.0"].startswith("upgrade")  # the in-place MBR -> GPT migration
    assert "downgrade" in outcome["5.0.0", "4.5.0"]
