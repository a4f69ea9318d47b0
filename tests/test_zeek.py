"""Zeek's logs as a source: the formats Zeek writes, the join of conn.log and smtp.log, what a
log cannot say, hostile lines, following a folder through rotation, and the monitor on it."""

from __future__ import annotations

import gzip
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
import zeeklogs
from helpers import smtptop
from zeeklogs import PC, SPAMBOT

from smtptop import zeek, zeekfiles
from smtptop.analysis import analyze_zeek
from smtptop.decode import DEFAULT_PORTS
from smtptop.render import to_json
from smtptop.source import ZeekSource
from smtptop.tui.app import MonitorApp
from smtptop.tui.host_screen import HostScreen
from smtptop.tui.state import LOGS_TRANSCRIPT
from smtptop.tui.transcript_screen import TranscriptScreen
from smtptop.wire import CLOSED, COMMAND, OPENED, REPLY
from smtptop.zeekfiles import LogFollower

PORTS = frozenset(DEFAULT_PORTS)


def write_office(folder: Path, form: str = "tsv", logs: dict[str, list[Any]] | None = None) -> Path:
    """The office's logs in one of the forms Zeek writes: TSV, JSON lines, either gzipped."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, rows in (logs or zeeklogs.office()).items():
        text = (
            zeeklogs.json_lines(kind, rows) if form.startswith("json") else zeeklogs.tsv(kind, rows)
        )
        if form.endswith(".gz"):
            (folder / f"{kind}.log.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (folder / f"{kind}.log").write_text(text, encoding="utf-8")
    return folder


def report(*paths: Path) -> dict[str, Any]:
    return to_json(analyze_zeek([str(p) for p in paths]))


def hosts(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {host["ip"]: host for host in result["hosts"]}


def test_the_office_logs_show_the_spambot(tmp_path: Path) -> None:
    result = report(write_office(tmp_path))
    found = hosts(result)
    spambot, pc = found[SPAMBOT], found[PC]
    assert (spambot["sessions"], spambot["destinations"], spambot["rejected_sessions"]) == (
        12,
        12,
        8,
    )
    assert spambot["verdict"] == "spambot"
    signals = {reason["signal"] for reason in spambot["reasons"]}
    assert {"blocklist", "rejections", "dns-mx"} <= signals
    assert not signals & {"no-quit", "pregreet", "dialect"}  # what logs cannot say
    assert "RECEPTION-PC" in spambot["names"].values()
    assert spambot["mac"] == "00:11:22:33:44:55"
    assert (pc["sessions"], pc["accepted_messages"], pc["rejected_sessions"]) == (3, 3, 0)
    assert pc["verdict"] == "normal"
    assert result["stats"]["log_records"] == sum(map(len, zeeklogs.office().values()))
    assert result["warnings"] == []


def test_a_session_takes_its_times_bytes_and_end_from_conn_log(tmp_path: Path) -> None:
    result = report(write_office(tmp_path))
    sessions = {s["client"]: s for s in result["sessions"]}
    refused = sessions[f"{SPAMBOT}:40000"]
    assert refused["start"] == zeeklogs.START
    assert refused["end"] == zeeklogs.START + 2.5
    assert refused["bytes"] == {"client": 120, "server": 300}
    assert refused["outcome"] == "rejected"
    assert "zen.spamhaus.org" in refused["outcome_reply"]["text"]
    unanswered = sessions[f"{SPAMBOT}:40011"]
    assert unanswered["replies"] == [] and unanswered["helo"] == ""
    notes = [line["text"] for line in unanswered["transcript"] if line["kind"] == "*"]
    assert notes == [f"connection ended: {zeek.CONN_STATES['S0']}"]


@pytest.mark.parametrize("form", ["json", "tsv.gz", "json.gz"])
def test_every_form_zeek_writes_reads_the_same(tmp_path: Path, form: str) -> None:
    assert report(write_office(tmp_path / form, form)) == report(write_office(tmp_path / "tsv"))


def test_json_with_nested_ids_and_iso_times_reads_the_same(tmp_path: Path) -> None:
    """LogAscii::json_timestamps=JSON::TS_ISO8601, and id as an object (not flattened)."""
    folder = tmp_path / "iso"
    folder.mkdir()
    for kind, rows in zeeklogs.office().items():
        lines = []
        for line in zeeklogs.json_lines(kind, rows).splitlines():
            record = json.loads(line)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record["ts"]))
            record["ts"] = f"{stamp}.{round(record['ts'] % 1 * 1e6):06d}Z"
            ids = {k.split(".")[1]: record.pop(k) for k in list(record) if k.startswith("id.")}
            if ids:
                record["id"] = ids
            lines.append(json.dumps(record))
        (folder / f"{kind}.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert report(folder) == report(write_office(tmp_path / "tsv"))


def test_rotated_pieces_and_folders_read_as_one(tmp_path: Path) -> None:
    """zeekctl's archive: a folder per day, a gzipped piece per hour, named by its hours."""
    logs = zeeklogs.office()
    day = tmp_path / "2025-12-05"
    day.mkdir()
    for kind, rows in logs.items():
        half = len(rows) // 2
        for name, part in (("10:00:00-10:30:00", rows[:half]), ("10:30:00-11:00:00", rows[half:])):
            text = zeeklogs.tsv(kind, part).encode()
            (day / f"{kind}.{name}.log.gz").write_bytes(gzip.compress(text))
    (day / "weird.10:00:00-11:00:00.log.gz").write_bytes(gzip.compress(b"#path\tweird\n"))
    assert report(day) == report(write_office(tmp_path / "whole"))


