"""Start-up stays light: the command line and --help import neither textual nor scapy, and
``smtptop report`` on a file needs no textual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SAMPLE = str(Path(__file__).resolve().parent.parent / "smtptop" / "data" / "office.pcap")
HEAVY = ("textual", "scapy")


def imported_after(code: str) -> set[str]:
    """Top-level packages loaded by running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stdout.split())


def test_importing_the_command_line_loads_no_ui_and_no_scapy() -> None:
    loaded = imported_after("import smtptop.cli")
    assert "smtptop" in loaded
    assert not loaded & set(HEAVY)


def test_help_loads_no_ui_and_no_scapy() -> None:
    code = (
        "import contextlib, io\nfrom smtptop.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])"
    )
    assert not imported_after(code) & set(HEAVY)


def test_a_report_on_a_file_loads_no_ui() -> None:
    code = (
        "import contextlib, io\nfrom smtptop.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n    main(['report', {SAMPLE!r}])"
    )
    assert "textual" not in imported_after(code)
