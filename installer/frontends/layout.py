"""One installer screen laid out on a terminal of any size: a title bar, the body (the
screen's text, a notice, then its choices or the line being typed) in a window that pages,
and a footer with the keys.

Pure: `body()` and `compose()` turn what a screen shows and where the pager stands into the
exact rows to draw, each at most as wide as the terminal. Nothing is cut: every line wraps
(`enginekit.text`, long words split), and a body taller than the window is paged.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from enginekit.terminal import TerminalSize
from enginekit.text import wrap_block, wrap_hanging


class RowStyle(enum.StrEnum):
    BAR = "bar"  # the title bar and the footer
    TEXT = "text"
    SELECTED = "selected"  # the choice the pointer is on
    NOTICE = "notice"  # why the screen is shown again


@dataclass(frozen=True)
class Row:
    text: str
    style: RowStyle = RowStyle.TEXT


@dataclass(frozen=True)
class Body:
    """The paged part of a screen: its rows, and where each choice sits among them."""

    rows: tuple[Row, ...]
    spans: tuple[tuple[int, int], ...] = ()  # per choice: first row, row after its last
    entry_row: int | None = None  # the row being typed into (the cursor goes there)


def body(
    text: str,
    width: int,
    *,
    notice: str = "",
    labels: Sequence[str] = (),
    selected: int | None = None,
    entry: tuple[str, str] | None = None,
) -> Body:
    """The body of a screen `width` columns wide. `entry` is (prompt, what is shown of the
    typed text) while a field is being typed; the choices are not shown then."""
    rows = [Row(line) for line in wrap_block(text, width, split_long=True)] if text else []
    if notice:
        if rows:
            rows.append(Row(""))
        wrapped = wrap_hanging(f"! {notice}", width, 2, split_long=True)
        rows += [Row(line, RowStyle.NOTICE) for line in wrapped]
    spans: list[tuple[int, int]] = []
    entry_row: int | None = None
    if entry is not None:
        prompt, shown = entry
        if rows:
            rows.append(Row(""))
        rows += [Row(line) for line in wrap_hanging(prompt, width, 2, split_long=True)]
        typed = wrap_hanging(f"> {shown}", width, 2, split_long=True) if shown else ["> "]
        rows += [Row(line, RowStyle.SELECTED) for line in typed]
        entry_row = len(rows) - 1
    elif labels:
        if rows:
            rows.append(Row(""))
        for index, label in enumerate(labels):
            chosen = index == selected
            lines = wrap_hanging(f"  {label}", width, 2, split_long=True)
            if chosen:
                lines[0] = "> " + lines[0][2:]
            start = len(rows)
            style = RowStyle.SELECTED if chosen else RowStyle.TEXT
            rows += [Row(line, style) for line in lines]
            spans.append((start, len(rows)))
    return Body(tuple(rows), tuple(spans), entry_row)


@dataclass(frozen=True)
class Layout:
    rows: tuple[Row, ...]  # exactly the terminal's height
    top: int  # the first body row shown (the pager's position, clamped)
    window: int  # how many body rows are shown at once
    body_rows: int

    @property
    def at_end(self) -> bool:
        """The body's last row is on the screen."""
        return self.top + self.window >= self.body_rows


PAGE_KEYS = ("Space/PgDn PgUp/b: page",)


def _footer(keys: Sequence[str], width: int) -> list[str]:
    return wrap_hanging("  ".join(keys), width, 0, split_long=True)


def compose(heading: str, page: Body, top: int, keys: Sequence[str], size: TerminalSize) -> Layout:
    """The whole screen: title bar, as much of `page` as fits from row `top` on, the footer
    (`keys`, plus the paging keys and the position when the body does not fit at once)."""
    width, height = max(size.columns, 1), max(size.rows, 1)
    title = wrap_hanging(heading, width, 0, split_long=True) if heading else []
    plain = _footer(keys, width)
    total = len(page.rows)
    paged = total > height - len(title) - len(plain)
    if paged:
        digits = len(str(total))
        # The widest the position can get, so the footer keeps its height while paging.
        widest = f"lines {'9' * digits}-{'9' * digits}/{total}"
        footer = _footer([*PAGE_KEYS, *keys, widest], width)
    else:
        footer = plain
    # A terminal too small for bars and body gives the bars one row each.
    if len(title) + len(footer) >= height:
        title, footer = title[:1], footer[:1]
    window = max(1, height - len(title) - len(footer))
    top = max(0, min(top, total - window))
    if paged:
        last = min(total, top + window)
        position = f"lines {top + 1:>{digits}}-{last:>{digits}}/{total}"
        footer = _footer([*PAGE_KEYS, *keys, position], width)[: len(footer)]
    shown = list(page.rows[top : top + window])
    shown += [Row("")] * (window - len(shown))
    rows = [Row(line, RowStyle.BAR) for line in title]
    rows += shown
    rows += [Row(line, RowStyle.BAR) for line in footer]
    return Layout(tuple(rows[:height]), top, window, total)