def test_a_transaction_without_conn_row_ends_with_the_logs(tmp_path: Path) -> None:
    logs = zeeklogs.office()
    logs["conn"] = []
    result = report(write_office(tmp_path, logs=logs))
    assert hosts(result)[SPAMBOT]["sessions"] == 8  # the unanswered ones are in conn.log only
    ends = {
        line["text"] for s in result["sessions"] for line in s["transcript"] if line["kind"] == "*"
    }
    assert ends == {"the logs end before this connection's conn.log row"}


def test_the_last_reply_is_judged_as_the_answer_to_what_the_row_carries(tmp_path: Path) -> None:
    base = {"id.orig_h": PC, "id.orig_p": 1, "id.resp_h": "203.0.113.9", "id.resp_p": 25}
    sent = {"helo": "pc", "mailfrom": "a@x", "rcptto": ["b@y"]}
    rows = [
        {"uid": "Cquit", **sent, "last_reply": "221 bye"},
        {"uid": "Cmail", **sent, "rcptto": [], "last_reply": "550 5.7.1 sender refused"},
        {"uid": "Cdata", **sent, "subject": "hi", "last_reply": "554 5.7.1 refused as spam"},
        {"uid": "Cwait", **sent, "last_reply": "354 go on"},
        {"uid": "Cgrey", **sent, "last_reply": "450 4.7.1 greylisted"},
    ]
    logs: dict[str, list[Any]] = {
        "smtp": [
            {"ts": zeeklogs.START + i, **base, "id.orig_p": i + 1, "trans_depth": 1, **row}
            for i, row in enumerate(rows)
        ]
    }
    model = analyze_zeek([str(write_office(tmp_path, logs=logs))]).model
    judged = {
        s.client_port: (
            s.replies[0].stage,
            "rejected" if s.rejected else "tempfailed" if s.tempfailed else "",
        )
        for s in model.sessions()
    }
    assert judged == {
        1: ("QUIT", ""),
        2: ("MAIL", "rejected"),
        3: ("end of data", "rejected"),
        4: ("DATA", ""),
        5: ("RCPT", "tempfailed"),
    }


HOSTILE_LINES = [
    b"not\tenough\tfields\n",
    b"{not json\n",
    b"[1, 2]\n",
    b"XXXXXXXXXX.XXXXXX\tCbad\t192.168.1.9\t1\t203.0.113.1\t25\t" + b"\t".join([b"-"] * 15) + b"\n",
    b"1.0\tCaddr\tnot-an-address\t1\t203.0.113.1\t25\t" + b"\t".join([b"-"] * 15) + b"\n",
    b"1.0\t-\t192.168.1.9\t1\t203.0.113.1\t25\t" + b"\t".join([b"-"] * 15) + b"\n",
    b"1.0\tCport\t192.168.1.9\t99999\t203.0.113.1\t25\t" + b"\t".join([b"-"] * 15) + b"\n",
    b"1e300\tCtime\t192.168.1.9\t1\t203.0.113.1\t25\t" + b"\t".join([b"-"] * 15) + b"\n",
    b"nan\tCnan\t192.168.1.9\t1\t203.0.113.1\t25\t" + b"\t".join([b"-"] * 15) + b"\n",
]


