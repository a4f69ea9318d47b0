"""The LAN of tests/test_live_gateway.py: one infected PC and ordinary ones behind a gateway.

Usage: ``python tests/live_gateway_client.py PLAN_JSON``, inside the test's LAN namespace.  The
plan is live_client.py's (server addresses, submission account, swaks binary) plus ``spambot``
(an address, or empty for none), ``office`` (the ordinary PCs' addresses) and ``first_port``.

The spambot runs live_client.py's whole scenario, so it meets every server: accepted, refused
at the greeting, refused at RCPT, greylisted, wrong password.  Each office PC sends one message
through the submission server with its account and one straight to the accepting MX, as a mail
client and a scanner would.  Every session binds its own local port.  Output: live_client.py's
JSON ``{"sessions": [...]}``, the ground truth the test holds smtptop to.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any

from live_client import Record, authenticated, scenario, send, smtplib_session

SCENARIO_PORTS = 100  # live_client.scenario takes its ports from first_port onwards


def office_pc(plan: dict[str, Any], ip: str, ports: Iterator[int]) -> list[Record]:
    """An uninfected PC: one authenticated message, one scan sent to the MX directly."""
    submission, mx = f"{plan['submission']}:587", f"{plan['accept']}:25"
    login = authenticated(plan, "PLAIN", plan["password"], initial=True)
    scan = send("scanner@corp.example", ["it@accept.test"], "scan")
    return [
        smtplib_session(Record("office-submission", "smtplib", submission, ip, next(ports)), login),
        smtplib_session(Record("office-scan", "smtplib", mx, ip, next(ports)), scan),
    ]


def main() -> None:
    plan = json.loads(sys.argv[1])
    records = []
    if plan["spambot"]:
        bot = plan["spambot"]
        records += scenario({**plan, "client_ip": bot, "outsider_ip": bot})
    ports = itertools.count(plan["first_port"] + SCENARIO_PORTS)
    for ip in plan["office"]:
        records += office_pc(plan, ip, ports)
    json.dump({"sessions": [asdict(r) for r in records]}, sys.stdout)


if __name__ == "__main__":
    main()
