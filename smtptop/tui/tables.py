"""A table that is told the rows it should show, and draws only the lines on screen.

Textual's DataTable renders every visible cell again after any change (its caches are keyed
by a counter that every update bumps): ~130 ms per redraw of a 120x40 terminal on a small
VM, far over what a key press may wait.  This table keeps each row as a ready-made strip of
segments, rebuilds only the rows whose cells changed, and draws the lines on screen from
those strips (Textual's line API).  Rows are identified by a stable key (a host address, a
session id), so the cursor stays on its row when rows come, go or re-sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

CELL_PADDING = 1


@dataclass(slots=True)
class Column:
    key: str
    label: Text
    width: int


class KeyedTable(ScrollView, can_focus=True):
    """Rows identified by a stable key, drawn line by line from cached strips."""

    DEFAULT_CSS = """
    KeyedTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        &:focus {
            background-tint: $foreground 5%;
            & > .keyed-table--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        & > .keyed-table--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .keyed-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {"keyed-table--header", "keyed-table--cursor"}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("left", "scroll_left", "Left", show=False),
        Binding("right", "scroll_right", "Right", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=True)

    class RowSelected(Message):
        """Enter (or a click on the cursor's row) on a row."""

        def __init__(self, table: KeyedTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> KeyedTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.columns: dict[str, Column] = {}
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._order: list[str] = []
        self._strips: dict[str, Strip] = {}  # each row drawn once, until its cells change
        self._header: Strip | None = None

    # -- what the table shows ------------------------------------------------------------

    def add_column(self, label: str, *, width: int, key: str | None = None) -> None:
        key = key or f"column-{len(self.columns)}"
        self.columns[key] = Column(key, Text(label), width)
        self._changed_layout()

    def set_label(self, key: str, label: str) -> None:
        self.columns[key].label = Text(label)
        self._header = None
        self.refresh()

    @property
    def keys(self) -> list[str]:
        """Row keys in the order shown."""
        return list(self._order)

    @property
    def row_count(self) -> int:
        return len(self._order)

    def cursor_key(self) -> str | None:
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    def show(self, rows: Sequence[tuple[str, tuple[Text, ...]]]) -> None:
        """Show exactly ``rows``, in that order; rows whose cells are unchanged are not
        drawn again, and the cursor stays on the row it was on."""
        focus = self.cursor_key()
        cells, strips = self._cells, self._strips
        fresh: dict[str, tuple[Text, ...]] = {}
        for key, row in rows:
            known = cells.get(key)
            if known is None or not _same(known, row):
                strips.pop(key, None)
            fresh[key] = row
        for key in cells.keys() - fresh.keys():
            strips.pop(key, None)
        self._cells = fresh
        order = [key for key, _ in rows]
        resized = len(order) != len(self._order)
        self._order = order
        if resized:
            self._changed_layout()
        if focus is not None and focus in fresh:
            self.move_cursor(row=order.index(focus), scroll=False)
        else:
            self.cursor_row = min(self.cursor_row, max(0, len(order) - 1))
        self.refresh()

    def move_cursor(self, *, row: int, scroll: bool = True) -> None:
        self.cursor_row = max(0, min(row, len(self._order) - 1))
        if scroll:
            self._scroll_to_cursor()

    # -- drawing -------------------------------------------------------------------------

    def _changed_layout(self) -> None:
        width = sum(column.width + 2 * CELL_PADDING for column in self.columns.values())
        self.virtual_size = Size(width, len(self._order) + 1)
        self._header = None
        self._strips.clear()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._header = None
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if y == 0:
            if self._header is None:
                style = self.rich_style + self.get_component_rich_style("keyed-table--header")
                labels = [column.label for column in self.columns.values()]
                self._header = self._draw(labels, style)
            return self._header.crop(scroll_x, scroll_x + width)
        index = scroll_y + y - 1
        if index >= len(self._order):
            return Strip.blank(width, self.rich_style)
        key = self._order[index]
        if index == self.cursor_row:
            cursor = self.get_component_rich_style("keyed-table--cursor")
            style = self.rich_style + cursor
            strip = self._draw(self._cells[key], style, Style(color=cursor.color))
            return strip.crop(scroll_x, scroll_x + width).extend_cell_length(width, style)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = self._draw(self._cells[key], self.rich_style)
        return strip.crop(scroll_x, scroll_x + width)

    def _draw(self, cells: Sequence[Text], base: Style, over: Style | None = None) -> Strip:
        """One row as segments: each cell cut or padded to its column, its own style over
        the row's (and ``over``, the cursor's colour, over that).  No layout engine: a row
        takes tens of microseconds."""
        segments: list[Segment] = []
        pad = Segment(" " * CELL_PADDING, base)
        for column, cell in zip(self.columns.values(), cells, strict=False):
            segments.append(pad)
            if cell.spans:  # several styles in one cell: let Rich cut it
                text = cell.copy()
                text.no_wrap = True
                if cell.justify == "right" and text.cell_len < column.width:
                    text.pad_left(column.width - text.cell_len)
                text.truncate(column.width, overflow="ellipsis", pad=True)
                segments.extend(
                    Segment(part.text, base + part.style + over if part.style else base)
                    for part in text.render(self.app.console)
                )
            else:
                style = _style(cell.style)
                shown = _fit(cell.plain, column.width, right=cell.justify == "right")
                segments.append(Segment(shown, base + style + over if style else base))
            segments.append(pad)
        return Strip(segments).simplify()

    # -- moving --------------------------------------------------------------------------

    def watch_cursor_row(self, old: int, new: int) -> None:
        self.refresh()

    def _scroll_to_cursor(self) -> None:
        rows_visible = max(1, self.size.height - 1)
        top = self.scroll_offset.y
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + rows_visible:
            self.scroll_to(y=self.cursor_row - rows_visible + 1, animate=False)

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self.cursor_row + 1)

    def action_page_up(self) -> None:
        self.move_cursor(row=self.cursor_row - max(1, self.size.height - 1))

    def action_page_down(self) -> None:
        self.move_cursor(row=self.cursor_row + max(1, self.size.height - 1))

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._order) - 1)

    def action_select_cursor(self) -> None:
        key = self.cursor_key()
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        row = self.scroll_offset.y + event.y - 1
        if row >= len(self._order):
            return
        if row == self.cursor_row:
            self.action_select_cursor()
        else:
            self.move_cursor(row=row)


def _same(old: tuple[Text, ...], new: tuple[Text, ...]) -> bool:
    """Cells that draw the same (Text's own == ignores the style of the whole text)."""
    return len(old) == len(new) and all(
        a.plain == b.plain and a.style == b.style and a.spans == b.spans and a.justify == b.justify
        for a, b in zip(old, new, strict=True)
    )


def _style(style: str | Style) -> Style | None:
    if isinstance(style, Style):
        return style
    return Style.parse(style) if style else None  # Rich caches parsed styles


def _fit(plain: str, width: int, *, right: bool) -> str:
    """``plain`` cut (with an ellipsis) or padded to exactly ``width`` cells."""
    size = len(plain) if plain.isascii() else cell_len(plain)
    if size > width:
        return set_cell_size(plain, width - 1) + "…"
    room = " " * (width - size)
    return room + plain if right else plain + room
