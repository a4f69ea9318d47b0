"""Zeek logs written as Zeek's ASCII writer writes them (TSV with its header, or JSON lines), for
tests: the fields and types of Zeek 6's conn, smtp, dhcp and dns logs, and a small office whose
truth is known (one spambot refused by blocklists, one PC sending through the smarthost)."""

from __future__ import annotations

import json
from typing import Any

Row = dict[str, Any]

FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "conn": (
        ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
        ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto", "enum"),
        ("service", "string"), ("duration", "interval"), ("orig_bytes", "count"),
        ("resp_bytes", "count"), ("conn_state", "string"), ("local_orig", "bool"),
        ("local_resp", "bool"), ("missed_bytes", "count"), ("history", "string"),
        ("orig_pkts", "count"), ("orig_ip_bytes", "count"), ("resp_pkts", "count"),
        ("resp_ip_bytes", "count"), ("tunnel_parents", "set[string]"),
    ),
    "smtp": (
        ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
        ("id.resp_h", "addr"), ("id.resp_p", "port"), ("trans_depth", "count"),
        ("helo", "string"), ("mailfrom", "string"), ("rcptto", "set[string]"),
        ("date", "string"), ("from", "string"), ("to", "set[string]"), ("cc", "set[string]"),
        ("reply_to", "string"), ("msg_id", "string"), ("in_reply_to", "string"),
        ("subject", "string"), ("x_originating_ip", "addr"), ("first_received", "string"),
        ("second_received", "string"), ("last_reply", "string"), ("path", "vector[addr]"),
        ("user_agent", "string"), ("tls", "bool"), ("fuids", "vector[string]"),
    ),
    "dhcp": (
        ("ts", "time"), ("uids", "set[string]"), ("client_addr", "addr"),
        ("server_addr", "addr"), ("mac", "string"), ("host_name", "string"),
        ("client_fqdn", "string"), ("domain", "string"), ("requested_addr", "addr"),
        ("assigned_addr", "addr"), ("lease_time", "interval"), ("msg_types", "vector[string]"),
    ),
    "dns": (
        ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
        ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto", "enum"),
        ("trans_id", "count"), ("query", "string"), ("qtype", "count"),
        ("qtype_name", "string"), ("rcode", "count"), ("rcode_name", "string"),
        ("answers", "vector[string]"), ("TTLs", "vector[interval]"),
    ),
}  # fmt: skip


def _escape(text: str) -> str:
    """As Zeek's ASCII writer: the separators, backslash and control characters as \\xNN."""
    return "".join(
        f"\\x{ord(char):02x}" if ord(char) < 0x20 or char in "\\,\x7f" else char for char in text
    )


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "T" if value else "F"
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list | tuple):
        return ",".join(_escape(str(item)) for item in value) if value else "(empty)"
    text = str(value)
    return _escape(text) if text else "(empty)"


def tsv(kind: str, rows: list[Row]) -> str:
    """A whole log as Zeek writes it, header and #close included."""
    names = [name for name, _ in FIELDS[kind]]
    lines = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        f"#path\t{kind}",
        "#open\t2026-12-05-09-00-00",
        "#fields\t" + "\t".join(names),
        "#types\t" + "\t".join(kind for _, kind in FIELDS[kind]),
    ]
    lines += ["\t".join(_cell(row.get(name)) for name in names) for row in rows]
    lines.append("#close\t2026-12-05-10-00-00")
    return "\n".join(lines) + "\n"


def json_lines(kind: str, rows: list[Row]) -> str:
    """A log as Zeek's JSON writer writes it: one object per line, unset fields left out."""
    names = [name for name, _ in FIELDS[kind]]
    return "".join(
        json.dumps({name: row[name] for name in names if row.get(name) is not None}) + "\n"
        for row in rows
    )


SPAMBOT = "192.168.1.50"
PC = "192.168.1.20"
SMARTHOST = "198.51.100.25"
START = 1_764_928_800.0  # 2025-12-05 10:00 UTC
REFUSAL = "554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org"


