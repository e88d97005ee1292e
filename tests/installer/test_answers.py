"""Answer files: every schema error with its key path, run-specific checks, and fuzzing.

The promise under test: a document is either a valid `AnswerFile` or one `AnswerFileError`
naming the file and listing every problem; nothing else ever escapes, whatever the bytes.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disk_images.layout import Slot
from disk_images.state import Registration, UpgradeStatus
from enginekit.errors import UserInputError
from enginekit.versions import DiskLayout
from installer import answers
from installer.answers import AnswerFileError, check_for_run, load_answers, parse_answers
from installer.model import InstalledEngine, InstallerModel, MediumInfo, TargetInfo
from installer.plan import InstallMode, RegistrationMode, Secret
from installer.rules import InstallRefused

DISK_ID = "9e9e9e9e-1111-2222-3333-444444444444"
MEDIUM = MediumInfo(
    Path("/m/e.iso"), "5.0.0", ("4.5.0",), "5.0.0", DiskLayout.GPT_AB, ("us", "uk", "de")
)


def model(version: str | None) -> InstallerModel:
    if version is None:
        target = TargetInfo(Path("/d.img"), 1 << 30, None, None, "blank disk")
    else:
        target = TargetInfo(
            Path("/d.img"),
            1 << 30,
            DISK_ID,
            InstalledEngine(
                version,
                DiskLayout.GPT_AB,
                Slot.A,
                UpgradeStatus.BLANK,
                Registration(RegistrationMode.STANDALONE),
                "us",
            ),
        )
    return InstallerModel(MEDIUM, target)


def problems_of(text: str | bytes) -> tuple[str, ...]:
    data = text.encode() if isinstance(text, str) else text
    with pytest.raises(AnswerFileError) as caught:
        parse_answers(data, "a.toml")
    error = caught.value
    assert error.message.startswith("a.toml: ")
    assert error.exit_status == 2
    assert error.hint
    return error.problems


def test_full_valid_file() -> None:
    parsed = parse_answers(
        b"""
