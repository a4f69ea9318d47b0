"""Zeek's logs against packets: ``smtptop report --zeek DIR`` and ``smtptop report FILE`` over
the same SMTP sessions, in the same run.

The sessions are those of the memory benchmark (``bench/memory.py``: ``--sessions`` sessions
from ``--clients`` LAN hosts to ``--servers`` mail servers, ``--refused`` of them refused at
the greeting), written twice: as the capture that benchmark writes, and as the conn.log and
smtp.log Zeek writes for them.  conn.log has a row per connection; smtp.log a row per
connection that sent MAIL, with what Zeek records: the HELO name, MAIL FROM, RCPT TO, and
as ``last_reply`` the last reply before the row was written (at the end of DATA, or else at
the end of the connection: the 221 to QUIT when the client said QUIT).

Both commands run under ``/usr/bin/time -v`` with their process trees watched (the report on
the capture forks engine processes on two CPUs; the one on the logs runs in one).  The wall
time and memory of each are printed with their ratio, and each client's sessions and
distinct destinations must be equal in the two reports.  Rejected sessions are counted in
both and shown side by side: that is what Zeek's default logs lose (README, "Zeek's logs
instead of packets").

Usage::

    python bench/zeek_logs.py [--sessions 200000] [--clients 2000] [--servers 20000]

Prints a markdown report and writes it to bench/results/zeek_logs.md (not with ``--no-write``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import memory  # the sessions and the measuring are the memory benchmark's
import zeeklogs  # Zeek's fields and types, as the tests write logs

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "zeek_logs.md"
CONN_FIELDS = [name for name, _ in zeeklogs.FIELDS["conn"]]
SMTP_FIELDS = [name for name, _ in zeeklogs.FIELDS["smtp"]]


def _header(kind: str) -> str:
    """A log's header as Zeek writes it (the test helper's, without its #close)."""
    return zeeklogs.tsv(kind, []).rsplit("#close", 1)[0]


def _last_reply(script: list[tuple[str, bytes]]) -> str:
    """What smtp.log's last_reply holds for a session: the reply to the end of DATA when a
    message was sent, else the last reply of the connection."""
    replies = [data for side, data in script if side == "S"]
    after_data = [i for i, (side, data) in enumerate(script) if data == memory.BODY]
    chosen = script[after_data[0] + 1][1] if after_data else replies[-1]
    return chosen.decode().rstrip("\r\n").rsplit("\r\n", 1)[-1]


def write_logs(folder: Path, sessions: int, clients: int, servers: int, *, refused: float,
               seed: int = 6) -> int:  # fmt: skip
    """conn.log and smtp.log for the sessions ``memory.generate`` writes with the same
    arguments (the same draws, in the same order).  Returns the records written."""
    rng = random.Random(seed)
    seen = [0] * clients
    records = 0
    with (folder / "conn.log").open("w") as conn, (folder / "smtp.log").open("w") as smtp:
        conn.write(_header("conn"))
        smtp.write(_header("smtp"))
        for number in range(sessions):
            client = rng.randrange(clients)
            _, _, script = memory.pick(rng.random(), refused)
            nth = seen[client]
            seen[client] = nth + 1
            ends = [memory.client_ip(client), str(1024 + number % 60000),
                    memory.server_ip(memory.server_of(client, nth, servers)), "25"]  # fmt: skip
            start = (memory.START_US + number * memory.SPACING_US) / 1e6
            frames = 6 + len(script)
            sent = {side: sum(len(d) for s, d in script if s == side) for side in "CS"}
            packets = {side: sum(1 for s, _ in script if s == side) for side in "CS"}
            uid = f"C{number:010x}"
            conn.write("\t".join([
                f"{start:.6f}", uid, *ends, "tcp", "smtp",
                f"{(frames - 1) * memory.STEP_US / 1e6:.6f}", str(sent["C"]), str(sent["S"]),
                "SF", "T", "F", "0", "ShADadFf", str(packets["C"] + 4), "0",
                str(packets["S"] + 2), "0", "(empty)",
            ]) + "\n")  # fmt: skip
            records += 1
            commands = b"".join(data for side, data in script if side == "C")
            if b"MAIL FROM" not in commands:
                continue  # Zeek writes no smtp.log row without MAIL, RCPT or STARTTLS
            message = memory.BODY in commands
            row = {name: "-" for name in SMTP_FIELDS}
            row.update({
                "ts": f"{start + 0.001:.6f}", "uid": uid, "id.orig_h": ends[0],
                "id.orig_p": ends[1], "id.resp_h": ends[2], "id.resp_p": ends[3],
                "trans_depth": "1", "helo": "pc.office.lan", "mailfrom": "invoice@office.example",
                "rcptto": "someone@example.org" if b"RCPT TO" in commands else "(empty)",
                "last_reply": _last_reply(script), "tls": "F",
            })  # fmt: skip
            if message:
                row.update({"from": "a@office.example", "subject": "invoice", "fuids": "F1"})
            smtp.write("\t".join(row[name] for name in SMTP_FIELDS) + "\n")
            records += 1
    return records