def office() -> dict[str, list[Row]]:
    """An office's hour of logs: the spambot opens 12 connections to 12 foreign MX servers (8
    refused at RCPT by blocklists, 4 unanswered: no smtp.log row), the PC sends 3 mails through
    the smarthost; DHCP names the spambot, which also looks up MX records."""
    conn: list[Row] = []
    smtp: list[Row] = []
    dns: list[Row] = []
    for n in range(12):
        ts = START + 60 * n
        uid = f"Cspam{n:02d}"
        server = f"203.0.113.{n + 1}"
        ends = {"id.orig_h": SPAMBOT, "id.orig_p": 40000 + n, "id.resp_h": server, "id.resp_p": 25}
        answered = n < 8
        conn.append({
            "ts": ts, "uid": uid, **ends, "proto": "tcp",
            "service": "smtp" if answered else None, "duration": 2.5 if answered else 3.0,
            "orig_bytes": 120 if answered else 0, "resp_bytes": 300 if answered else 0,
            "conn_state": "SF" if answered else "S0", "local_orig": True, "local_resp": False,
            "missed_bytes": 0, "history": "ShAdDaFf" if answered else "S",
            "orig_pkts": 8 if answered else 2, "orig_ip_bytes": 540,
            "resp_pkts": 7 if answered else 0, "resp_ip_bytes": 600, "tunnel_parents": [],
        })  # fmt: skip
        if answered:
            smtp.append({
                "ts": ts + 0.5, "uid": uid, **ends, "trans_depth": 1, "helo": "localhost",
                "mailfrom": f"offers{n}@shop{n}.example", "rcptto": [f"victim{n}@mail{n}.example"],
                "last_reply": REFUSAL.format(ip="192.0.2.7"), "tls": False,
            })  # fmt: skip
        dns.append({
            "ts": ts - 1, "uid": f"Cdns{n:02d}", "id.orig_h": SPAMBOT, "id.orig_p": 53000 + n,
            "id.resp_h": "192.168.1.1", "id.resp_p": 53, "proto": "udp", "trans_id": n,
            "query": f"mail{n}.example", "qtype": 15, "qtype_name": "MX", "rcode": 0,
            "rcode_name": "NOERROR", "answers": [server], "TTLs": [300.0],
        })  # fmt: skip
    for n in range(3):
        ts = START + 300 * n + 7
        uid = f"Cpc{n:02d}"
        ends = {"id.orig_h": PC, "id.orig_p": 50000 + n, "id.resp_h": SMARTHOST, "id.resp_p": 587}
        conn.append({
            "ts": ts, "uid": uid, **ends, "proto": "tcp", "service": "smtp", "duration": 1.25,
            "orig_bytes": 4000, "resp_bytes": 500, "conn_state": "SF", "history": "ShAdDaFf",
            "orig_pkts": 12, "resp_pkts": 10,
        })  # fmt: skip
        smtp.append({
            "ts": ts + 0.2, "uid": uid, **ends, "trans_depth": 1,
            "helo": "accounts-pc.office.example",
            "mailfrom": "anna@office.example", "rcptto": ["client@partner.example"],
            "date": "Fri, 5 Dec 2025 10:00:07 +0000", "from": "Anna <anna@office.example>",
            "subject": f"Invoice {n}", "msg_id": f"<{n}@office.example>",
            "last_reply": "250 2.0.0 Ok: queued as ABC123", "user_agent": "Mozilla Thunderbird",
            "tls": False, "fuids": [f"F{n}"],
        })  # fmt: skip
    dhcp = [{
        "ts": START - 600, "uids": ["Cdhcp1"], "client_addr": SPAMBOT, "server_addr": "192.168.1.1",
        "mac": "00:11:22:33:44:55", "host_name": "RECEPTION-PC", "assigned_addr": SPAMBOT,
        "lease_time": 86400.0, "msg_types": ["REQUEST", "ACK"],
    }]  # fmt: skip
    conn.sort(key=lambda row: row["ts"] + row["duration"])  # Zeek logs a connection at its end
    return {"conn": conn, "smtp": smtp, "dhcp": dhcp, "dns": dns}