[eula]
accept = true
[keyboard]
layout = "uk"
[existing]
action = "erase"
confirm_erase = "9e9e9e9e-1111-2222-3333-444444444444"
[registration]
mode = "synchronizer"
server = "https://sync.example.com:8443/engine"
token = "abc-123"
[finish]
reboot = true
""",
        "a.toml",
    )
    assert parsed.eula_accept is True
    assert parsed.keyboard == "uk"
    assert parsed.action is InstallMode.ERASE
    assert parsed.confirm_erase == DISK_ID
    assert parsed.registration_mode is RegistrationMode.SYNCHRONIZER
    assert parsed.token == Secret("abc-123")
    assert "abc-123" not in repr(parsed)
    assert parsed.reboot is True
    check_for_run(parsed, model("4.5.0"))


def test_empty_file_is_schema_valid_but_misses_answers() -> None:
    parsed = parse_answers(b"", "a.toml")
    with pytest.raises(AnswerFileError) as caught:
        check_for_run(parsed, model(None))
    assert caught.value.problems == (
        "missing answers for this run (blank target): eula.accept, keyboard.layout, "
        "registration.mode",
    )
    with pytest.raises(AnswerFileError) as caught:
        check_for_run(parsed, model("4.5.0"))
    assert caught.value.problems == (
        "missing answers for this run (Engine 4.5.0 found on the target): eula.accept, "
        "existing.action",
    )


def test_upgrade_needs_only_eula_and_action() -> None:
    check_for_run(
        parse_answers(b'[eula]\naccept = true\n[existing]\naction = "upgrade"\n', "a"),
        model("4.5.0"),
    )


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("[eula]\naccept = 'yes'", "eula.accept: must be true or false, not a string"),
        ("[eula]\naccept = 1", "eula.accept: must be true or false, not an integer"),
        ("[keyboard]\nlayout = 3.5", "keyboard.layout: must be a string, not a number"),
        ("[keyboard]\nlayout = ['us']", "keyboard.layout: must be a string, not an array"),
        (
            "[finish]\nreboot = 1979-05-27",
            "finish.reboot: must be true or false, not a date or time",
        ),
        ("[existing]\naction = {a = 1}", "existing.action: must be a string, not a table"),
        ("eula = true", "eula: must be a table ([eula]), not a boolean"),
        ("[eula]\naccept = true\nextra = 1", "eula.extra: unknown key; known keys are accept"),
        (
            "[install]\nmode = 'x'",
            "install: unknown section; known sections are eula, keyboard, existing, "
            "registration, finish, disk",
        ),
        ("[keyboard]\nlayout = 'US!'", "keyboard.layout: 'US!' is not a layout name"),
        ("[keyboard]", "keyboard.layout: is needed when there is a [keyboard] section"),
        (
            "[existing]\naction = 'nuke'",
            "existing.action: 'nuke' is not an action; choose one of upgrade, erase, repair",
        ),
        ("[existing]\nconfirm_erase = 'x'", "existing.action: is needed when there is"),
        (
            "[existing]\naction = 'upgrade'\nconfirm_erase = 'x'",
            'existing.confirm_erase: only goes with action = "erase"',
        ),
        ("[existing]\naction = 'erase'", 'existing.confirm_erase: is needed with action = "erase"'),
        ("[registration]\nserver = 'a'", "registration.mode: is needed when there is"),
        ("[registration]\nmode = 'cloud'", "registration.mode: 'cloud' is not a registration mode"),
        (
            "[registration]\nmode = 'standalone'\nserver = 'a.b'",
            'registration.server: only goes with mode = "synchronizer"',
        ),
        (
            "[registration]\nmode = 'standalone'\ntoken = 't'",
            'registration.token: only goes with mode = "synchronizer"',
        ),
        (
            "[registration]\nmode = 'synchronizer'\ntoken = 't'",
            'registration.server: is needed with mode = "synchronizer"',
        ),
        (
            "[registration]\nmode = 'synchronizer'\nserver = 'a.b'",
            'registration.token: is needed with mode = "synchronizer"',
        ),
        (
            "[registration]\nmode = 'synchronizer'\nserver = 1\ntoken = 't'",
            "registration.server: must be a string, not an integer",
        ),
        (
            "[registration]\nmode = 'synchronizer'\nserver = 'a b'\ntoken = 't'",
            "registration.server: 'a b' is not a host name, host:port or http(s) URL",
        ),
        (
            "[registration]\nmode = 'synchronizer'\nserver = 'a.b'\ntoken = 'two words'",
            "registration.token: may not contain spaces or control characters",
        ),
        (
            "[registration]\nmode = 'synchronizer'\nserver = 'a.b'\ntoken = ''",
            "registration.token: is empty",
        ),
    ],
)
def test_each_schema_error_names_its_path(document: str, expected: str) -> None:
    problems = problems_of(document)
    assert len(problems) == 1, problems
    assert problems[0].startswith(expected)


def test_every_error_is_reported_at_once() -> None:
    problems = problems_of(
        "[eula]\naccept = 'no'\n[keyboard]\nlayout = 5\n[bogus]\n[existing]\naction = 'x'\n"
        "[finish]\nreboot = 'yes'\nnow = true\n"
    )
    assert sorted(p.split(":")[0] for p in problems) == sorted(
        [
            "eula.accept",
            "keyboard.layout",
            "bogus",
            "existing.action",
            "finish.reboot",
            "finish.now",
        ]
    )


def test_invalid_toml_is_one_error_naming_the_file() -> None:
    problems = problems_of("[eula\naccept = true")
    assert len(problems) == 1
    assert problems[0].startswith("is not valid TOML: ")


def test_non_utf8_is_one_error_naming_the_file() -> None:
    assert problems_of(b"[eula]\naccept = true\n# caf\xe9\n") == (
        "is not UTF-8 text (byte 0xe9 at offset 26)",
    )


def test_huge_strings_are_cut_short_and_refused() -> None:
    huge = "x" * 100_000
    problems = problems_of(
        f"[keyboard]\nlayout = '{huge}'\n[existing]\naction = '{huge}'\n"
        f"[registration]\nmode = 'synchronizer'\nserver = '{huge}'\ntoken = '{huge}'\n"
        f"['{huge}']\n"
    )
    assert len(problems) == 5
    for problem in problems:
        assert len(problem) < 200, problem
    assert "keyboard.layout: too long (100000 characters; at most 32)" in problems
    assert "registration.token: too long (100000 characters; at most 4096)" in problems


def test_huge_file_is_refused_before_parsing() -> None:
    problems = problems_of(b"#" * (answers.MAX_FILE_BYTES + 1))
    assert problems == (
        f"is larger than {answers.MAX_FILE_BYTES} bytes, the most an answer file may have",
    )


def test_load_answers_names_missing_and_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="no such answer file"):
        load_answers(tmp_path / "nope.toml")
    with pytest.raises(UserInputError, match="is a directory"):
        load_answers(tmp_path)
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(AnswerFileError, match=r"bad\.toml: is not UTF-8"):
        load_answers(tmp_path / "bad.toml")


def test_run_checks_layout_confirmation_and_missing() -> None:
    parsed = parse_answers(
        b"[keyboard]\nlayout = 'fr'\n[existing]\naction = 'erase'\nconfirm_erase = 'abc'\n", "a"
    )
    with pytest.raises(AnswerFileError) as caught:
        check_for_run(parsed, model("4.5.0"))
    assert caught.value.problems == (
        "missing answers for this run (Engine 4.5.0 found on the target): eula.accept, "
        "registration.mode",
        f"existing.confirm_erase: to erase, confirm with the disk id '{DISK_ID}' (got 'abc')",
        "keyboard.layout: 'fr' is not a known layout; choose one of us, uk, de",
    )


def test_existing_section_on_a_blank_disk_is_an_error() -> None:
    parsed = parse_answers(b"[eula]\naccept = true\n[existing]\naction = 'upgrade'\n", "a")
    with pytest.raises(AnswerFileError, match="the target has no Engine installation"):
        check_for_run(parsed, model(None))


def test_refusal_alone_is_one_clear_line() -> None:
    parsed = parse_answers(b"[eula]\naccept = true\n[existing]\naction = 'upgrade'\n", "a")
    with pytest.raises(InstallRefused) as caught:
        check_for_run(parsed, model("4.0.0"))
    assert caught.value.message == (
        "Engine 4.0.0 cannot be upgraded to 5.0.0 directly; upgrade 4.0.0 to 4.5.0 first"
    )
    with pytest.raises(InstallRefused, match="downgrade"):
        check_for_run(parsed, model("5.1.0"))


def test_refusal_among_other_errors_is_listed() -> None:
    parsed = parse_answers(b"[existing]\naction = 'upgrade'\n", "a")
    with pytest.raises(AnswerFileError) as caught:
        check_for_run(parsed, model("4.0.0"))
    assert caught.value.problems[-1].startswith("existing.action: Engine 4.0.0 cannot be")


# ---- fuzzing ---------------------------------------------------------------------------------

SCALARS = (
    st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(
        [
            "us",
            "upgrade",
            "erase",
            "repair",
            "synchronizer",
            "standalone",
            DISK_ID,
            "sync.example.com",
            "t0k",
        ]
    )
)
KEYS = st.sampled_from(
    ["accept", "layout", "action", "confirm_erase", "mode", "server", "token", "reboot"]
) | st.text(min_size=1, max_size=8)
SECTIONS = st.sampled_from(list(answers.SCHEMA)) | st.text(min_size=1, max_size=8)
VALUES = SCALARS | st.lists(SCALARS, max_size=3)


def render_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) and "e" not in repr(value) else "1.5"
    if isinstance(value, str):
        return answers._toml_string(value)
    return "[" + ", ".join(render_value(v) for v in value) + "]"


def render(document: dict[str, dict[str, Any]]) -> str:
    lines = []
    for section, content in document.items():
        lines.append(f"[{answers._toml_string(section)}]")
        for key, value in content.items():
            lines.append(f"{answers._toml_string(key)} = {render_value(value)}")
    return "\n".join(lines) + "\n"


DOCUMENTS = st.dictionaries(SECTIONS, st.dictionaries(KEYS, VALUES, max_size=4), max_size=6)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(data: bytes) -> answers.AnswerFile | AnswerFileError:
    try:
        return parse_answers(data, "fuzz.toml")
    except AnswerFileError as error:
        failure = error
    assert failure.message.startswith("fuzz.toml: ")
    assert failure.problems
    assert all(p for p in failure.problems)
    return failure


@FUZZ
@given(DOCUMENTS, st.sampled_from([None, "4.0.0", "4.5.0", "5.0.0", "6.0.0"]))
def test_fuzz_structured_documents(
    document: dict[str, dict[str, Any]], installed: str | None
) -> None:
    text = render(document)
    assert tomllib.loads(text) is not None  # the renderer makes valid TOML
    result = outcome(text.encode())
    if isinstance(result, answers.AnswerFile):
        refusal: AnswerFileError | InstallRefused | None = None
        try:
            check_for_run(result, model(installed))
        except (AnswerFileError, InstallRefused) as error:
            refusal = error
        assert refusal is None or refusal.message


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    outcome(data)


@FUZZ
@given(st.text())
def test_recorded_strings_round_trip(value: str) -> None:
    assert tomllib.loads(f"k = {answers._toml_string(value)}")["k"] == value


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """Notepad saves UTF-8 with a BOM; it is not part of the TOML."""
    path = tmp_path / "notepad.toml"
    path.write_bytes(b"\xef\xbb\xbf[eula]\r\naccept = true\r\n")
    assert load_answers(path).eula_accept is True


def test_a_bad_byte_after_a_byte_order_mark_names_its_offset_in_the_file() -> None:
    assert problems_of(b"\xef\xbb\xbf[eula]\n\xff") == (
        "is not UTF-8 text (byte 0xff at offset 10)",
    )


def test_a_file_over_the_limit_reports_the_limit_not_a_wrong_size(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_bytes(b"#" * (3 * answers.MAX_FILE_BYTES))
    with pytest.raises(AnswerFileError) as caught:
        load_answers(path)
    assert caught.value.problems == (
        f"is larger than {answers.MAX_FILE_BYTES} bytes, the most an answer file may have",
    )


def test_a_declined_licence_is_not_asked_for_the_answers_it_would_never_reach() -> None:
    """Only `[eula] accept = false`, on an Engine disk: the run goes on to the licence screen
    and stops there (no complaint about existing.action); --validate reports the decline."""
    parsed = parse_answers(b"[eula]\naccept = false\n", "a.toml")
    check_for_run(parsed, model("4.5.0"))
    with pytest.raises(AnswerFileError) as caught:
        check_for_run(parsed, model("4.5.0"), decline_is_problem=True)
    assert any(p.startswith("eula.accept: is false") for p in caught.value.problems)


UPGRADE_ON = '[eula]\naccept = true\n[existing]\naction = "upgrade"\n[disk]\ntarget = "{}"\n'


@pytest.mark.parametrize("name", ["/d.img", DISK_ID])
def test_disk_target_names_the_disk_by_path_or_id(name: str) -> None:
    check_for_run(parse_answers(UPGRADE_ON.format(name).encode(), "a"), model("4.5.0"))


def test_disk_target_naming_another_disk_is_an_error() -> None:
    with pytest.raises(AnswerFileError) as caught:
        check_for_run(parse_answers(UPGRADE_ON.format("/dev/sdb").encode(), "a"), model("4.5.0"))
    assert caught.value.problems == (
        f"disk.target: names '/dev/sdb', but this run installs on /d.img (disk id {DISK_ID})",
    )