def compare(packets: dict, logs: dict) -> tuple[int, int]:
    """Each client's sessions and destinations are equal; the rejected sessions each report
    counts, in all."""
    from_packets = {host["ip"]: host for host in packets["hosts"]}
    from_logs = {host["ip"]: host for host in logs["hosts"]}
    assert from_packets.keys() == from_logs.keys()
    for ip, host in from_packets.items():
        other = from_logs[ip]
        assert (host["sessions"], host["destinations"]) == (
            other["sessions"],
            other["destinations"],
        ), ip
    rejected = [sum(h["rejected_sessions"] for h in r["hosts"]) for r in (packets, logs)]
    return rejected[0], rejected[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--servers", type=int, default=20_000)
    parser.add_argument("--refused", type=float, default=0.5, help="share refused at greeting")
    parser.add_argument("--source", type=Path, help="run the smtptop in this folder")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between samples")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smtptop-zeek-") as scratch:
        folder = Path(scratch)
        capture, logs = folder / "sessions.pcap", folder / "logs"
        logs.mkdir()
        shape = (args.sessions, args.clients, args.servers)
        sent = memory.generate(capture, *shape, refused=args.refused)
        records = write_logs(logs, *shape, refused=args.refused)
        measured, seconds = {}, {}
        for kind, target, zeek in (("packets", capture, False), ("logs", logs, True)):
            out = folder / f"{kind}.json"
            began = time.monotonic()
            measured[kind] = memory.measure(target, out, source=args.source,
                                            interval=args.interval, zeek=zeek)  # fmt: skip
            seconds[kind] = time.monotonic() - began
        reports = {kind: json.loads((folder / f"{kind}.json").read_text()) for kind in measured}
        memory.check_exact(reports["packets"], sent, args.servers)
        rejected = compare(reports["packets"], reports["logs"])
        log_bytes = sum(path.stat().st_size for path in logs.iterdir())
        capture_bytes = capture.stat().st_size
    memory_mib = {kind: m.tree_bound_mib for kind, m in measured.items()}
    lines = [
        f"# Zeek's logs against packets over {args.sessions:,} sessions",
        "",
        f"Commands: `smtptop report --json --zeek LOGS -o OUT` and `smtptop report --json "
        f"CAPTURE -o OUT` under `/usr/bin/time -v`, smtptop from `{measured['logs'].smtptop}`; "
        f"`python bench/zeek_logs.py --sessions {args.sessions} --clients {args.clients} "
        f"--servers {args.servers} --refused {args.refused}`",
        "",
        memory.machine(),
        "",
        f"Input: the capture, {sent.packets:,} packets, {capture_bytes / 2**20:,.0f} MiB; "
        f"the logs, {records:,} records (conn.log and smtp.log), {log_bytes / 2**20:,.0f} MiB",
        "",
        "| input | wall | whole tree, sum of peaks | rejected sessions found |",
        "|---|---|---|---|",
        f"| capture | {seconds['packets']:.2f} s | {memory_mib['packets']:.1f} MiB "
        f"| {rejected[0]:,} |",
        f"| Zeek logs | {seconds['logs']:.2f} s | {memory_mib['logs']:.1f} MiB | {rejected[1]:,} |",
        f"| logs / capture | **{seconds['logs'] / seconds['packets']:.2f}** "
        f"| {memory_mib['logs'] / memory_mib['packets']:.2f} | |",
        "",
        "* per-client sessions and distinct destinations are equal in the two reports: checked",
        "* the rejected sessions the logs miss are those refused at the greeting (no smtp.log "
        "row) and those whose refusal a later reply (the 221 to QUIT) replaced in last_reply",
        "",
    ]
    memory.publish("\n".join(lines), RESULTS, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
