"""What to do about one host, as the drill-down's ``c`` opens it: the rules that contain it
at the gateway, in every syntax smtptop writes, and the commands that find the program on
the PC (the same text as the evidence bundle's ``containment/`` and ``find-process.txt``)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static


class RulesScreen(Screen[None]):
    """The rules and commands for one host, to select and copy; Esc goes back."""

    CSS_PATH = "common.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def __init__(self, ip: str, text: str) -> None:
        super().__init__()
        self.ip = ip
        self.text = text

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield RichLog(id="rules", wrap=False, markup=False, highlight=False, auto_scroll=False)
        yield Footer()

    def on_mount(self) -> None:
        title = Text.assemble(
            (f"Contain {self.ip}", "bold"),
            "  rules for the gateway (nftables, iptables, MikroTik RouterOS), then how to find"
            " the program on the PC",
        )
        self.query_one("#title", Static).update(title)
        log = self.query_one("#rules", RichLog)
        for line in self.text.splitlines():
            log.write(Text(line))
        log.focus()

    def action_back(self) -> None:
        self.app.pop_screen()
