"""The help: the keys (from :mod:`smtptop.keys`, as ``--help`` lists them), what the colours
mean, and the detection policy (from :mod:`smtptop.detect`, as the README lists it)."""

from __future__ import annotations

import textwrap
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from smtptop.detect import DetectConfig, colours_text, policy_text
from smtptop.keys import keys_text

WIDTH = 74  # inside the help box: 80 wide at most, less its border, padding and scrollbar
TRANSCRIPTS = (
    "In transcripts C: is the client, S: the server (2xx green, 4xx yellow, 5xx red), and "
    "-- a note from smtptop. The first time a host turns spambot the status bar says so "
    "(--bell rings, --alert-exec runs your command)."
)


def help_text(policy: DetectConfig) -> str:
    """The keys, the colours and the detection policy in force (with any --detect
    settings), as the README's tables say them."""
    signals = [f"{'signal':<18}{'points':<8}when"]
    for signal in policy.signals:
        points = "/".join(map(str, signal.points))
        when = textwrap.wrap(signal.describe(policy.window), WIDTH - 26)
        signals.append(f"{signal.name:<18}{points:<8}{when[0]}")
        signals += [" " * 26 + line for line in when[1:]]
    paragraphs = [colours_text(policy) + " " + TRANSCRIPTS, policy_text(policy)]
    return "\n\n".join(
        [keys_text(), *(textwrap.fill(p, WIDTH) for p in paragraphs), "\n".join(signals)]
    )


class HelpScreen(ModalScreen[None]):
    """The keys, the colours and the signals, over the screen it was opened from."""

    CSS_PATH = "help_screen.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, policy: DetectConfig) -> None:
        super().__init__()
        self.policy = policy

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text(help_text(self.policy)), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help", VerticalScroll).focus()
