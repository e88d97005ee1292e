"""The upgrade rules of engine-domain.md, as a table: medium x installed version -> modes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from enginekit.versions import DiskLayout
from installer import rules
from installer.plan import InstallMode
from reference_builds.builds import REFERENCE_BUILDS

FRESH, ERASE, UPGRADE, REPAIR = (
    InstallMode.FRESH,
    InstallMode.ERASE,
    InstallMode.UPGRADE,
    InstallMode.REPAIR,
)


def decide(medium: str, installed: str | None) -> rules.Decision:
    build = REFERENCE_BUILDS[medium]
    layout = REFERENCE_BUILDS[installed].layout if installed in REFERENCE_BUILDS else None
    return rules.decide(medium, build.upgrade_from, installed, layout, medium_layout=build.layout)


@pytest.mark.parametrize(
    ("medium", "installed", "allowed"),
    [
        ("5.0.0", None, (FRESH,)),
        ("4.5.0", None, (FRESH,)),
        ("4.0.0", None, (FRESH,)),
        ("5.0.0", "4.5.0", (UPGRADE, ERASE)),
        ("4.5.0", "4.0.0", (UPGRADE, ERASE)),
        ("5.0.0", "5.0.0", (REPAIR, ERASE)),
        ("4.5.0", "4.5.0", (REPAIR, ERASE)),
        ("5.0.0", "4.0.0", (ERASE,)),
        ("4.5.0", "5.0.0", (ERASE,)),
        ("4.0.0", "5.0.0", (ERASE,)),
        ("5.0.0", "5.1.0", (ERASE,)),
    ],
)
def test_allowed_modes(
    medium: str, installed: str | None, allowed: tuple[InstallMode, ...]
) -> None:
    decision = decide(medium, installed)
    assert decision.allowed == allowed
    assert decision.installation_found is (installed is not None)
    # Erase is offered whenever there is an Engine to erase; fresh only when there is none.
    assert decision.allows(ERASE) is (installed is not None)
    assert decision.allows(FRESH) is (installed is None)


def test_skipping_45_names_the_stepping_stone() -> None:
    decision = decide("5.0.0", "4.0.0")
    assert decision.refusal(UPGRADE) == (
        "Engine 4.0.0 cannot be upgraded to 5.0.0 directly; upgrade 4.0.0 to 4.5.0 first"
    )
    with pytest.raises(rules.InstallRefused) as caught:
        rules.require_allowed(decision, UPGRADE)
    assert caught.value.exit_status == 2
    assert "4.5.0" in (caught.value.hint or "")


@pytest.mark.parametrize(("medium", "installed"), [("4.5.0", "5.0.0"), ("5.0.0", "5.1.0")])
def test_downgrade_is_refused(medium: str, installed: str) -> None:
    reason = decide(medium, installed).refusal(UPGRADE)
    assert reason is not None
    assert "downgrade is not possible" in reason
    assert installed in reason
    assert medium in reason


def test_same_version_offers_repair_and_explains_upgrade() -> None:
    decision = decide("5.0.0", "5.0.0")
    assert decision.allowed[0] is REPAIR
    assert "repair" in (decision.refusal(UPGRADE) or "")
    rules.require_allowed(decision, REPAIR)


def test_repair_needs_the_installed_version() -> None:
    assert "4.5.0" in (decide("5.0.0", "4.5.0").refusal(REPAIR) or "")


def test_blank_disk_refuses_the_existing_modes() -> None:
    decision = decide("5.0.0", None)
    for mode in (UPGRADE, ERASE, REPAIR):
        with pytest.raises(rules.InstallRefused, match="no Engine installation"):
            rules.require_allowed(decision, mode)


def test_fresh_refused_when_engine_found() -> None:
    assert "already holds Engine 4.5.0" in (decide("5.0.0", "4.5.0").refusal(FRESH) or "")


def test_unlisted_older_version_without_stepping_stone() -> None:
    decision = rules.decide("5.0.0", ["4.5.0"], "3.0.0")
    reason = decision.refusal(UPGRADE) or ""
    # 4.5.0 is newer than 3.0.0 and older than 5.0.0: the way through it is named.
    assert "upgrade 3.0.0 to 4.5.0 first" in reason
    lonely = rules.decide("5.0.0", [], "4.5.0")
    assert "upgrades only from: none" in (lonely.refusal(UPGRADE) or "")


def test_versions_compare_numerically() -> None:
    # 4.10.0 is newer than 4.5.0: a 4.5.0 medium must not "upgrade" it.
    assert rules.decide("4.5.0", ["4.0.0"], "4.10.0").allowed == (ERASE,)


def test_layout_change_from_mbr() -> None:
    assert decide("4.5.0", "4.0.0").layout_change == (DiskLayout.MBR, DiskLayout.GPT_AB)
    assert decide("5.0.0", "4.5.0").layout_change is None


@dataclass(frozen=True)
class Vm:
    name: str
    kind: str
    pv_drivers: str
    published_for: str


def test_vm_notes_follow_the_guide() -> None:
    vms = [
        Vm("web", "shared", "4.5.0", "4.5.0"),
        Vm("dev", "custom", "4.5.0", "4.5.0"),
        Vm("home", "local", "4.5.0", "4.5.0"),
        Vm("next", "shared", "5.0.0", "5.0.0"),
        Vm("odd", "weird", "4.5.0", "not a version"),
    ]
    notes = {n.name: n for n in rules.vm_notes(vms, "4.5.0", "4.5.0")}  # a repair of 4.5.0
    assert list(notes) == sorted(notes)
    assert notes["web"].message == "shared VM: PV drivers are already at 4.5.0"
    # Published by a 5.0 Synchronizer: does not run on Engine 4.5.
    assert "will not run on Engine 4.5.0" in notes["next"].message
    upgraded = {n.name: n for n in rules.vm_notes(vms, "5.0.0", "5.0.0")}
    assert "from 4.5.0 to 5.0.0 automatically" in upgraded["web"].message
    assert "by hand (upgrade guide, step 5)" in upgraded["dev"].message
    assert "by hand (upgrade guide, step 5)" in upgraded["home"].message
    assert "check its PV drivers by hand" in upgraded["odd"].message
    assert "will not run" not in upgraded["next"].message
    assert upgraded["next"].message == "shared VM: PV drivers are already at 5.0.0"
