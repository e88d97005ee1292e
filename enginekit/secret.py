"""`Secret`: a string that does not print itself (the Synchronizer token).

Its str/repr are `***`, so a token cannot leak into a log, a report, an error line or a
recorded answer file by accident; `.reveal()` is the one way to the value, used only where
the value is really needed (writing the disk's config).
"""

from __future__ import annotations


class Secret:
    """A string that does not print itself. Use `.reveal()` where the value is really needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
