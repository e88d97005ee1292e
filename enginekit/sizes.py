"""Human sizes: the one parser for every size option, and the one way to print sizes.

The rule, for every option that takes a size (`--size`, `--usb-size`, ...):
- SI suffixes are powers of ten: `kB`/`KB` 1000, `MB` 1000**2, `GB` 1000**3, `TB` 1000**4
  (a 650 MB stick holds 650,000,000 bytes, as it is sold);
- IEC suffixes are powers of two: `KiB` 1024, `MiB` 1024**2, `GiB` 1024**3, `TiB` 1024**4;
- a bare letter `K`, `M`, `G`, `T` is the IEC unit (`8G` = 8 GiB, as truncate and qemu-img
  read it);
- `B` is bytes; a number without any unit is refused (`16` has meant both 16 bytes and 16 GB).
Letters are case-insensitive; a decimal number is allowed when it comes to whole bytes
(`1.5G`, `4.7GB`). `human_size` prints IEC units only, so its output never reads two ways.
"""

from __future__ import annotations

import re
from fractions import Fraction

from enginekit.errors import UserInputError

SI = {"K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
IEC = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?B?)\s*$", re.IGNORECASE)
UNITS_HELP = "kB, MB, GB, TB are powers of 1000; K, M, G, T, KiB, MiB, GiB, TiB powers of 1024"


def unit_factor(letter: str, suffix: str) -> int:
    """Bytes per unit for a prefix letter (K/M/G/T or '') and what follows it ('', 'B',
    'iB'). Raises KeyError for a combination that is not a unit ('iB' alone)."""
    letter, suffix = letter.upper(), suffix.upper()
    if not letter:
        if suffix != "B":
            raise KeyError(suffix)
        return 1
    if suffix == "B":
        return SI[letter]
    if suffix in ("", "IB"):
        return IEC[letter]
    raise KeyError(suffix)


def parse_size(text: str, what: str = "size") -> int:
    """`8G` -> 8 GiB, `650MB` -> 650,000,000 bytes, `4096B` -> 4096 bytes (see the module's
    rule). `what` names the option in the error line (e.g. `--usb-size`)."""
    match = _SIZE.match(text)
    if not match:
        raise UserInputError(
            f"{what} {text.strip()!r} is not a size",
            hint=f"write a number and a unit, e.g. 8G or 650MB ({UNITS_HELP}; B is bytes)",
        )
    number, letter, suffix = match.groups()
    if not letter and not suffix:
        raise UserInputError(
            f"{what} {text.strip()!r} has no unit",
            hint=f"add one: {number}G (GiB), {number}GB (10^9 bytes) or {number}B (bytes)",
        )
    try:
        factor = unit_factor(letter, suffix)
    except KeyError:
        raise UserInputError(
            f"{what} {text.strip()!r} is not a size",
            hint=f"write a number and a unit, e.g. 8G or 650MB ({UNITS_HELP}; B is bytes)",
        ) from None
    value = Fraction(number) * factor
    if value.denominator != 1:
        raise UserInputError(
            f"{what} {text.strip()!r} is not a whole number of bytes",
            hint="use a smaller unit (e.g. 1536M instead of 1.5001G)",
        )
    if value <= 0:
        raise UserInputError(
            f"{what} {text.strip()!r} must be more than zero",
            hint="give a size above zero, e.g. 8G",
        )
    return int(value)


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB'. IEC units only (KiB = 1024 B); a value that would round up to
    1024 of a unit is shown in the next one. Exact bytes stay available to JSON output."""
    value = float(n)
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    for index, unit in enumerate(units):
        last = index == len(units) - 1
        if unit == "B":
            if abs(value) < 1024:
                return f"{value:.0f} B"
        elif last or round(abs(value), 1) < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_sizes(*sizes: int) -> tuple[str, ...]:
    """`human_size` of each, for sizes shown side by side (`X < Y`): when rounding would
    print two different sizes alike, every one is shown in exact bytes instead."""
    texts = tuple(human_size(n) for n in sizes)
    if len(set(texts)) < len(set(sizes)):
        return tuple(f"{n:,} B" for n in sizes)
    return texts
