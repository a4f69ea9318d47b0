"""The line-drawn table: what it draws, what it draws again, and how it is driven."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.app import App, ComposeResult

from smtptop.tui.tables import KeyedTable, _fit


class TableApp(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.selected: list[str] = []

    def compose(self) -> ComposeResult:
        yield KeyedTable(id="t")

    def on_keyed_table_row_selected(self, event: KeyedTable.RowSelected) -> None:
        self.selected.append(event.key)


def rows(count: int, tag: str = "") -> list[tuple[str, tuple[Text, ...]]]:
    return [
        (f"k{i}", (Text(f"host{i}{tag}"), Text(str(i), justify="right", style="bold red")))
        for i in range(count)
    ]


def line_text(table: KeyedTable, y: int) -> str:
    return "".join(segment.text for segment in table.render_line(y))


def test_cells_are_cut_with_an_ellipsis_or_padded_to_their_column() -> None:
    assert _fit("abcdef", 4, right=False) == "abc…"
    assert _fit("ab", 4, right=False) == "ab  " and _fit("ab", 4, right=True) == "  ab"
    cut = _fit("日本語テキスト", 6, right=False)  # wide characters take two cells each
    assert cut == "日本 …" and cell_len(cut) == 6  # a wide character is never split


async def test_rows_draw_their_cells_and_only_changed_rows_are_drawn_again() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.add_column("Host", width=10)
        table.add_column("N", width=4)
        table.show(rows(30))
        await pilot.pause()
        assert line_text(table, 0).split() == ["Host", "N"]
        assert line_text(table, 2).split() == ["host1", "1"]
        drawn: list[str] = []
        real = table._draw

        def counting(cells, base, over=None):
            drawn.append(cells[0].plain)
            return real(cells, base, over)

        table._draw = counting  # type: ignore[method-assign]
        changed = rows(30)
        changed[3] = ("k3", (Text("renamed"), Text("3", justify="right", style="bold red")))
        changed[4] = ("k4", (Text("host4"), Text("4", justify="right", style="green")))
        table.show(changed)
        for y in range(12):
            table.render_line(y)
        assert sorted(set(drawn) - {"host0"}) == ["host4", "renamed"]  # host0: the cursor row


async def test_keys_move_the_cursor_and_enter_or_a_click_selects() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.add_column("Host", width=10)
        table.add_column("N", width=4)
        table.show(rows(50))
        table.focus()
        await pilot.press("down", "down", "enter")
        assert table.cursor_key() == "k2" and app.selected == ["k2"]
        await pilot.press("end")
        assert table.cursor_key() == "k49" and table.scroll_offset.y > 0
        await pilot.press("home", "pagedown")
        assert table.cursor_row == table.size.height - 1
        await pilot.press("home")
        await pilot.click(KeyedTable, offset=(2, 4))  # the fourth row: k3
        assert table.cursor_key() == "k3" and app.selected == ["k2"]
        await pilot.click(KeyedTable, offset=(2, 4))
        assert app.selected == ["k2", "k3"]


async def test_the_cursor_stays_on_its_row_when_rows_reorder_or_go() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(KeyedTable)
        table.add_column("Host", width=10)
        table.show(rows(10))
        table.move_cursor(row=4)
        table.show(list(reversed(rows(10))))
        await pilot.pause()
        assert table.cursor_key() == "k4" and table.cursor_row == 5
        table.show(rows(3))  # k4 is gone: the cursor stays within the rows
        assert table.cursor_row <= 2 and table.keys == ["k0", "k1", "k2"]


def test_a_quiet_spambot_says_so_in_its_verdict_cell() -> None:
    from smtptop.detect import Rating, Verdict
    from smtptop.model import Host
    from smtptop.tui import rows

    host = Host("192.168.0.108", True, 1000.0, 1000.0)
    quiet = Verdict(host.ip, Rating.SPAMBOT, 90, (), "", 1000.0, 1000.0)
    busy = Verdict(host.ip, Rating.SPAMBOT, 90, (), "", 1000.0, None)
    cell = next(c for c in rows.HOST_COLUMNS if c.key == "verdict").value
    assert cell(rows.HostRow(host, quiet, "", now=1000.0 + 4320)) == "spambot 90 quiet 1h 12m"
    assert cell(rows.HostRow(host, busy, "", now=1000.0 + 4320)) == "spambot 90"
    line = rows.verdict_line(quiet, 1000.0 + 600).plain
    assert "quiet for 10m" in line