def test_hostile_lines_are_counted_with_their_first_example(tmp_path: Path) -> None:
    folder = write_office(tmp_path / "logs")
    clean = report(folder)
    conn = folder / "conn.log"
    head, _, rest = conn.read_bytes().partition(b"\n#close")
    conn.write_bytes(head + b"\n" + b"".join(HOSTILE_LINES) + b"#close" + rest)
    (folder / "dns.log").write_bytes(
        b"orphan line before any header\n" + (folder / "dns.log").read_bytes()
    )
    result = report(folder)
    assert result["hosts"] == clean["hosts"]
    skipped = result["stats"]["skipped"]
    assert skipped == {
        "malformed line": 3,
        "conn.log record: bad value of ts": 3,
        "conn.log record: bad value of id.orig_h": 1,
        "conn.log record: missing field uid": 1,
        "conn.log record: bad value of id.orig_p": 1,
        "line before a #fields header": 1,
    }
    joined = "\n".join(result["warnings"])
    assert (
        "3 skipped: malformed line (first: " in joined
        and "(3 fields where #fields names 21)" in joined
    )
    assert "'orphan line before any header'" in joined


def test_a_line_over_the_limit_is_skipped_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(zeek, "MAX_LINE", 4096)
    parser = zeek.LogParser("smtp.log")
    header = zeeklogs.tsv("smtp", []).rsplit("#close", 1)[0].encode()
    good = zeeklogs.tsv("smtp", zeeklogs.office()["smtp"][:1]).splitlines()[8].encode() + b"\n"
    records = parser.feed(header + b"x" * 3000)
    records += parser.feed(b"y" * 3000)  # over the limit before its end has come
    records += parser.feed(b"z" * 3000 + b"\n" + good)
    records += parser.feed(b"w" * 5000 + b"\n" + good)  # over the limit, and whole at once
    assert [record["uid"] for record in records] == ["Cspam00", "Cspam00"]
    assert parser.problems.counts == {"line over the length limit": 2}
    assert "(over 4,096 bytes)" in parser.problems.lines()[0]


def test_wire_text_from_logs_is_shown_inert(tmp_path: Path) -> None:
    logs = zeeklogs.office()
    logs["smtp"][0]["helo"] = "evil\x1b]0;owned\x07[red]x[/red]"
    result = report(write_office(tmp_path, logs=logs))
    helo = next(s["helo"] for s in result["sessions"] if s["client"] == f"{SPAMBOT}:40000")
    assert helo == "evil\\x1b]0;owned\\x07[red]x[/red]"


def test_report_command_reads_logs_and_says_what_it_skipped(tmp_path: Path) -> None:
    folder = write_office(tmp_path / "logs")
    done = smtptop("report", "--zeek", str(folder))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith(f"{SPAMBOT} ")
    assert "Zeek log records, 15 SMTP sessions (from logs: no transcripts" in done.stdout
    with (folder / "smtp.log").open("ab") as log:
        log.write(b"{broken\n")
    done = smtptop("report", "--zeek", str(folder / "smtp.log"), str(folder / "conn.log"), "--json")
    assert done.returncode == 1
    assert "smtptop: warning: 1 skipped: malformed line" in done.stderr
    assert json.loads(done.stdout)["stats"]["sessions"] == 15


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (lambda p: p, "no conn.log or smtp.log in this folder"),
        (lambda p: p / "missing.log", "no such file or folder"),
        (
            lambda p: (p / "http.log").write_text("#path\thttp\n") and p / "http.log",
            "Zeek's http.log",
        ),
        (lambda p: (p / "notes.txt").write_text("hello\n") and p / "notes.txt", "not a Zeek log"),
    ],
)
def test_logs_that_cannot_be_read_are_one_line(tmp_path: Path, make: Any, said: str) -> None:
    done = smtptop("report", "--zeek", str(make(tmp_path)))
    assert done.returncode == 1
    assert said in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr


def _line(kind: str, row: dict[str, Any]) -> str:
    return zeeklogs.tsv(kind, [row]).splitlines()[8] + "\n"


def _sessions(rows: list[Any]) -> dict[int, list[int]]:
    """Each session's event tags, in order."""
    found: dict[int, list[int]] = {}
    for session, tag, _ in rows:
        found.setdefault(session, []).append(tag)
    return found


def test_the_follower_reads_what_is_appended_and_survives_rotation(tmp_path: Path) -> None:
    office = zeeklogs.office()
    answered = [row for row in office["conn"] if row["conn_state"] == "SF"]
    transactions = {row["uid"]: row for row in office["smtp"]}
    follower = LogFollower(str(tmp_path), PORTS)
    assert follower.poll() == []
    conn, smtp = tmp_path / "conn.log", tmp_path / "smtp.log"
    conn.write_text(zeeklogs.tsv("conn", []).split("#close")[0])
    first = _line("smtp", transactions[answered[0]["uid"]])
    smtp.write_text(zeeklogs.tsv("smtp", []).split("#close")[0] + first[:40])
    assert follower.poll() == []  # half a line waits for the rest
    with smtp.open("a") as log:
        log.write(first[40:])
    assert follower.poll() == []  # the transaction waits for its connection's end
    with conn.open("a") as log:
        log.write(_line("conn", answered[0]))
    assert follower.poll() == []  # the smtp.log rows written with it may still come
    (session,) = _sessions(follower.poll()).values()
    assert session == [OPENED, COMMAND, COMMAND, COMMAND, REPLY, CLOSED]
    os.rename(smtp, tmp_path / "smtp.2025-12-05-10-00-00.log")  # rotated: a new file follows
    with conn.open("a") as log:  # the conn.log row first, the smtp.log row a poll later
        log.write(_line("conn", answered[1]))
    assert follower.poll() == []
    smtp.write_text(zeeklogs.tsv("smtp", [transactions[answered[1]["uid"]]]))
    assert [len(tags) for tags in _sessions(follower.poll()).values()] == [6]
    conn.write_text(zeeklogs.tsv("conn", [answered[2]]))  # cut short and written again
    smtp.write_text(zeeklogs.tsv("smtp", [transactions[answered[2]["uid"]]]))
    follower.poll()
    assert [len(tags) for tags in _sessions(follower.poll()).values()] == [6]
    assert follower.reading.records == 6
    follower.close()


def test_without_conn_log_a_follower_makes_sessions_of_smtp_rows(tmp_path: Path) -> None:
    (tmp_path / "smtp.log").write_text(zeeklogs.tsv("smtp", zeeklogs.office()["smtp"]))
    follower = LogFollower(str(tmp_path), PORTS)
    assert follower.poll() == []
    sessions = _sessions(follower.poll())
    assert len(sessions) == len(zeeklogs.office()["smtp"])
    assert all(tags[0] == OPENED and tags[-1] == CLOSED for tags in sessions.values())


def test_a_row_after_its_connection_closed_is_counted_not_doubled() -> None:
    office = zeeklogs.office()
    uid = office["conn"][0]["uid"]
    late = [row for row in office["smtp"] if row["uid"] == uid]
    join = zeek.ZeekJoin(PORTS)
    for kind, rows in (("conn", office["conn"][:1]), ("smtp", late)):
        for record in zeek.LogParser(f"{kind}.log").feed(zeeklogs.tsv(kind, rows).encode()):
            join.add(kind, record, f"{kind}.log")
            join.settle()
    assert join.problems.counts == {"smtp.log row after its conn.log row": 1}
    assert sum(tag == OPENED for _, tag, _ in join.take()) == 1


