"""A bandwidth limit for a download: `Throttle(rate).pace(total)` waits until `total` bytes
are no more than `rate` bytes per second since the first call. Reading slower than the
sender writes fills the TCP window, so the sender is held to the same rate."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from enginekit.sizes import parse_size

PER_SECOND = "/s"


def parse_rate(text: str, what: str = "--bandwidth") -> int:
    """Bytes per second: a size by the project's rule (`2M`, `500kB`), `/s` optional."""
    return parse_size(text.removesuffix(PER_SECOND), what)


@dataclass
class Throttle:
    rate: int  # bytes per second
    _start: float | None = field(default=None, init=False)

    @property
    def chunk(self) -> int:
        """Read size: about an eighth of a second's worth (16 KiB to 1 MiB)."""
        return max(16 * 1024, min(1024 * 1024, self.rate // 8))

    def pace(self, total: int) -> None:
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + total / self.rate
        if due > now:
            time.sleep(due - now)
