"""The monitor's keys, in one place: ``smtptop --help`` and the ``?`` screen both list them
from here, so the two never disagree (and ``--help`` needs no Textual to show them)."""

from __future__ import annotations

KEYS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Everywhere",
        (
            ("↑ ↓  j k", "move"),
            ("PgUp PgDn", "move a page"),
            ("Home End  g G", "first / last row"),
            ("← →  h l", "show the columns that do not fit"),
            ("Enter", "drill down: host → servers and sessions → transcript"),
            ("Esc", "back (and clears a filter)"),
            ("p", "pause the display (the capture goes on)"),
            ("?", "this help"),
            ("ctrl+p", "command palette: every action"),
            ("q  ctrl+c", "quit"),
        ),
    ),
    (
        "Host table and drill-down",
        (
            ("< >", "previous / next sort column (or click a header)"),
            ("r", "reverse the sort order"),
            ("/", "filter the rows by address or name"),
            ("e", "write the host's evidence bundle (a new folder here)"),
        ),
    ),
    (
        "Drill-down",
        (
            ("Tab", "switch between the servers and the sessions"),
            ("Enter on a server", "show only that server's sessions"),
            ("o", "sessions shown: all, rejected, tempfailed, accepted"),
            ("v", "the verdict's reasons: expand / fold"),
            ("c", "rules to contain it at the gateway; find the program"),
        ),
    ),
    (
        "Transcript",
        (
            ("/", "search"),
            ("n N", "next / previous match"),
        ),
    ),
)


def keys_text(indent: str = "  ") -> str:
    """The key table as plain text, one section after the other."""
    width = max(len(keys) for _, entries in KEYS for keys, _ in entries)
    parts = []
    for section, entries in KEYS:
        lines = [f"{section}:"]
        lines += [f"{indent}{keys:<{width}}  {does}" for keys, does in entries]
        parts.append("\n".join(lines))
    return "\n".join(parts)
