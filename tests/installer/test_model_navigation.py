"""Every screen path of the installer model, driven through the Python API with plain data.

No medium, no disk: the medium and target are the plain `MediumInfo`/`TargetInfo` the adapter
would fill, and the engine is a recorder injected through the API's seam, so "nothing was
written" means "the engine was never called".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from disk_images.layout import Slot
from disk_images.state import Registration, UpgradeStatus
from enginekit.errors import InternalError, UserInputError
from enginekit.versions import DiskLayout
from installer import answers, screens, steps
from installer.frontends.api import (
    DryRunEngine,
    Installer,
    load_medium,
    load_target,
    select_engine,
)
from installer.frontends.unattended import drive
from installer.model import (
    EulaAnswer,
    InstalledEngine,
    MediumInfo,
    RegistrationAnswer,
    Screen,
    TargetInfo,
    VmSummary,
)
from installer.plan import (
    InstallMode,
    InstallPlan,
    InstallReport,
    ProgressCallback,
    RegistrationMode,
    Secret,
)

DISK_ID = "0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5"
VMS = (
    VmSummary("alpha", "shared", "4.5.0", "4.5.0", 1 << 30),
    VmSummary("beta", "shared", "4.5.0", "4.5.0", 1 << 30),
    VmSummary("gamma", "custom", "4.5.0", "4.5.0", 1 << 30),
    VmSummary("delta", "local", "4.5.0", "4.5.0", 1 << 30),
)


def medium(version: str = "5.0.0", upgrade_from: tuple[str, ...] = ("4.5.0",)) -> MediumInfo:
    return MediumInfo(
        path=Path(f"/media/engine-{version}.iso"),
        version=version,
        upgrade_from=upgrade_from,
        pv_drivers=version,
        layout=DiskLayout.GPT_AB,
        keyboards=("us", "uk", "de", "fr"),
        keyboard_names={"us": "English (US)", "uk": "English (UK)"},
        eula_text="You may use Engine.",
    )


def target(version: str | None = None, keyboard: str = "uk", registered: bool = True) -> TargetInfo:
    if version is None:
        return TargetInfo(Path("/disks/blank.img"), 8 << 30, None, None, "no partition table")
    layout = DiskLayout.MBR if version == "4.0.0" else DiskLayout.GPT_AB
    return TargetInfo(
        Path("/disks/engine.img"),
        8 << 30,
        DISK_ID if layout is DiskLayout.GPT_AB else "mbr-1a2b3c4d",
        InstalledEngine(
            version=version,
            layout=layout,
            active_slot=Slot.A if layout is DiskLayout.GPT_AB else None,
            upgrade_status=UpgradeStatus.BLANK,
            registration=Registration(
                RegistrationMode.SYNCHRONIZER, "sync.example.com", Secret("t0ken")
            )
            if registered
            else Registration(RegistrationMode.STANDALONE),
            keyboard=keyboard,
            vms=VMS,
        ),
    )


class RecordingEngine:
    """The engine seam: counts calls and remembers plans; writes nothing."""

    def __init__(self) -> None:
        self.plans: list[InstallPlan] = []
        self.steps: list[tuple[str, float]] = []

    def __call__(self, plan: InstallPlan, progress: ProgressCallback) -> InstallReport:
        self.plans.append(plan)
        for i, step in enumerate(("partition", "write system", "bootloader")):
            progress(step, (i + 1) / 3)
            self.steps.append((step, (i + 1) / 3))
        return InstallReport(
            plan, plan.target_version, "B", UpgradeStatus.INSTALLED_REBOOT_REQUIRED
        )


def start(
    medium_info: MediumInfo | None = None, target_info: TargetInfo | None = None
) -> tuple[Installer, RecordingEngine]:
    engine = RecordingEngine()
    inst = Installer(medium_info or medium(), target_info or target("4.5.0"), engine)
    return inst, engine


def screen_of(inst: Installer) -> Screen:
    """The installer's screen now: read through a call, so that a type checker does not carry
    what an earlier `assert` said about it past the step that changed it."""
    return inst.screen


def to_keyboard(inst: Installer) -> None:
    assert screen_of(inst) is Screen.BOOT_MENU
    assert inst.view.choices[0].label == "Install Engine"
    inst.next()
    assert screen_of(inst) is Screen.WELCOME
    inst.next()
    assert screen_of(inst) is Screen.EULA
    assert inst.view.text == "You may use Engine."
    inst.choose("accept")
    assert screen_of(inst) is Screen.KEYBOARD


def finish(inst: Installer, engine: RecordingEngine, reboot: bool = False) -> InstallPlan:
    assert screen_of(inst) is Screen.SUMMARY
    assert engine.plans == []  # nothing written before the confirmation
    inst.choose("install")
    assert screen_of(inst) is Screen.PROGRESS
    assert engine.plans == []
    inst.next()  # the progress screen runs the engine
    assert screen_of(inst) is Screen.FINISH
    assert len(engine.plans) == 1
    assert "Installed (Reboot Required)" in inst.view.text
    inst.choose("reboot" if reboot else "no-reboot")
    assert screen_of(inst) is Screen.DONE
    return engine.plans[0]


def test_fresh_install_path() -> None:
    inst, engine = start(target_info=target(None))
    to_keyboard(inst)
    assert inst.view.default == "us"  # no installation: the medium's first layout
    inst.choose("de")
    # No installation found: screen 5 is skipped, straight on to registration.
    assert screen_of(inst) is Screen.REGISTRATION
    assert [c.value for c in inst.view.choices] == ["synchronizer", "standalone"]
    inst.choose("standalone")
    assert "Install Engine 5.0.0 on /disks/blank.img" in inst.view.text
    plan = finish(inst, engine)
    assert plan.mode is InstallMode.FRESH
    assert plan.keyboard == "de"
    assert plan.registration is not None
    assert plan.registration.mode is RegistrationMode.STANDALONE
    assert plan.eula_accepted
    assert plan.source_version is None
    assert Screen.EXISTING not in inst.model.history
    assert engine.steps[-1] == ("bootloader", 1.0)


def test_fresh_install_with_synchronizer() -> None:
    inst, engine = start(target_info=target(None))
    to_keyboard(inst)
    inst.choose("us")
    assert {f.name: f.secret for f in inst.view.fields["synchronizer"]} == {
        "server": False,
        "token": True,
    }
    inst.choose("synchronizer", server="sync.example.com")
    assert screen_of(inst) is Screen.REGISTRATION
    assert "token is needed" in inst.message
    inst.choose("synchronizer", server="not a host!", token="abc")
    assert "is not a host name" in inst.message
    inst.choose("synchronizer", server="https://sync.example.com:8443", token="t0ken")
    assert screen_of(inst) is Screen.SUMMARY
    assert "Synchronizer https://sync.example.com:8443" in inst.view.text
    plan = finish(inst, engine, reboot=True)
    assert plan.registration is not None
    assert plan.registration.token == Secret("t0ken")
    assert plan.registration.server == "https://sync.example.com:8443"


def test_keep_registration_is_refused_on_a_fresh_install() -> None:
    inst, _ = start(target_info=target(None))
    to_keyboard(inst)
    inst.choose("us")
    inst.choose("keep")
    assert screen_of(inst) is Screen.REGISTRATION
    assert inst.message == "'keep' is not one of the choices: synchronizer, standalone"
    inst.answer(RegistrationAnswer(keep=True))  # the screen itself refuses it too
    assert "no registration to keep" in inst.message


def test_eula_takes_only_its_choices() -> None:
    inst, _ = start()
    inst.next()
    inst.next()
    inst.choose("yes")
    assert screen_of(inst) is Screen.EULA
    assert inst.message == "'yes' is not one of the choices: accept, decline"


def test_unknown_keyboard_repeats_the_screen() -> None:
    inst, _ = start()
    to_keyboard(inst)
    inst.choose("xx")
    assert screen_of(inst) is Screen.KEYBOARD
    assert inst.message == "'xx' is not a known layout; choose one of us, uk, de, fr"


def test_upgrade_path_keeps_keyboard_and_registration() -> None:
    inst, engine = start(target_info=target("4.5.0"))
    to_keyboard(inst)
    assert inst.view.default == "uk"  # the installed layout is preselected
    inst.next()
    assert screen_of(inst) is Screen.EXISTING
    text = inst.view.text
    assert "may take a few seconds" in text
    assert f"Found Engine 4.5.0 on disk {DISK_ID}" in text
    assert "VMs: 4" in text
    assert "gamma: custom" in text
    assert "Registered with Synchronizer (sync.example.com)" in text
    assert [c.value for c in inst.view.choices] == ["upgrade", "erase"]
    inst.next()  # upgrade is the default
    assert screen_of(inst) is Screen.REGISTRATION
    assert inst.view.choices[0].value == "keep"
    inst.next()
    summary = inst.view.text
    assert "new system goes into slot B" in summary
    assert "alpha: shared VM: Engine updates its PV drivers from 4.5.0 to 5.0.0" in summary
    assert "gamma: custom VM: upgrade its PV drivers" in summary
    assert "Registration: unchanged" in summary
    plan = finish(inst, engine)
    assert plan.mode is InstallMode.UPGRADE
    assert plan.source_version == "4.5.0"
    assert plan.target_version == "5.0.0"
    assert plan.keyboard is None
    assert plan.registration is None


def test_upgrade_changing_keyboard_and_registration() -> None:
    inst, engine = start(target_info=target("4.5.0"))
    to_keyboard(inst)
    inst.choose("fr")
    inst.choose("upgrade")
    inst.choose("standalone")
    plan = finish(inst, engine)
    assert plan.keyboard == "fr"
    assert plan.registration is not None
    assert plan.registration.mode is RegistrationMode.STANDALONE


def test_erase_needs_the_disk_id() -> None:
    inst, engine = start(target_info=target("4.5.0"))
    to_keyboard(inst)
    inst.next()
    assert [f.name for f in inst.view.fields["erase"]] == ["confirm_erase"]
    inst.choose("erase")
    assert screen_of(inst) is Screen.EXISTING
    assert DISK_ID in inst.message
    assert "got nothing" in inst.message
    inst.choose("erase", confirm_erase="wrong")
    assert screen_of(inst) is Screen.EXISTING
    assert "'wrong'" in inst.message
    inst.choose("erase", confirm_erase=DISK_ID)
    assert screen_of(inst) is Screen.REGISTRATION
    assert "keep" not in [c.value for c in inst.view.choices]
    inst.choose("standalone")
    assert "Delete Engine 4.5.0 and its 4 VMs" in inst.view.text
    plan = finish(inst, engine)
    assert plan.mode is InstallMode.ERASE
    assert plan.keyboard == "uk"


def test_repair_path() -> None:
    inst, engine = start(target_info=target("5.0.0"))
    to_keyboard(inst)
    inst.next()
    assert [c.value for c in inst.view.choices] == ["repair", "erase"]
    inst.choose("upgrade")  # not offered: the screen says why and repeats
    assert screen_of(inst) is Screen.EXISTING
    assert "choose repair" in inst.message
    inst.choose("repair")
    inst.choose("keep")
    plan = finish(inst, engine)
    assert plan.mode is InstallMode.REPAIR
    assert plan.source_version == plan.target_version == "5.0.0"


def test_40_to_50_offers_only_erase_and_says_why() -> None:
    inst, engine = start(target_info=target("4.0.0"))
    to_keyboard(inst)
    inst.next()
    assert [c.value for c in inst.view.choices] == ["erase"]
    assert "upgrade 4.0.0 to 4.5.0 first" in inst.view.text
    inst.choose("upgrade")
    assert screen_of(inst) is Screen.EXISTING
    assert "upgrade 4.0.0 to 4.5.0 first" in inst.message
    inst.quit()
    assert screen_of(inst) is Screen.ABORTED
    assert engine.plans == []


def test_downgrade_offers_only_erase() -> None:
    inst, engine = start(medium("4.5.0", ("4.0.0",)), target("5.0.0"))
    to_keyboard(inst)
    inst.next()
    inst.choose("upgrade")
    assert "downgrade is not possible" in inst.message
    assert engine.plans == []


def test_eula_declined_ends_with_nothing_written() -> None:
    inst, engine = start()
    inst.next()
    inst.next()
    inst.choose("decline")
    assert screen_of(inst) is Screen.ABORTED
    assert "nothing was written" in inst.message
    assert engine.plans == []
    with pytest.raises(InternalError):
        inst.next()
    with pytest.raises(InternalError):
        inst.model.to_plan()


@pytest.mark.parametrize(
    "screen",
    [
        Screen.BOOT_MENU,
        Screen.WELCOME,
        Screen.EULA,
        Screen.KEYBOARD,
        Screen.EXISTING,
        Screen.REGISTRATION,
        Screen.SUMMARY,
    ],
)
def test_quit_anywhere_before_progress_writes_nothing(screen: Screen) -> None:
    inst, engine = start()
    for value in ("install", "next", "accept", "uk", "upgrade", "keep"):
        if inst.screen is screen:
            break
        inst.choose(value)
    assert inst.screen is screen
    inst.quit()
    assert screen_of(inst) is Screen.ABORTED
    assert engine.plans == []


def test_back_everywhere_it_makes_sense() -> None:
    inst, _ = start(target_info=target("4.5.0"))
    inst.back()
    assert screen_of(inst) is Screen.BOOT_MENU
    assert "no way back" in inst.message
    inst.next()
    assert not inst.view.can_back
    inst.back()
    assert screen_of(inst) is Screen.WELCOME
    inst.next()
    inst.back()
    assert screen_of(inst) is Screen.WELCOME
    inst.next()
    inst.choose("accept")
    inst.back()
    assert screen_of(inst) is Screen.EULA
    assert inst.view.default == "accept"  # the answer is kept as the default
    inst.next()
    inst.choose("de")
    assert screen_of(inst) is Screen.EXISTING
    inst.back()
    assert screen_of(inst) is Screen.KEYBOARD  # Back from 5 lands on 4
    assert inst.view.default == "de"
    inst.next()
    inst.choose("upgrade")
    inst.back()
    assert screen_of(inst) is Screen.EXISTING
    inst.next()
    inst.choose("keep")
    inst.back()
    assert screen_of(inst) is Screen.REGISTRATION
    inst.next()
    inst.choose("install")
    assert screen_of(inst) is Screen.PROGRESS
    assert not inst.view.can_back
    assert not inst.view.can_quit
    inst.back()
    inst.quit()
    assert screen_of(inst) is Screen.PROGRESS
    inst.next()
    inst.back()
    assert screen_of(inst) is Screen.FINISH
    assert "no way back" in inst.message


def test_back_skips_a_skipped_screen() -> None:
    inst, _ = start(target_info=target(None))
    to_keyboard(inst)
    inst.choose("us")
    assert screen_of(inst) is Screen.REGISTRATION
    inst.back()
    # Screen 5 does not apply to a blank disk: Back keeps going and lands on 4.
    assert screen_of(inst) is Screen.KEYBOARD
    assert steps.applicable(inst.model) == (
        Screen.BOOT_MENU,
        Screen.WELCOME,
        Screen.EULA,
        Screen.KEYBOARD,
        Screen.REGISTRATION,
        Screen.SUMMARY,
        Screen.PROGRESS,
        Screen.FINISH,
    )


def test_changing_mind_from_erase_to_upgrade() -> None:
    inst, engine = start(target_info=target("4.5.0"))
    to_keyboard(inst)
    inst.next()
    inst.choose("erase", confirm_erase=DISK_ID)
    inst.choose("standalone")
    inst.back()
    inst.back()
    assert screen_of(inst) is Screen.EXISTING
    assert inst.view.default == "erase"
    inst.choose("upgrade")
    inst.next()  # registration: keep is the default again
    plan = finish(inst, engine)
    assert plan.mode is InstallMode.UPGRADE
    assert plan.registration is None


def test_next_without_a_default_asks_for_a_choice() -> None:
    inst, _ = start()
    inst.next()
    inst.next()
    with pytest.raises(UserInputError, match="needs a choice: accept, decline"):
        inst.next()


def test_move_rejects_an_answer_of_the_wrong_screen() -> None:
    inst, _ = start()
    with pytest.raises(InternalError):
        inst.answer(EulaAnswer(True))


def test_install_only_on_the_progress_screen() -> None:
    inst, engine = start()
    with pytest.raises(InternalError):
        inst.install()
    assert engine.plans == []


def test_record_replays_the_same_run() -> None:
    inst, engine = start(target_info=target("4.5.0"))
    to_keyboard(inst)
    inst.choose("us")
    inst.choose("erase", confirm_erase=DISK_ID)
    inst.choose("synchronizer", server="sync.example.com", token="s3cret-token")
    plan = finish(inst, engine, reboot=True)
    text = answers.record(inst.model)
    assert "s3cret-token" not in text
    assert "never recorded" in text
    replay_file = answers.parse_answers(
        text.replace('# token = "..."', 'token = "s3cret-token"').encode(), "replay.toml"
    )
    again, engine2 = start(target_info=target("4.5.0"))
    report = drive(again, replay_file)
    assert report is not None
    # The interactive run asks about the reboot after installing; the replay knows it up front.
    assert engine2.plans == [dataclasses.replace(plan, reboot=True)]
    assert again.model.history == inst.model.history
    assert again.model.answer(Screen.FINISH) == inst.model.answer(Screen.FINISH)


def test_record_of_upgrade_replays_without_edits() -> None:
    inst, engine = start(target_info=target("4.5.0"))
    to_keyboard(inst)
    for _ in range(3):
        inst.next()
    plan = finish(inst, engine)
    again, engine2 = start(target_info=target("4.5.0"))
    drive(again, answers.parse_answers(answers.record(inst.model).encode(), "r.toml"))
    assert engine2.plans == [plan]


def test_unattended_declined_eula_returns_none() -> None:
    inst, engine = start()
    result = drive(
        inst,
        answers.parse_answers(b"[eula]\naccept = false\n[existing]\naction = 'upgrade'\n", "a"),
    )
    assert result is None
    assert screen_of(inst) is Screen.ABORTED
    assert engine.plans == []


def test_select_engine_is_the_one_seam(iso: Path, blank: Path) -> None:
    inst, _ = start()
    dry = select_engine(True, inst.model)
    assert isinstance(dry, DryRunEngine)
    # The dry run makes all the engine's read-only checks (check_plan), so it needs a real
    # medium and a real disk; it writes nothing.
    inst2 = Installer(load_medium(iso), load_target(blank), dry_run=True)
    drive(
        inst2,
        answers.parse_answers(
            b"[eula]\naccept = true\n[keyboard]\nlayout = 'us'\n"
            b"[registration]\nmode = 'standalone'\n",
            "a",
        ),
    )
    assert inst2.report is not None
    assert inst2.report.steps_done == ("dry run: checks passed",)
    assert blank.stat().st_blocks == 0  # still all holes: nothing written


def test_views_of_every_screen_render() -> None:
    inst, _ = start(target_info=target("4.5.0"))
    seen = []
    while not inst.screen.terminal:
        view = screens.view(inst.model)
        seen.append(view.screen)
        assert view.title
        inst.choose("accept") if view.screen is Screen.EULA else inst.next()
    assert screen_of(inst) is Screen.DONE
    assert screens.view(inst.model).choices == ()
    assert seen == list(steps.applicable(inst.model))


def test_back_from_the_summary_keeps_every_answer() -> None:
    """Back shows each screen with what was chosen and typed, not its first choice."""
    inst, engine = start(target_info=target("4.5.0", registered=False))
    to_keyboard(inst)
    inst.choose("de")
    inst.choose("erase", confirm_erase=DISK_ID)
    inst.choose("synchronizer", server="sync.example.com", token="tok-1")
    assert screen_of(inst) is Screen.SUMMARY
    inst.back()
    view = inst.view
    assert view.screen is Screen.REGISTRATION
    assert view.default == "synchronizer"
    server, token = view.fields["synchronizer"]
    assert server.default == "sync.example.com"
    assert token.secret
    assert token.default == ""
    assert "Enter keeps" in token.prompt
    # Enter on both prompts: the server as shown, the token typed before.
    inst.choose("synchronizer", server=server.default, token="")
    assert screen_of(inst) is Screen.SUMMARY
    inst.back()
    inst.back()
    view = inst.view
    assert view.screen is Screen.EXISTING
    assert view.default == "erase"
    assert view.fields["erase"][0].default == DISK_ID
    inst.back()
    assert inst.view.default == "de"
    inst.back()
    assert inst.view.screen is Screen.EULA
    assert inst.view.default == "accept"
    for _ in range(4):
        inst.next()
    assert screen_of(inst) is Screen.SUMMARY
    plan = finish(inst, engine)
    assert plan.mode is InstallMode.ERASE
    assert plan.keyboard == "de"
    assert plan.registration is not None
    assert plan.registration.server == "sync.example.com"
    assert plan.registration.token is not None
    assert plan.registration.token.reveal() == "tok-1"
