"""media.isomd5 against Debian's isomd5sum (`implantisomd5`, `checkisomd5`) as the oracle.

Every ISO is made by `xorriso -as mkisofs` in the test's tmp_path; both implanters run on copies
of the same image and must leave byte-identical files, and each checker must accept what the
other implanted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.engine_media import main
from enginekit.process import run
from media import isomd5
from media.errors import InvalidISO
from media.isomd5 import Md5AlreadyImplanted, Md5Status

pytestmark = pytest.mark.skipif(
    not (shutil.which("implantisomd5") and shutil.which("xorriso")),
    reason="isomd5sum or xorriso is not installed (run tools/setup)",
)

FIELD = 0x8000 + 883


def make_iso(directory: Path, files: dict[str, bytes], name: str = "test.iso") -> Path:
    tree = directory / f"{name}.tree"
    tree.mkdir()
    for relative, content in files.items():
        (tree / relative).write_bytes(content)
    iso = directory / name
    run(["xorriso", "-as", "mkisofs", "-quiet", "-o", iso, tree])
    return iso


def tool_check(iso: Path) -> int:
    return run(["checkisomd5", "--verbose", iso], check=False).returncode


def copy(iso: Path, name: str) -> Path:
    target = iso.with_name(name)
    shutil.copyfile(iso, target)
    return target


@pytest.fixture
def iso(tmp_path: Path) -> Path:
    # 1 MiB of data: above the ~700 KiB below which isomd5sum's own fragment sums
    # do not verify (see test_tiny_iso_fails_like_the_tool).
    return make_iso(tmp_path, {"a.bin": os.urandom(1024 * 1024), "b.txt": b"engine\n"})


def test_ours_implant_passes_checkisomd5(iso: Path) -> None:
    md5 = isomd5.implant(iso)
    proc = run(["checkisomd5", "--verbose", iso], check=False)
    output = proc.stdout.decode()
    assert proc.returncode == 0, output + proc.stderr.decode()
    assert md5 in output
    assert "PASS" in proc.stderr.decode()


def test_tool_implant_passes_ours_with_same_fields(iso: Path) -> None:
    run(["implantisomd5", iso])
    result = isomd5.check(iso)
    assert result.status is Md5Status.PASS
    assert result.fragments_ok
    assert result.first_bad_fragment is None
    assert result.actual == result.expected
    embedded = isomd5.read_embedded(iso)
    assert embedded is not None
    listed = run(["checkisomd5", "--md5sumonly", iso]).stdout.decode()
    assert f"{iso}:   {embedded.md5}" in listed
    assert f"Fragment sums: {embedded.fragment_sums}" in listed
    assert f"Fragment count: {embedded.fragment_count}" in listed
    assert "Supported ISO: no" in listed
    assert embedded.skip_sectors == 15
    assert len(embedded.fragment_sums) == 60
    field = iso.read_bytes()[FIELD : FIELD + 512]
    assert field.decode().rstrip(" ") == embedded.text


@pytest.mark.parametrize("supported", [False, True])
def test_both_implanters_write_identical_bytes(iso: Path, supported: bool) -> None:
    theirs = copy(iso, "theirs.iso")
    run(["implantisomd5", *(["--supported-iso"] if supported else []), theirs])
    md5 = isomd5.implant(iso, supported=supported)
    assert iso.read_bytes() == theirs.read_bytes()
    embedded = isomd5.read_embedded(iso)
    assert embedded is not None
    assert embedded.md5 == md5
    assert embedded.supported is supported


def test_refuses_second_implant_unless_forced(iso: Path) -> None:
    theirs = copy(iso, "theirs.iso")
    isomd5.implant(iso)
    run(["implantisomd5", theirs])
    before = iso.read_bytes()
    with pytest.raises(Md5AlreadyImplanted, match="already holds an isomd5sum checksum"):
        isomd5.implant(iso)
    assert run(["implantisomd5", theirs], check=False).returncode != 0
    assert iso.read_bytes() == before
    # Forced, with a different flag, both rewrite the field the same way.
    isomd5.implant(iso, force=True, supported=True)
    run(["implantisomd5", "--force", "--supported-iso", theirs])
    assert iso.read_bytes() == theirs.read_bytes()
    assert tool_check(iso) == 0


def test_flipped_byte_fails_in_both(iso: Path) -> None:
    isomd5.implant(iso)
    data = bytearray(iso.read_bytes())
    # The middle of the file data: both must fail at the same fragment.
    data[len(data) // 2] ^= 0x01
    iso.write_bytes(data)
    result = isomd5.check(iso)
    assert result.status is Md5Status.FAIL
    assert not result.fragments_ok
    assert result.first_bad_fragment is not None
    assert result.actual is None  # stopped at the bad fragment, as checkisomd5 does
    assert tool_check(iso) != 0
    full = isomd5.check(iso, stop_at_bad_fragment=False)
    assert full.status is Md5Status.FAIL
    assert full.actual not in (None, full.expected)
    assert full.first_bad_fragment == result.first_bad_fragment


def test_flip_in_last_fragment_fails_by_whole_sum(iso: Path) -> None:
    isomd5.implant(iso)
    data = bytearray(iso.read_bytes())
    # Just before the 15 skipped sectors: after the last fragment checkpoint.
    data[len(data) - 15 * 2048 - 1] ^= 0xFF
    iso.write_bytes(data)
    result = isomd5.check(iso)
    assert result.status is Md5Status.FAIL
    assert result.fragments_ok
    assert result.actual is not None
    assert result.actual != result.expected
    assert tool_check(iso) != 0


def test_skipped_sectors_are_not_covered(iso: Path) -> None:
    isomd5.implant(iso)
    data = bytearray(iso.read_bytes())
    data[-1] ^= 0xFF
    iso.write_bytes(data)
    assert isomd5.check(iso).status is Md5Status.PASS
    assert tool_check(iso) == 0


def test_absent(iso: Path) -> None:
    assert isomd5.read_embedded(iso) is None
    result = isomd5.check(iso)
    assert result.status is Md5Status.ABSENT
    assert result.expected is None
    proc = run(["checkisomd5", iso], check=False)
    assert proc.returncode != 0
    assert "NA" in proc.stderr.decode()


def test_progress_is_reported(iso: Path) -> None:
    seen: list[tuple[int, int]] = []
    isomd5.implant(iso, progress=lambda done, total: seen.append((done, total)))
    assert seen[0][0] == 0
    assert seen[-1][0] == seen[-1][1] == iso.stat().st_size - 15 * 2048


def test_truncated_iso_is_invalid(iso: Path) -> None:
    isomd5.implant(iso)
    with open(iso, "r+b") as handle:
        handle.truncate(iso.stat().st_size - 4096)
    with pytest.raises(InvalidISO, match=r"truncated: the file has \d+ bytes") as info:
        isomd5.check(iso)
    assert str(iso) in info.value.message
    assert "\n" not in info.value.message
    with pytest.raises(InvalidISO, match="truncated"):
        isomd5.implant(iso, force=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "too short"),
        (b"\0" * 100_000, "no CD001"),
        (os.urandom(40_000), "no CD001"),
    ],
)
def test_non_iso_is_invalid(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "not.iso"
    path.write_bytes(content)
    for action in (isomd5.check, isomd5.read_embedded, isomd5.implant):
        with pytest.raises(InvalidISO, match=message):
            action(path)
    assert path.read_bytes() == content


def test_missing_file_and_directory_are_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidISO, match="no such file"):
        isomd5.check(tmp_path / "missing.iso")
    with pytest.raises(InvalidISO, match="is a directory"):
        isomd5.check(tmp_path)


def test_no_pvd_is_invalid(iso: Path) -> None:
    data = bytearray(iso.read_bytes())
    data[0x8000] = 255  # the PVD becomes a set terminator
    iso.write_bytes(data)
    with pytest.raises(InvalidISO, match="without a Primary Volume Descriptor"):
        isomd5.check(iso)


def test_tiny_iso_fails_like_the_tool(tmp_path: Path) -> None:
    # Below 21 x 32 KiB of hashed data one read chunk spans several fragments, implantisomd5
    # then writes fewer than 60 fragment characters, and checkisomd5 rejects its own sum.
    # Bit compatibility means we do exactly the same.
    iso = make_iso(tmp_path, {"a": b"x" * 1000})
    theirs = copy(iso, "theirs.iso")
    run(["implantisomd5", theirs])
    isomd5.implant(iso)
    assert iso.read_bytes() == theirs.read_bytes()
    assert tool_check(iso) != 0
    assert isomd5.check(iso).status is Md5Status.FAIL


def simulate_tool_checkpoints(length: int, count: int) -> list[tuple[int, int]]:
    """The C loop of libimplantisomd5.c, chunk by chunk."""
    points = []
    previous = 0
    offset = 0
    while offset < length:
        nread = min(length - offset, isomd5.TOOL_CHUNK_SIZE)
        current = offset * (count + 1) // length
        if current != previous:
            points.append((offset + nread, current))
            previous = current
        offset += nread
    return points


@pytest.mark.parametrize(
    "length",
    [1, 2048, 32768, 32769, 21 * 32768 - 1, 21 * 32768, 688_128, 1_000_000, 98_765_432, 2**31 + 5],
)
def test_checkpoints_match_the_tools_loop(length: int) -> None:
    if length > 10**9:
        # Too long to simulate chunk by chunk quickly; the arithmetic must still be sane.
        points = isomd5.fragment_checkpoints(length, 20)
        assert [n for _, n in points] == list(range(1, 21))
        return
    assert isomd5.fragment_checkpoints(length, 20) == simulate_tool_checkpoints(length, 20)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=3 * 1024 * 1024), min_size=1, max_size=4),
    seed=st.binary(min_size=16, max_size=16),
)
def test_random_images_agree_with_isomd5sum(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], seed: bytes
) -> None:
    directory = tmp_path_factory.mktemp("random")
    files = {
        f"f{index}.bin": (seed * (size // 16 + 1))[:size] if index % 2 else os.urandom(size)
        for index, size in enumerate(sizes)
    }
    ours = make_iso(directory, files)
    theirs = copy(ours, "theirs.iso")
    isomd5.implant(ours)
    run(["implantisomd5", theirs])
    assert ours.read_bytes() == theirs.read_bytes()
    # Whatever the tool decides (it rejects its own sums on tiny images), we decide the same.
    expected = Md5Status.PASS if tool_check(ours) == 0 else Md5Status.FAIL
    assert isomd5.check(ours).status is expected


def tool_verdict(iso: Path) -> Md5Status:
    proc = run(["checkisomd5", iso], check=False)
    if proc.returncode == 0:
        return Md5Status.PASS
    return Md5Status.ABSENT if "result is: NA" in proc.stderr.decode() else Md5Status.FAIL


FIELD_VARIANTS = {
    # name: (template, what both tools decide)
    "reordered": (
        "SKIPSECTORS = 15;FRAGMENT COUNT = 20;ISO MD5SUM = {md5};RHLISOSTATUS=1;"
        "FRAGMENT SUMS = {sums};",
        Md5Status.PASS,
    ),
    "no fragment checks": (
        "ISO MD5SUM = {md5};SKIPSECTORS = 15;FRAGMENT SUMS = {bad_sums};FRAGMENT COUNT = 0;",
        Md5Status.PASS,
    ),
    "bad fragment sums": (
        "ISO MD5SUM = {md5};SKIPSECTORS = 15;FRAGMENT SUMS = {bad_sums};FRAGMENT COUNT = 20;",
        Md5Status.FAIL,
    ),
    "other fragment count": (
        "ISO MD5SUM = {md5};SKIPSECTORS = 15;FRAGMENT SUMS = {sums};FRAGMENT COUNT = 10;",
        Md5Status.FAIL,
    ),
    "other skip count": (
        "ISO MD5SUM = {md5};SKIPSECTORS = 16;FRAGMENT SUMS = {sums};FRAGMENT COUNT = 20;",
        Md5Status.FAIL,
    ),
    "upper-case sum": (
        "ISO MD5SUM = {md5_upper};SKIPSECTORS = 15;FRAGMENT SUMS = {sums};FRAGMENT COUNT = 20;",
        Md5Status.FAIL,
    ),
    "no skip count": ("ISO MD5SUM = {md5};FRAGMENT SUMS = {sums};", Md5Status.ABSENT),
    "skip count not a number": (
        "ISO MD5SUM = {md5};SKIPSECTORS = 1x;FRAGMENT SUMS = {sums};",
        Md5Status.ABSENT,
    ),
    "sum cut by the field's end": (
        " " * 470 + "ISO MD5SUM = {md5};SKIPSECTORS = 15;",
        Md5Status.ABSENT,
    ),
    "free text": ("Engine 5.0.0 installer, built by EngineKit", Md5Status.ABSENT),
}


@pytest.mark.parametrize("variant", sorted(FIELD_VARIANTS))
def test_field_variants_are_parsed_like_checkisomd5(iso: Path, variant: str) -> None:
    template, expected = FIELD_VARIANTS[variant]
    run(["implantisomd5", iso])
    embedded = isomd5.read_embedded(iso)
    assert embedded is not None
    text = template.format(
        md5=embedded.md5,
        md5_upper=embedded.md5.upper(),
        sums=embedded.fragment_sums,
        bad_sums="".join("f" if c != "f" else "0" for c in embedded.fragment_sums),
    )
    patch_field = text.encode().ljust(512, b" ")[:512]
    with open(iso, "r+b") as handle:
        handle.seek(FIELD)
        handle.write(patch_field)
    assert tool_verdict(iso) is expected
    assert isomd5.check(iso).status is expected


def test_hybrid_iso_system_area_is_covered(tmp_path: Path) -> None:
    """On an isohybrid image with MBR and GPT both implanters agree, and a change in the
    system area (where the partition tables live) breaks the sum."""
    isohdpfx = Path("/usr/lib/ISOLINUX/isohdpfx.bin")
    if not isohdpfx.exists():
        pytest.skip("isolinux is not installed (run tools/setup)")
    tree = tmp_path / "tree"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot" / "efi.img").write_bytes(bytes(1440 * 1024))
    (tree / "data.bin").write_bytes(os.urandom(512 * 1024))
    iso = tmp_path / "hybrid.iso"
    run(
        ["xorriso", "-as", "mkisofs", "-quiet", "-o", iso, "-isohybrid-mbr", isohdpfx,
         "-e", "boot/efi.img", "-no-emul-boot", "-isohybrid-gpt-basdat", tree]
    )  # fmt: skip
    theirs = copy(iso, "theirs.iso")
    run(["implantisomd5", theirs])
    isomd5.implant(iso)
    assert iso.read_bytes() == theirs.read_bytes()
    assert tool_check(iso) == 0
    data = bytearray(iso.read_bytes())
    data[440] ^= 0xFF  # the MBR disk signature
    iso.write_bytes(data)
    assert isomd5.check(iso).status is Md5Status.FAIL
    assert tool_check(iso) != 0


# --- every md5/verify failure has a hint, as the README promises ---------------------------


def _one_error_and_hint(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[str]]:
    status = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len([ln for ln in lines if ln.startswith("error:")]) == 1, err
    hints = [ln for ln in lines if ln.startswith("hint: ")]
    assert len(hints) == 1, err
    assert len(hints[0]) > len("hint: ") + 10, err
    return status, lines


def _flip_middle_byte(path: Path) -> None:
    with open(path, "r+b") as fp:
        fp.seek(path.stat().st_size // 2)
        byte = fp.read(1)
        fp.seek(-1, 1)
        fp.write(bytes([byte[0] ^ 0xFF]))


def test_md5_mismatch_and_verify_failure_have_hints(
    reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _flip_middle_byte(reference_iso_copy)
    status, lines = _one_error_and_hint(["md5", "check", str(reference_iso_copy)], capsys)
    assert status == 1
    assert any("does not match" in ln for ln in lines)
    assert any(ln.startswith("hint: ") and "fetch or build it again" in ln for ln in lines)

    status, lines = _one_error_and_hint(["verify", str(reference_iso_copy)], capsys)
    assert status == 1
    assert any(ln.startswith(f"error: {reference_iso_copy}: verification failed") for ln in lines)


def test_md5_absent_has_a_hint(
    reference_iso_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with open(reference_iso_copy, "r+b") as fp:
        fp.seek(16 * 2048 + 883)
        fp.write(b" " * 512)
    status, lines = _one_error_and_hint(["md5", "check", str(reference_iso_copy)], capsys)
    assert status == 2
    assert f"hint: embed one with 'engine-media md5 implant {reference_iso_copy}'" in lines


@pytest.mark.parametrize("size", [100, 40_000, 200_000])
def test_md5_implant_of_a_non_iso_has_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: int
) -> None:
    readme = tmp_path / "README.md"
    readme.write_bytes(b"# not an ISO\n" * (size // 13))
    before = readme.read_bytes()
    for action in ("implant", "check"):
        status, lines = _one_error_and_hint(["md5", action, str(readme)], capsys)
        assert status == 2
        assert any("not an ISO 9660 image" in ln for ln in lines)
        assert "hint: give the path of an .iso file or of a device holding one" in lines
    assert readme.read_bytes() == before
