"""Every reference version's disk against every reference medium: upgraded, repaired or
refused exactly as the rules say, with refused disks unchanged. Prints the matrix."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from disk_images.probe import Installation, probe
from enginekit.errors import UserInputError
from enginekit.versions import EngineVersion
from installer.engine import run_plan
from installer.plan import InstallMode, InstallPlan
from reference_builds.builds import REFERENCE_BUILDS
from reference_builds.pytest_plugin import EngineDiskFactory, EngineMediumFactory, sparse_digest

pytestmark = [pytest.mark.root, pytest.mark.slow]
VERSIONS = sorted(REFERENCE_BUILDS, key=EngineVersion.parse)

REBOOT = "Installed (Reboot Required)"
# The whole 3x3 table of engine-domain.md, written out (not derived from installer.rules, the
# code under test): (installed, medium) -> (mode tried, "ok" + upgrade status after, or
# "refused" + a phrase the refusal must contain).
EXPECTED: dict[tuple[str, str], tuple[InstallMode, str, str]] = {
    ("4.0.0", "4.0.0"): (InstallMode.REPAIR, "ok", "Blank"),  # MBR: no slots, no reboot state
    ("4.0.0", "4.5.0"): (InstallMode.UPGRADE, "ok", REBOOT),  # the MBR -> GPT migration
    ("4.0.0", "5.0.0"): (InstallMode.UPGRADE, "refused", "4.5.0 first"),
    ("4.5.0", "4.0.0"): (InstallMode.UPGRADE, "refused", "downgrade"),
    ("4.5.0", "4.5.0"): (InstallMode.REPAIR, "ok", REBOOT),
    ("4.5.0", "5.0.0"): (InstallMode.UPGRADE, "ok", REBOOT),
    ("5.0.0", "4.0.0"): (InstallMode.UPGRADE, "refused", "downgrade"),
    ("5.0.0", "4.5.0"): (InstallMode.UPGRADE, "refused", "downgrade"),
    ("5.0.0", "5.0.0"): (InstallMode.REPAIR, "ok", REBOOT),
}


def test_upgrade_matrix(
    engine_disk: EngineDiskFactory,
    engine_medium: EngineMediumFactory,
    record_property: Callable[[str, object], None],
) -> None:
    assert set(EXPECTED) == {(i, m) for i in VERSIONS for m in VERSIONS}
    outcome: dict[tuple[str, str], str] = {}
    failures = []
    for (installed, medium), (mode, verdict, detail) in EXPECTED.items():
        disk: Path = engine_disk(installed, size="1G", with_vms=False)
        plan = InstallPlan(engine_medium(medium), disk, mode, medium, eula_accepted=True)
        before = sparse_digest(disk)
        try:
            report = run_plan(plan)
        except UserInputError as exc:
            outcome[installed, medium] = f"refused: {exc.message}"
            if sparse_digest(disk) != before:
                failures.append(f"{installed}->{medium}: refused but the disk changed")
            if verdict != "refused" or detail not in exc.message:
                failures.append(f"{installed}->{medium}: {outcome[installed, medium]}")
            continue
        status = report.upgrade_status or "Blank"
        outcome[installed, medium] = f"{mode.value}: {status}"
        if verdict != "ok" or status != detail:
            failures.append(f"{installed}->{medium}: {outcome[installed, medium]}")
            continue
        found = probe(disk)
        assert isinstance(found, Installation)
        if found.layout.value == "gpt-ab":
            assert found.slots[found.state.pending_slot] == medium  # type: ignore[index]
        else:
            assert found.version == medium
        if (installed, medium) == ("4.0.0", "4.5.0"):
            assert found.layout.value == "gpt-ab"  # migrated
    # Printed at the end of the run by the root conftest (works under xdist).
    record_property(
        "upgrade_matrix", json.dumps({f"{i} -> {m}": o for (i, m), o in outcome.items()})
    )
    assert not failures, failures
