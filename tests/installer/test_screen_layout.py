"""The drawn screen's layout at any terminal size: exactly the terminal's rows, none wider than
its columns, and every row of the body reachable by paging (nothing is cut)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from enginekit.terminal import TerminalSize
from installer.frontends.layout import body, compose

WORDS = st.text(alphabet="abcdefghij/-.", min_size=1, max_size=60)
TEXT = st.lists(st.lists(WORDS, min_size=0, max_size=12).map(" ".join), max_size=30).map("\n".join)


@given(
    text=TEXT,
    labels=st.lists(WORDS, min_size=1, max_size=12),
    columns=st.integers(min_value=10, max_value=120),
    rows=st.integers(min_value=4, max_value=40),
)
def test_paging_shows_every_row_and_nothing_spills(
    text: str, labels: list[str], columns: int, rows: int
) -> None:
    size = TerminalSize(columns, rows)
    page = body(text, columns, labels=labels, selected=0)
    heading = "Engine 5.0.0 installer \u2014 3/9 End-user licence agreement"
    keys = ["Enter: select", "Up/Down: move", "Esc: back", "Ctrl-C: quit"]
    shown: set[int] = set()
    top = 0
    while True:
        layout = compose(heading, page, top, keys, size)
        assert len(layout.rows) == rows
        assert all(len(row.text) <= columns for row in layout.rows)
        shown.update(range(layout.top, min(layout.top + layout.window, len(page.rows))))
        if layout.at_end:
            break
        top = layout.top + layout.window
    assert shown == set(range(len(page.rows)))
    assert all(len(row.text) <= columns for row in page.rows)
