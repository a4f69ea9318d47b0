"""The ``--alert-exec`` command, run once per host that turns spambot: what it is given and
how it runs."""

from __future__ import annotations

import asyncio
import contextlib
import os

from smtptop.detect import Verdict

ALERT_SECONDS = 60  # a command still running after this is killed, and counts as failed


def alert_environment(verdict: Verdict) -> dict[str, str]:
    """What the alert command gets (the README lists it): a fixed PATH, the home of the
    user smtptop runs as (root has been given up), the locale and time zone, and the
    alert.  Nothing else of the environment smtptop was started with: it may hold
    secrets, and root's PATH or tmux socket have no business in an unprivileged command."""
    import pwd

    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:  # a uid without a passwd entry
        home = "/"
    environment = {"PATH": "/usr/bin:/bin", "HOME": home}
    environment |= {k: os.environ[k] for k in ("LANG", "LC_ALL", "TZ") if k in os.environ}
    return environment | {
        "SMTPTOP_IP": verdict.ip,
        "SMTPTOP_VERDICT": verdict.verdict,
        "SMTPTOP_SCORE": str(verdict.score),
    }


async def run_alert(command: str, document: str, environment: dict[str, str]) -> bool:
    """Run the command in a shell with ``document`` on its stdin (its output is not read);
    whether it exited 0 within ``ALERT_SECONDS``.  A subprocess of the event loop, not a
    thread: the UI never waits for it, nor does quitting (a command still running goes on)."""
    try:
        process = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, env=environment,
        )  # fmt: skip
    except OSError:  # no shell, no process slot
        return False
    try:
        await asyncio.wait_for(process.communicate(document.encode()), ALERT_SECONDS)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):  # it ended just now
            process.kill()
        await process.wait()
        return False
    return process.returncode == 0
