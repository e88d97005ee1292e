"""Human sizes: parse `8G`, `512M`, `4096` into bytes and print bytes back for people."""

from __future__ import annotations

import re

from enginekit.errors import UserInputError

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """`8G` -> 8 GiB in bytes. Units are binary (K, M, G, T; an optional `iB`/`B` is allowed)."""
    match = _SIZE.match(text)
    if not match:
        raise UserInputError(
            f"{text!r} is not a size", hint="write a number of bytes or use K, M, G, T (e.g. 8G)"
        )
    value = int(match.group(1)) * _UNITS[match.group(2).upper()]
    if value <= 0:
        raise UserInputError(
            f"size {text!r} must be more than zero", hint="give a size above zero, e.g. 8G"
        )
    return value


def human_size(n: int) -> str:
    """1536 -> '1.5 KiB'. Exact bytes stay available to JSON output; this is for people."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
