"""Making untrusted text (from a medium, a disk, an answer file) safe to print on one line.

Messages quote names and values that an attacker or a damaged disk controls. A newline in
such a value would turn one `error:` line into two (or fake a second one); an escape
sequence could repaint the terminal; a lone surrogate from a JSON `\\ud800` escape cannot be
encoded at all. `one_line()` escapes all three.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def one_line(text: str) -> str:
    """`text` with control characters (`\\x0a`) and lone surrogates (`\\ud800`) escaped."""
    if text.isprintable():
        return text
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)