async def test_the_monitor_follows_a_folder_of_logs(tmp_path: Path) -> None:
    write_office(tmp_path)
    app = MonitorApp(ZeekSource(str(tmp_path), ports=PORTS), refresh_seconds=0.1)
    async with app.run_test(size=(120, 36)) as pilot:
        deadline = time.monotonic() + 20
        while app.model.sessions_total < 15 or app.model.open:
            assert time.monotonic() < deadline, "the logs were not read"
            await pilot.pause(0.1)
        app.update_view()
        await pilot.pause()
        status = " ".join(text.plain for _, text in app.status_parts())
        records = sum(map(len, zeeklogs.office().values()))
        assert f"{records} log records" in status and "Zeek logs" in status
        await pilot.press("e")
        await pilot.pause()
        assert any("hold no packets" in str(n.message) for n in app._notifications)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HostScreen) and screen.ip == SPAMBOT
        await pilot.press("enter")
        await pilot.pause()
        transcript = app.screen
        assert isinstance(transcript, TranscriptScreen)
        lines = [str(line.text) for line in transcript.query_one("#transcript").lines]
        assert LOGS_TRANSCRIPT.split(".")[0] in " ".join(lines)
        with (tmp_path / "smtp.log").open("a") as log:
            log.write("not\ta\tlog\tline\n")
        deadline = time.monotonic() + 10
        while "malformed line" not in app.progress.log_problem:
            assert time.monotonic() < deadline, "the bad line was not counted"
            await pilot.pause(0.1)


def test_a_cut_gzip_log_keeps_what_came_before_the_cut(tmp_path: Path) -> None:
    """Rotated logs are gzipped; a copy cut short (a full disk, a transfer stopped) keeps
    the lines before the cut, and says where it was cut."""
    smtp = zeeklogs.office()["smtp"]
    text = zeeklogs.tsv("smtp", smtp * 200).encode()
    packed = gzip.compress(text)
    cut = tmp_path / "smtp.log.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    result = report(cut)
    kept = result["stats"]["log_records"]
    assert 0 < kept < len(smtp) * 200
    assert result["stats"]["sessions"] == len(smtp)  # each uid 200 times: one connection
    assert result["stats"]["skipped"] == {"log cut short": 1}
    (warning,) = result["warnings"]
    assert "the file ends inside its compressed data" in warning
    assert f"after line {kept + 8}:" in warning  # the header's eight lines, then the rows


def test_a_gzip_log_of_several_members_reads_whole(tmp_path: Path) -> None:
    """``cat a.log.gz b.log.gz`` is one gzip file of two members, as gzip reads it."""
    logs = zeeklogs.office()
    text = zeeklogs.tsv("conn", logs["conn"]).encode()
    half = len(text) // 2
    (tmp_path / "conn.log.gz").write_bytes(gzip.compress(text[:half]) + gzip.compress(text[half:]))
    (tmp_path / "smtp.log").write_text(zeeklogs.tsv("smtp", logs["smtp"]))
    joined = report(tmp_path)
    assert joined["warnings"] == []
    assert joined["stats"]["sessions"] == len(logs["conn"])


def test_whole_logs_are_joined_in_time_order_within_bounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day of logs holds far more connections than are open at once: smtp.log and
    conn.log are merged by time, so a transaction waits only for its own connection's end,
    and the pieces of a rotated log join in time order whatever order they are named in."""
    monkeypatch.setattr(zeek, "MAX_PENDING", 8)
    office = zeeklogs.office()
    conn, smtp = [], []
    for day in range(60):  # 60 copies of the office's hour, an hour apart
        for row in office["conn"]:
            conn.append({**row, "ts": row["ts"] + 3600 * day, "uid": f"{row['uid']}-{day}"})
        for row in office["smtp"]:
            smtp.append({**row, "ts": row["ts"] + 3600 * day, "uid": f"{row['uid']}-{day}"})
    folders = []
    for part in range(3):  # named latest first
        folder = tmp_path / f"part{2 - part}"
        folder.mkdir()
        (folder / "conn.log").write_text(zeeklogs.tsv("conn", conn[part * 300 : part * 300 + 300]))
        (folder / "smtp.log").write_text(zeeklogs.tsv("smtp", smtp[part * 220 : part * 220 + 220]))
        folders.insert(0, folder)
    result = report(*folders)
    assert result["warnings"] == [] and result["stats"]["sessions"] == len(conn)
    assert hosts(result)[SPAMBOT]["rejected_sessions"] == 8 * 60
    notes = {
        line["text"] for s in result["sessions"] for line in s["transcript"] if line["kind"] == "*"
    }
    assert not any("conn.log" in note for note in notes)  # every transaction met its connection


def test_whole_logs_hold_at_most_max_ending_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection's end waits for transactions written after it, within a bound: past it
    the earliest ends are settled first."""
    monkeypatch.setattr(zeek, "MAX_ENDING", 3)
    join = zeek.ZeekJoin(PORTS)
    rows = zeeklogs.office()["conn"]
    for record in zeek.LogParser("conn.log").feed(zeeklogs.tsv("conn", rows).encode()):
        join.add("conn", record, "conn.log")
    join.settle(until=-math.inf)
    settled = [values for _, tag, values in join.take() if tag == CLOSED]
    assert len(settled) == len(rows) - 3
    ends = sorted(row["ts"] + row["duration"] for row in rows)
    assert [values[0] for values in settled] == ends[: len(rows) - 3]


