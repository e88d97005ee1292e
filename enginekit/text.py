"""Making untrusted text (from a medium, a disk, an answer file) safe to print on one line.

Messages quote names and values that an attacker or a damaged disk controls. A newline in
such a value would turn one `error:` line into two (or fake a second one); an escape
sequence could repaint the terminal; a lone surrogate from a JSON `\\ud800` escape cannot be
encoded at all. `one_line()` escapes all three. `display_text()` is its twin for text that
is meant to span lines (a licence): newlines and tabs stay, everything else that could steer
the terminal is escaped.
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


# Everything a terminal may act on, bar newline and tab: C0 (ESC included, so no CSI/OSC
# sequence survives), DEL, C1 (\x9b is a one-byte CSI), and the bidi controls that reorder
# what is shown (a right-to-left override makes text read differently than it is).
_UNSAFE_DISPLAY = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _escaped(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def display_text(text: str) -> str:
    """Multi-line untrusted `text` safe to show in a terminal: newline and tab kept (CRLF read
    as a newline), every other control character, escape sequence introducer and bidi
    control shown as `\\x1b`/`\\u202e`, lone surrogates as `\\ud800`."""
    text = text.replace("\r\n", "\n")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _UNSAFE_DISPLAY.sub(lambda m: _escaped(m.group(0)), text)


def wrap_hanging(line: str, width: int, hang: int = 0, *, split_long: bool = False) -> list[str]:
    """`line` broken at spaces to fit `width` columns; every continuation line starts at the
    line's own indent plus `hang` columns, so it reads as part of the line above (a terminal's
    own wrapping would start it at column 0). Words longer than the width are not split, so a
    path stays one piece to copy, unless `split_long` (a screen that clips at its edge): then
    they are, and no line is ever wider than `width`."""
    import textwrap

    indent = len(line) - len(line.lstrip(" "))
    if len(line) <= width:
        return [line]
    if split_long:
        indent = min(indent, max(0, width // 2 - hang))
        usable = max(width, 1)
    else:
        usable = max(width, indent + hang + 10)
    return textwrap.wrap(
        line.lstrip(" "),
        width=usable,
        initial_indent=" " * indent,
        subsequent_indent=" " * (indent + hang),
        break_long_words=split_long,
        break_on_hyphens=False,
    )


def wrap_block(text: str, width: int, *, split_long: bool = False) -> list[str]:
    """Every line of `text` wrapped to `width`; an indented line (an item of a list) wraps
    two columns further in than its own indent, so the item stays visibly one item.
    `split_long` as for `wrap_hanging`."""
    lines: list[str] = []
    for line in text.splitlines():
        indented = line.startswith(" ")
        hang = 2 if indented else 0
        if line.strip():
            lines += wrap_hanging(line, width, hang, split_long=split_long)
        else:
            lines.append(line[:width] if split_long else line)
    return lines


def parenthesis_depth(text: str) -> int:
    """How deeply parentheses nest in `text`: messages keep to 1, as `a (b (c))` is hard to
    read on one line."""
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth = max(0, depth - 1)
    return deepest
