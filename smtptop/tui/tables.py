"""A table that is told the rows it should show, and draws only the lines on screen.

Textual's DataTable renders every visible cell again after any change (its caches are keyed
by a counter that every update bumps): ~130 ms per redraw of a 120x40 terminal on a small
VM, far over what a key press may wait.  This table keeps each row as a ready-made strip of
segments, rebuilds only the rows whose cells changed, and draws the lines on screen from
those strips (Textual's line API).  Rows are identified by a stable key (a host address, a
session id), so the cursor stays on its row when rows come, go or re-sort.

Columns fit the width the table has, as in htop: a number or an address is always drawn
whole, and a column that does not fit is hidden whole (the header says how many are, and
the left and right keys bring them in); free width goes to the text columns that can use
it (names, HELO, outcomes), and only those are ever cut, with an ellipsis.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
SQUEEZE = 12  # a column that may be cut is shown down to this width rather than hidden
ARROW_ROOM = 1  # a sort arrow after a label never widens its column


@dataclass(slots=True)
class ColumnLayout:
    """A column as the table lays it out: how it gives way when the width is short, and
    the widths it has measured and is drawn at.

    ``width`` is the narrowest a column that may be ``cut`` is drawn; a column that may not
    be cut (numbers, addresses) is always as wide as its widest cell.  Columns with the
    lowest ``priority`` are shown first; ``pinned`` ones stay when the others scroll
    sideways; ``grow`` is a column's share of the free width.
    """

    key: str
    label: Text
    width: int
    priority: int = 0
    cut: bool = False
    grow: int = 0
    pinned: bool = False
    widest: int = 0  # the widest cell held (label included)
    drawn: int = 0  # the width it is drawn at now; 0 when hidden

    def least(self) -> int:
        """The narrowest it may be drawn, padding included."""
        inner = self.width if self.cut else max(self.width, self.widest)
        return inner + 2 * CELL_PADDING


class TableMessage(Message):
    """Something done to a row or a column of a table, named by its key."""

    def __init__(self, table: KeyedTable, key: str) -> None:
        super().__init__()
        self.table = table
        self.key = key

    @property
    def control(self) -> KeyedTable:
        return self.table


class KeyedTable(ScrollView, can_focus=True):
    """Rows identified by a stable key, drawn line by line from cached strips."""

    DEFAULT_CSS = """
    KeyedTable {
        background: $surface;
        color: $foreground;
        width: 1fr;
        height: auto;
        max-height: 100%;
        overflow-x: hidden;
        scrollbar-size-vertical: 1;
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
        & > .keyed-table--more {
            text-style: bold;
            background: $panel;
            color: $accent;
        }
        & > .keyed-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
    }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "keyed-table--header",
        "keyed-table--more",
        "keyed-table--cursor",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Select", show=False),
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first", "First", show=False),
        Binding("end,G", "last", "Last", show=False),
        Binding("left,h", "columns_left", "Columns left", show=False),
        Binding("right,l", "columns_right", "Columns right", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=True)

    class RowSelected(TableMessage):
        """Enter (or a click on the cursor's row) on a row; ``key`` is the row's."""

    class HeaderSelected(TableMessage):
        """A click on a column's label; ``key`` is the column's."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.columns: dict[str, ColumnLayout] = {}
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._order: list[str] = []
        self._strips: dict[str, Strip] = {}  # each row drawn once, until its cells change
        self._header: Strip | None = None
        self._shown: list[tuple[int, ColumnLayout]] = []  # (cell index, column) drawn, in order
        self._laid_out_for = -1  # the width the layout was made for
        self._first = 0  # 0: columns by priority; n: in order from the n-th unpinned one
        self._steps: list[int] = []  # where each sideways step started, to step back
        self._mark = ""  # the hidden-columns mark the header was drawn with
        self.hidden = 0  # columns that do not fit
        self.empty = Text()  # shown in place of rows while there are none
        self._empty_wrapped: tuple[str, int, list[Text]] = ("", 0, [])  # for a text and width
        self.follow_top = True  # the cursor stays on the top row until the user moves it

    # -- what the table shows ------------------------------------------------------------

    def add_column(
        self,
        label: str,
        *,
        width: int,
        key: str | None = None,
        priority: int | None = None,
        cut: bool = False,
        grow: int = 0,
        pinned: bool = False,
    ) -> None:
        key = key or f"column-{len(self.columns)}"
        rank = len(self.columns) if priority is None else priority
        column = ColumnLayout(key, Text(label), width, rank, cut, grow, pinned)
        column.widest = cell_len(label) + ARROW_ROOM
        self.columns[key] = column
        self._relayout()

    def set_label(self, key: str, label: str) -> None:
        self.columns[key].label = Text(label)
        self._header = None
        self.refresh()

    def set_empty(self, text: Text) -> None:
        """What the table says while it has no rows (waiting, or nothing matches)."""
        if text.plain != self.empty.plain:
            self.empty = text
            self._relayout()  # as many lines as it takes, wrapped
            self.refresh()

    def _empty_lines(self, width: int) -> list[Text]:
        """The empty table's message wrapped to ``width`` (none while there are rows): its end,
        such as the option a hint names, stays on the screen."""
        if self._order or not self.empty.plain:
            return []
        plain, wrapped_for, lines = self._empty_wrapped
        if (plain, wrapped_for) != (self.empty.plain, width):
            if width > 2:
                lines = list(self.empty.wrap(self.app.console, width - 2))
            else:
                lines = [self.empty]
            self._empty_wrapped = (self.empty.plain, width, lines)
        return lines

    @property
    def keys(self) -> list[str]:
        """Row keys in the order shown."""
        return list(self._order)

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def shown_columns(self) -> list[str]:
        """Keys of the columns drawn now, left to right."""
        return [column.key for _, column in self._shown]

    def cursor_key(self) -> str | None:
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    def show(self, rows: Sequence[tuple[str, tuple[Text, ...]]]) -> None:
        """Show exactly ``rows``, in that order; rows whose cells are unchanged are not
        drawn again, and the cursor stays on the row it was on (or on the top row, until
        the user moves it)."""
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
        if self._measure(fresh.values()) or resized:
            self._relayout()
        if self.follow_top:
            self.cursor_row = 0
        elif focus is not None and focus in fresh:
            self._place(order.index(focus), scroll=False)
        else:
            self.cursor_row = min(self.cursor_row, max(0, len(order) - 1))
        self.refresh()

    def move_cursor(self, *, row: int, scroll: bool = True) -> None:
        """Put the cursor on ``row``; from now on it follows that row's key."""
        self.follow_top = False
        self._place(row, scroll=scroll)

    def _place(self, row: int, *, scroll: bool) -> None:
        self.cursor_row = max(0, min(row, len(self._order) - 1))
        if scroll:
            self._scroll_to_cursor()

    # -- layout --------------------------------------------------------------------------

    def _measure(self, rows: Iterable[tuple[Text, ...]]) -> bool:
        """Note each column's widest cell; True when one changed."""
        columns = list(self.columns.values())
        widest = [cell_len(c.label.plain) + ARROW_ROOM for c in columns]
        for row in rows:
            for index, cell in enumerate(row[: len(columns)]):
                plain = cell.plain
                size = len(plain) if plain.isascii() else cell_len(plain)
                if size > widest[index]:
                    widest[index] = size
        changed = False
        for column, size in zip(columns, widest, strict=True):
            if column.widest != size:
                column.widest = size
                changed = True
        return changed

    def _relayout(self) -> None:
        """Choose the columns that fit whole and their widths; redraw if that changed."""
        width = self.scrollable_content_region.width or self.size.width
        before = [(index, column.key, column.drawn) for index, column in self._shown]
        resized, self._laid_out_for = width != self._laid_out_for, width
        shown = self._fit(width)
        after = [(index, column.key, column.drawn) for index, column in shown]
        self._shown = shown
        used = sum(column.drawn + 2 * CELL_PADDING for _, column in shown)
        # lines below the header even with no rows: where the table says why it is empty
        lines = max(len(self._order), len(self._empty_lines(width)), 1) + 1
        self.virtual_size = Size(min(used, width) if width else used, lines)
        mark = self._more_label(self.hidden) if self.hidden else ""
        if before != after or mark != self._mark or resized:
            self._mark = mark
            self._header = None  # its mark depends on the width and the sideways position too
            self._strips.clear()
            self.refresh()

    def _fit(self, width: int) -> list[tuple[int, ColumnLayout]]:
        indexed = list(enumerate(self.columns.values()))
        for _, column in indexed:
            column.drawn = 0
        if sum(column.least() for _, column in indexed) <= width:
            self._first = 0  # everything fits: nothing to scroll to
            self._steps.clear()
        chosen = self._choose(indexed, width)
        self.hidden = len(indexed) - len(chosen)
        if self.hidden:
            chosen = self._choose(indexed, width - _more_room(len(indexed), bool(self._first)))
            self.hidden = len(indexed) - len(chosen)
        shown = [(index, column) for index, column, _ in chosen]
        free = width - sum(inner + 2 * CELL_PADDING for _, _, inner in chosen)
        if self.hidden:
            free -= len(self._more_label(self.hidden, shown)) + 1
        for _, column, inner in chosen:
            column.drawn = inner
        growing = [c for _, c in shown if c.grow and c.cut and c.widest > c.drawn]
        while free > 0 and growing:
            shares = sum(c.grow for c in growing)
            handed = 0
            for column in growing:
                extra = min(max(1, free * column.grow // shares), column.widest - column.drawn)
                extra = min(extra, free - handed)
                column.drawn += extra
                handed += extra
            free -= handed
            growing = [c for c in growing if c.widest > c.drawn]
            if not handed:
                break
        return sorted(shown, key=lambda item: item[0])

    def _choose(
        self, indexed: list[tuple[int, ColumnLayout]], width: int
    ) -> list[tuple[int, ColumnLayout, int]]:
        """The columns that fit, each with its width: by priority (or, scrolled sideways,
        the pinned ones and then the others in order from the first one shown).  A column
        that may be cut is squeezed below its width rather than left out, down to
        ``SQUEEZE`` cells."""
        pinned = [item for item in indexed if item[1].pinned]
        if self._first:
            rest = [item for item in indexed if not item[1].pinned][self._first - 1 :]
            candidates, stop_at_first_misfit = pinned + rest, True
        else:
            candidates = sorted(indexed, key=lambda item: item[1].priority)
            stop_at_first_misfit = False
        chosen: list[tuple[int, ColumnLayout, int]] = []
        used = 0
        for index, column in candidates:
            inner = column.least() - 2 * CELL_PADDING
            room = width - used - 2 * CELL_PADDING
            if inner > room and column.cut and room >= min(SQUEEZE, inner):
                inner = room
            if inner > room and (chosen or not column.pinned):
                if stop_at_first_misfit and not column.pinned:
                    break
                continue
            chosen.append((index, column, inner))
            used += inner + 2 * CELL_PADDING
        return chosen

    def _more_label(self, hidden: int, shown: list[tuple[int, ColumnLayout]] | None = None) -> str:
        left = "← " if self._first else ""
        right = " →" if self._can_scroll_right(shown) or not self._first else ""
        return f"{left}+{hidden} col{'s' if hidden != 1 else ''}{right}"

    def _can_scroll_right(self, shown: list[tuple[int, ColumnLayout]] | None = None) -> bool:
        unpinned = [c for c in self.columns.values() if not c.pinned]
        keys = {column.key for _, column in (self._shown if shown is None else shown)}
        return bool(unpinned) and unpinned[-1].key not in keys

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._header = None
        self._strips.clear()

    # -- drawing -------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width or self.size.width
        if width != self._laid_out_for:
            self._relayout()
        scroll_y = self.scroll_offset.y
        if y == 0:
            if self._header is None:
                self._header = self._draw_header(width)
            return self._header
        index = scroll_y + y - 1
        if index >= len(self._order):
            empty = self._empty_lines(width)
            if 0 < y <= len(empty):
                text = empty[y - 1].copy()
                text.truncate(max(0, width - 2), overflow="ellipsis")
                segments = [Segment(" ", self.rich_style)]
                segments += [
                    Segment(s.text, self.rich_style + s.style if s.style else self.rich_style)
                    for s in text.render(self.app.console)
                ]
                return Strip(segments).extend_cell_length(width, self.rich_style)
            return Strip.blank(width, self.rich_style)
        key = self._order[index]
        if index == self.cursor_row:
            cursor = self.get_component_rich_style("keyed-table--cursor")
            style = self.rich_style + cursor
            line = self._draw(self._cells[key], style, Style(color=cursor.color))
            return line.extend_cell_length(width, style).crop(0, width)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = self._draw(self._cells[key], self.rich_style)
        return strip.crop(0, width)

    def _draw_header(self, width: int) -> Strip:
        style = self.rich_style + self.get_component_rich_style("keyed-table--header")
        labels: list[Text] = [column.label for column in self.columns.values()]
        strip = self._draw(labels, style).extend_cell_length(width, style).crop(0, width)
        if not self.hidden:
            return strip
        mark = self._more_label(self.hidden)
        more = self.rich_style + self.get_component_rich_style("keyed-table--more")
        start = max(0, width - len(mark) - 1)
        left = strip.crop(0, start)
        return Strip([*left, Segment(mark + " ", more)]).crop(0, width)

    def _draw(self, cells: Sequence[Text], base: Style, over: Style | None = None) -> Strip:
        """One row as segments: each shown cell cut or padded to its column, its own style
        over the row's (and ``over``, the cursor's colour, over that).  No layout engine: a
        row takes tens of microseconds."""
        segments: list[Segment] = []
        pad = Segment(" " * CELL_PADDING, base)
        for index, column in self._shown:
            if index >= len(cells):
                continue
            cell, width = cells[index], column.drawn
            segments.append(pad)
            if cell.spans:  # several styles in one cell: let Rich cut it
                text = cell.copy()
                text.no_wrap = True
                if cell.justify == "right" and text.cell_len < width:
                    text.pad_left(width - text.cell_len)
                text.truncate(width, overflow="ellipsis", pad=True)
                segments.extend(
                    Segment(part.text, base + part.style + over if part.style else base)
                    for part in text.render(self.app.console)
                )
            else:
                style = _style(cell.style)
                shown = _fit(cell.plain, width, right=cell.justify == "right")
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
        """To the top row, which the cursor then keeps to, as it did at the start."""
        self._place(0, scroll=True)
        self.follow_top = True

    def action_last(self) -> None:
        self.move_cursor(row=len(self._order) - 1)

    def action_columns_right(self) -> None:
        """One step sideways: on until a column comes in that was not shown."""
        shown, start = self.shown_columns, self._first
        for _ in range(len(self.columns)):
            if not (self._can_scroll_right() or (not self._first and self.hidden)):
                break
            self._first += 1
            self._relayout()
            if not set(self.shown_columns) <= set(shown):
                self._steps.append(start)
                return
        self._first = start  # nothing new to the right
        self._relayout()

    def action_columns_left(self) -> None:
        """Back to where the step before this one started."""
        if self._first:
            self._first = self._steps.pop() if self._steps else self._first - 1
            self._relayout()

    def action_select_cursor(self) -> None:
        key = self.cursor_key()
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            key = self.column_at(event.x)
            if key is not None:
                self.post_message(self.HeaderSelected(self, key))
            return
        row = self.scroll_offset.y + event.y - 1
        if row >= len(self._order):
            return
        if row == self.cursor_row:
            self.action_select_cursor()
        else:
            self.move_cursor(row=row)

    def column_at(self, x: int) -> str | None:
        """The key of the column drawn at ``x`` (None past the last one)."""
        left = 0
        for _, column in self._shown:
            right = left + column.drawn + 2 * CELL_PADDING
            if left <= x < right:
                return column.key
            left = right
        return None


def _more_room(hidden: int, scrolled: bool) -> int:
    """The header's room for the hidden-columns mark, arrows and a space included."""
    return len(f"{'← ' if scrolled else ''}+{hidden} cols →") + 1


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
        return set_cell_size(plain, width - 1) + "…" if width > 0 else ""
    room = " " * (width - size)
    return room + plain if right else plain + room
