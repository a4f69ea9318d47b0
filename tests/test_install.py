"""The README's install commands, as a user copies them, on a stock Debian Python (PEP 668).

"Try it" is read out of README.md and run, as written, with Debian's /usr/bin/python3 first on
PATH, in an empty home and from a copy of the checkout, inside tmux so that the demo has a
terminal: it must install smtptop, show the monitor and quit on `q`.  It takes a minute or
less with a reachable package index; `--deselect tests/test_install.py` leaves it out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from test_tmux import SPAMBOT, TMUX, Terminal

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DEBIAN_PYTHON = Path("/usr/bin/python3")
INSTALL_SECONDS = 300.0  # pip fetches textual, scapy and netifaces-plus from the index
QUIT_SECONDS = 30.0
# How this machine reaches the package index; nothing else of the caller's environment.
NETWORK = re.compile(r"PIP_\w+|(?i:https?_proxy|no_proxy)|SSL_CERT_(?:FILE|DIR)")


def sh_block(section: str) -> str:
    """The first ```sh block under a README section, without the fences."""
    body = README.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"^```sh\n(.*?)^```$", body, re.MULTILINE | re.DOTALL)
    assert match, f"no sh block under '## {section}'"
    return match.group(1).strip()


def debian_venv_missing() -> str | None:
    """Why the install cannot run here, or None."""
    if TMUX is None:
        return "tmux is not installed (Debian package tmux; CI installs it)"
    if not DEBIAN_PYTHON.exists():
        return f"{DEBIAN_PYTHON} is absent (Debian package python3)"
    # Debian ships venv's ensurepip in python3-venv, not with python3 itself.
    probe = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import ensurepip, venv"], capture_output=True, timeout=60
    )
    if probe.returncode:
        return f"{DEBIAN_PYTHON} cannot make a venv (Debian package python3-venv; CI installs it)"
    return None


def wait(term: Terminal, what: str, check: Callable[[str], bool], seconds: float) -> str:
    """The pane's screen once ``check`` accepts it; fails with the scrollback otherwise."""
    deadline = time.monotonic() + seconds
    while True:
        dead = term.pane("pane_dead") == "1"
        screen = term.screen()
        if check(screen):
            return screen
        if dead or time.monotonic() > deadline:
            ended = "ended" if dead else f"still running after {seconds:g} s"
            pytest.fail(f"no {what}: the command {ended}:\n{term.screen(history=True)}")
        time.sleep(0.2)


def test_the_commands_are_single_lines() -> None:
    """One line to copy and paste, and CI runs the very test command the README gives."""
    assert "\n" not in sh_block("Try it")
    test_command = sh_block("Run the tests")
    assert "\n" not in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


MISSING = debian_venv_missing()


@pytest.mark.fresh_build
@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
def test_try_it_installs_and_runs_the_demo(tmp_path: Path) -> None:
    command = sh_block("Try it")
    checkout = tmp_path / "checkout"  # pip builds in the source folder: not in the real one
    build = ("build", "dist", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(".*", *build))
    home = tmp_path / "home"
    home.mkdir()
    status = tmp_path / "status"

    term = Terminal(f"smtptop-install-{uuid.uuid4().hex[:8]}", tmp_path / "tmux")
    network = {k: v for k, v in os.environ.items() if NETWORK.fullmatch(k)}
    term.env = {"PATH": f"{DEBIAN_PYTHON.parent}:/bin", "HOME": str(home), **network}
    # What a user pastes into a shell in the checkout; the exit status is written down.
    script = f'cd "$1" && {command}; echo $? > "$2"'
    try:
        term.start(["/bin/sh", "-c", script, "sh", str(checkout), str(status)], 160, 45)
        wait(
            term,
            "monitor with the spambot",
            lambda s: "file office.pcap" in s and SPAMBOT in s,
            INSTALL_SECONDS,
        )
        term.keys("q")
        deadline = time.monotonic() + QUIT_SECONDS
        while term.pane("pane_dead") != "1" or not status.exists():
            assert time.monotonic() < deadline, f"still running after q:\n{term.screen()}"
            time.sleep(0.1)
        exit_status = status.read_text().strip()
        assert exit_status == "0", f"exit status {exit_status}:\n{term.screen(history=True)}"
    finally:
        term.close()

    # Where "On the wire" tells sudo and setcap to look: a venv with its own interpreter,
    # which the command script runs and which smtptop's privileges hint names.
    venv = home / ".local" / "share" / "smtptop"
    python = venv / "bin" / "python3"
    assert python.is_file() and not python.is_symlink()
    script_path = venv / "bin" / "smtptop"
    assert script_path.read_text().splitlines()[0] == f"#!{python}"
    assert (home / ".local" / "bin" / "smtptop").resolve() == script_path
    hint = subprocess.run(
        [python, "-c", "from smtptop.live import privilege_hint; print(privilege_hint('lo'))"],
        capture_output=True, text=True, timeout=60, check=True, cwd="/",
    ).stdout  # fmt: skip
    assert hint.endswith(f"'sudo setcap cap_net_raw,cap_net_admin+eip {python}'\n"), hint
