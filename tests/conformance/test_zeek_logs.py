"""smtptop reading Zeek's logs agrees with smtptop reading the packets Zeek logged them from.

Each Zeek btest baseline in the corpus with an smtp.log was written by Zeek from a trace of the
corpus (its TEST.txt names it).  For every such pair, ``smtptop report --zeek`` on the baseline's
logs and ``smtptop report`` on the trace must find the same sessions with the same HELO name,
MAIL FROM and RCPT TO addresses, and each last reply Zeek logged must be a reply smtptop saw, in
the same order.  btest masks the timestamps of its baselines (``XXXXXXXXXX.XXXXXX``); they are
given one fixed time here, since no time is compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from . import expected

ROOT = expected.corpus_root()
BASELINES = ROOT / "baselines"
MASKED_TIME = "XXXXXXXXXX.XXXXXX"
SOME_TIME = "1254722767.000000"
# smtptop's sessions that Zeek writes no smtp.log row for: none of MAIL, RCPT or STARTTLS.
LOGGED_COMMANDS = ("mail_from", "rcpt_to")


def _pairs() -> list[Any]:
    if not BASELINES.is_dir():
        return [pytest.param("", marks=pytest.mark.skip(reason=f"no corpus at {ROOT}"))]
    found = []
    for folder in sorted(BASELINES.iterdir()):
        trace = expected.zeek_trace(folder)
        if (folder / "smtp.log").is_file() and trace and (ROOT / trace).is_file():
            found.append(pytest.param(folder.name, id=folder.name.rsplit(".", 1)[-1]))
    return found


def _unmasked_logs(folder: Path, into: Path) -> Path:
    """The baseline's whole logs (not zeek-cut's ``.cut`` extracts), timestamps given."""
    for name in ("smtp.log", "conn.log"):
        if (folder / name).is_file():
            text = (folder / name).read_text(encoding="utf-8")
            (into / name).write_text(text.replace(MASKED_TIME, SOME_TIME), encoding="utf-8")
    return into


def _last_line(reply: dict[str, Any]) -> tuple[int, str]:
    return int(reply["code"]), reply["text"].rsplit("\n", 1)[-1].rstrip()


@pytest.mark.parametrize("baseline", _pairs())
def test_zeek_logs_agree_with_the_trace(baseline: str, tmp_path: Path) -> None:
    from smtptop.analysis import analyze_zeek
    from smtptop.render import analyze_paths, to_json

    folder = BASELINES / baseline
    trace = ROOT / str(expected.zeek_trace(folder))
    logs = to_json(analyze_zeek([str(_unmasked_logs(folder, tmp_path))]))
    packets = analyze_paths([str(trace)])
    assert logs["warnings"] == []
    by_endpoints = {(s["client"], s["server"]): s for s in packets["sessions"]}
    logged = {key for key, s in by_endpoints.items() if any(s[f] for f in LOGGED_COMMANDS)}
    from_logs = {(s["client"], s["server"]): s for s in logs["sessions"]}
    if "disable-analyzer" not in baseline:  # Zeek stopped logging part-way on purpose
        assert set(from_logs) >= logged
    assert set(from_logs) <= set(by_endpoints)
    for key, ours in from_logs.items():
        seen = by_endpoints[key]
        assert ours["helo"] == seen["helo"], key
        senders = [address for address in seen["mail_from"] if address]  # Zeek logs no "<>"
        if "disable-analyzer" in baseline:
            assert ours["mail_from"] == senders[: len(ours["mail_from"])], key
            assert set(ours["rcpt_to"]) <= set(seen["rcpt_to"]), key
        else:
            assert ours["mail_from"] == senders, key
            assert set(ours["rcpt_to"]) == set(seen["rcpt_to"]), key
        replies = iter(map(_last_line, seen["replies"]))
        for reply in map(_last_line, ours["replies"]):
            assert any(reply == other for other in replies), (key, reply, seen["replies"])