def test_a_rotated_log_is_read_to_its_end_however_much_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll reads a bounded amount; a file renamed away is read to its end before it is
    let go, or what Zeek wrote before the rename would be lost."""
    monkeypatch.setattr(zeekfiles, "CHUNK", 256)
    monkeypatch.setattr(zeekfiles, "MAX_READ_PER_POLL", 256)
    office = zeeklogs.office()
    (tmp_path / "smtp.log").write_text(zeeklogs.tsv("smtp", office["smtp"]))
    follower = LogFollower(str(tmp_path), PORTS)
    follower.poll()
    assert follower.reading.records < len(office["smtp"])  # a poll's worth, not all
    os.rename(tmp_path / "smtp.log", tmp_path / "smtp.2025-12-05-10-00-00.log")
    follower.poll()
    assert follower.reading.records == len(office["smtp"])
    follower.close()


def test_rows_waiting_for_their_connection_are_bounded_in_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One connection may send thousands of mails before its conn.log row: past the bound on
    waiting rows, the longest waiting connection becomes a session without its row, and
    rows of it that come later are counted, not made a second session."""
    monkeypatch.setattr(zeek, "MAX_PENDING_ROWS", 5)
    row = zeeklogs.office()["smtp"][0]
    rows = [{**row, "ts": row["ts"] + n, "trans_depth": n + 1} for n in range(12)]
    join = zeek.ZeekJoin(PORTS)
    for record in zeek.LogParser("smtp.log").feed(zeeklogs.tsv("smtp", rows).encode()):
        join.add("smtp", record, "smtp.log")
        join.settle()
    made = join.take()
    assert sum(tag == OPENED for _, tag, _ in made) == 1
    assert sum(tag == REPLY for _, tag, _ in made) == 6
    assert join.problems.counts == {"smtp.log row after its conn.log row": 6}


def test_a_log_s_own_name_for_itself_is_shown_inert(tmp_path: Path) -> None:
    """A #path is the log's text: the reason it names is escaped like any wire text."""
    (tmp_path / "conn.log").write_text("#path\tevil\x1b]0;owned\x07\n#fields\tts\tuid\n1.0\tC1\n")
    (tmp_path / "smtp.log").write_text(zeeklogs.tsv("smtp", []))
    result = report(tmp_path)
    assert result["stats"]["skipped"] == {"a record of Zeek's evil\\x1b]0;owned\\x07 log": 1}
    assert not any("\x1b" in warning for warning in result["warnings"])
    (tmp_path / "notes.txt").write_text("#path\tev\x1bil\n")
    done = smtptop("report", "--zeek", str(tmp_path / "notes.txt"))
    assert "Zeek's ev\\x1bil.log" in done.stderr and "\x1b" not in done.stderr


def test_names_macs_and_states_from_logs_are_shown_inert(tmp_path: Path) -> None:
    """A DHCP host name, a MAC and a conn_state are the logs' text: escaped, or refused."""
    logs = zeeklogs.office()
    logs["dhcp"][0].update({"host_name": "PC\x1b[2J", "mac": "\x1b[31m"})
    logs["conn"][0]["conn_state"] = "X\x07"
    result = report(write_office(tmp_path, logs=logs))
    spambot = hosts(result)[SPAMBOT]
    assert "PC\\x1b[2J" in spambot["names"].values() and not spambot["mac"]
    reasons = {s["close_reason"] for s in result["sessions"]}
    assert "Zeek conn_state X\\x07" in reasons
