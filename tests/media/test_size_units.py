"""Size options: SI suffixes are powers of ten, IEC and bare K/M/G/T powers of two, a bare
number is refused everywhere, and `human_size` reads one way only."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.engine_disk import main as engine_disk_main
from commands.engine_media import main as engine_media_main
from enginekit.errors import UserInputError
from enginekit.sizes import human_size, human_sizes, parse_size
from media.inspect import fits_on
from media.usb.policy import FileTargetInfo, file_refusals

SI = {"kB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
IEC = {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}
BARE = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
ALL_UNITS = {**SI, **IEC, **BARE, "B": 1}


@given(
    number=st.integers(min_value=1, max_value=10**6),
    unit=st.sampled_from(sorted(ALL_UNITS)),
    upper=st.booleans(),
    space=st.sampled_from(["", " "]),
)
def test_parse_size_is_number_times_unit(number: int, unit: str, upper: bool, space: str) -> None:
    text = f"{number}{space}{unit.upper() if upper else unit}"
    assert parse_size(text) == number * ALL_UNITS[unit]


@given(st.integers(min_value=0, max_value=10**15).map(str))
def test_a_bare_number_is_refused(text: str) -> None:
    with pytest.raises(UserInputError, match="has no unit"):
        parse_size(text)


def test_650_megabytes_are_powers_of_ten() -> None:
    assert parse_size("650MB") == 650_000_000
    # An ISO of 650,000,001 bytes does not fit on a 650 MB stick (it was read as 650 MiB).
    assert fits_on(650_000_001, parse_size("650MB"))["USB"] is False
    assert fits_on(650_000_001, parse_size("650MiB"))["USB"] is True


@given(st.integers(min_value=0, max_value=2**50))
def test_human_size_never_shows_1024_of_a_unit(n: int) -> None:
    number, unit = human_size(n).split()
    assert unit in ("B", "KiB", "MiB", "GiB", "TiB")
    assert float(number) < 1024 or unit == "TiB"


@given(st.integers(min_value=0, max_value=2**50), st.integers(min_value=1, max_value=2**20))
def test_sizes_side_by_side_never_read_alike(a: int, gap: int) -> None:
    small, large = human_sizes(a, a + gap)
    assert small != large


def test_a_stick_one_byte_short_says_so() -> None:
    info = FileTargetInfo("stick.img", 650_000_000, True, False, 0)
    (refusal,) = file_refusals(info, 650_000_001)
    assert "(650,000,000 B < 650,000,001 B)" in refusal.reason


def test_usb_size_in_megabytes_is_checked_as_sold(
    reference_iso_5: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stick of N MB (N * 10^6 bytes) smaller than the ISO, N MiB larger: it does not fit."""
    size = reference_iso_5.stat().st_size
    n = -(-size // 1024**2)
    assert n * 1000**2 < size <= n * 1024**2
    assert engine_media_main(["inspect", str(reference_iso_5), "--usb-size", f"{n}MB"]) == 0
    assert "USB no" in capsys.readouterr().out
    assert engine_media_main(["inspect", str(reference_iso_5), "--usb-size", f"{n}MiB"]) == 0
    assert "USB yes" in capsys.readouterr().out


def test_create_size_follows_the_same_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "si.img"
    assert engine_disk_main(["create", str(disk), "--size", "100MB"]) == 0
    assert disk.stat().st_size == 100_000_000
    bare = tmp_path / "bare.img"
    assert engine_disk_main(["create", str(bare), "--size", "104857600"]) == 2
    assert capsys.readouterr().err.splitlines()[-2] == "error: --size '104857600' has no unit"
    assert not bare.exists()
