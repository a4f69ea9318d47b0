"""smtptop's report on every corpus capture, checked against the peers' expected outputs.

One test per capture of INDEX.md: the engine runs with the default SMTP ports and its sessions
are compared with the claims expected.py reads from the peer's own output. Every claim names the
peer file it comes from; what a peer defines differently from us is left out there, so a
failure here is a disagreement on something both sides define alike.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from ipaddress import ip_address
from typing import Any

import pytest

from . import expected
from .expected import CaptureExpectation, ExpectedSession, Items, Match, Range

ROOT = expected.corpus_root()
PORTS = expected.DEFAULT_PORTS
CAPTURES = (
    [row.capture for row in expected.index_rows(ROOT)] if (ROOT / "INDEX.md").is_file() else []
)
NO_CORPUS = pytest.param(
    "", marks=pytest.mark.skip(reason=f"no corpus at {ROOT} (set SMTPTOP_CORPUS)")
)


@pytest.fixture(scope="module")
def expectations() -> dict[str, CaptureExpectation]:
    return expected.load_expectations(ROOT, PORTS)


@pytest.mark.parametrize("capture", CAPTURES or [NO_CORPUS])
def test_capture(capture: str, expectations: dict[str, CaptureExpectation]) -> None:
    # Imported here so that a missing corpus still reads as a skip, not a collection error.
    from smtptop.render import analyze_paths

    result = analyze_paths([str(ROOT / capture)], ports=PORTS)
    problems = check(expectations[capture], result)
    assert not problems, f"{capture}:\n  " + "\n  ".join(problems)


def check(exp: CaptureExpectation, result: dict[str, Any]) -> list[str]:
    """Every way the report disagrees with the capture's expectation."""
    problems = []
    stats, sessions = result["stats"], result["sessions"]
    if stats["errors"] != 0:
        problems.append(f"stats.errors = {stats['errors']}")
    # Suricata's decoder.pkts / decoder.bytes count every packet read from the file and its
    # captured length, as stats.packets / stats.bytes do.
    for name, theirs in (("packets", exp.packets), ("bytes", exp.bytes)):
        if theirs is not None and stats[name] != theirs:
            problems.append(f"stats.{name} = {stats[name]}, peer counted {theirs}")
    high = len(sessions) if exp.max_sessions is None else exp.max_sessions
    if not exp.min_sessions <= len(sessions) <= high:
        ours = ", ".join(f"{s['client']} -> {s['server']}" for s in sessions) or "none"
        bound = "" if exp.max_sessions is None else exp.max_sessions
        problems.append(f"{len(sessions)} sessions ({ours}), expected {exp.min_sessions}..{bound}")
    accepted: dict[int, list[Range]] = defaultdict(list)
    for claim in exp.sessions:
        candidates = [i for i, session in enumerate(sessions) if _same_endpoints(claim, session)]
        if not candidates:
            problems.append(f"no session for {claim.describe()}")
            continue
        failures = {i: mismatches(claim, sessions[i]) for i in candidates}
        good = [i for i in candidates if not failures[i]]
        if len(good) == 1 and claim.accepted is not None:
            accepted[good[0]].append(claim.accepted)
        if not good:
            problems += [
                f"{claim.source} vs {sessions[i]['client']} -> {sessions[i]['server']}: "
                + "; ".join(failures[i])
                for i in candidates
            ]
    return problems + _accepted_problems(result, accepted)


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return str(ip_address(host.strip("[]"))), int(port)


def _same_endpoints(claim: ExpectedSession, session: dict[str, Any]) -> bool:
    """Whether our session has every endpoint part the peer names."""
    client, server = _endpoint(session["client"]), _endpoint(session["server"])
    pairs = (
        (claim.client_ip, client[0]),
        (claim.client_port, client[1]),
        (claim.server_ip, server[0]),
        (claim.server_port, server[1]),
    )
    return all(wanted is None or wanted == got for wanted, got in pairs)


def items_match(items: Items, ours: list[Any]) -> bool:
    """Whether our list relates to the peer's as the claim says."""
    theirs: list[Any] = list(items.values)
    if items.ignore_empty:  # Zeek cannot log the null sender "<>"
        ours = [value for value in ours if value != ""]
    if items.casefold:  # Arkime lower-cases addresses
        ours = [str(value).casefold() for value in ours]
        theirs = [str(value).casefold() for value in theirs]
    if items.match is Match.EXACT:
        return ours == theirs
    if items.match is Match.SET:
        return set(ours) == set(theirs)
    if items.match is Match.SUBSET:
        return not Counter(theirs) - Counter(ours)
    if items.match is Match.WITHIN:
        return set(ours) <= set(theirs)
    remaining = iter(ours)  # SUBSEQUENCE: each expected item found after the previous one
    return all(any(value == other for other in remaining) for value in theirs)


def _in_range(value: int, wanted: Range) -> bool:
    return wanted[0] <= value and (wanted[1] is None or value <= wanted[1])


def _show(values: list[Any], limit: int = 8) -> str:
    more = f" ... (+{len(values) - limit})" if len(values) > limit else ""
    return f"{values[:limit]}{more}"


def mismatches(claim: ExpectedSession, session: dict[str, Any]) -> list[str]:
    """What in one of our sessions contradicts one peer claim."""
    found = []
    if claim.helo is not None:
        ours, theirs = session["helo"] or "", claim.helo
        if claim.helo_casefold:  # Arkime lower-cases HELO arguments
            ours, theirs = ours.casefold(), theirs.casefold()
        if ours != theirs:
            found.append(f"helo {session['helo']!r}, peer {claim.helo!r}")
    codes = [int(reply["code"]) for reply in session["replies"]]
    for name, items, ours in (
        ("mail_from", claim.mail_from, list(session["mail_from"])),
        ("rcpt_to", claim.rcpt_to, list(session["rcpt_to"])),
        ("reply codes", claim.reply_codes, codes),
    ):
        if items is not None and not items_match(items, ours):
            found.append(f"{name} {_show(ours)}, peer {items.match} {_show(list(items.values))}")
    if claim.rcpt_count is not None and not _in_range(len(session["rcpt_to"]), claim.rcpt_count):
        found.append(f"{len(session['rcpt_to'])} recipients, peer {claim.rcpt_count}")
    if claim.tls is not None and bool(session["tls"]) != claim.tls:
        found.append(f"tls {session['tls']}, peer {claim.tls}")
    if claim.partial is not None and bool(session["partial"]) != claim.partial:
        found.append(f"partial {session['partial']}, peer {claim.partial}")
    if claim.span is not None:
        # Arkime keeps packet times in whole milliseconds.
        first, last = claim.span[0] - 0.001, claim.span[1] + 0.001
        if not first <= session["start"] <= session["end"] <= last:
            found.append(
                f"time {session['start']}..{session['end']} outside the peer's {claim.span}"
            )
    return found


def _accepted_problems(result: dict[str, Any], accepted: dict[int, list[Range]]) -> list[str]:
    """Sessions do not carry a message count, so the claims are summed per client host and
    compared with the host's accepted_messages; sessions no peer counted add 0..unbounded."""
    low: Counter[str] = Counter()
    high: dict[str, int | None] = {}
    checked = set()
    problems = []
    for index, session in enumerate(result["sessions"]):
        client = _endpoint(session["client"])[0]
        ranges = accepted.get(index, [])
        least = max((r[0] for r in ranges), default=0)
        bounded = [r[1] for r in ranges if r[1] is not None]
        most = min(bounded) if bounded else None
        if most is not None and least > most:
            problems.append(f"peers disagree on accepted messages of {session['client']}: {ranges}")
        low[client] += least
        total = high.get(client, 0)
        high[client] = None if total is None or most is None else total + most
        if ranges:
            checked.add(client)
    hosts = {str(ip_address(host["ip"])): host for host in result["hosts"]}
    for client in sorted(checked):
        if client not in hosts:
            problems.append(f"no host entry for {client}")
            continue
        count = hosts[client]["accepted_messages"]
        if not _in_range(count, (low[client], high[client])):
            problems.append(
                f"host {client} accepted_messages = {count}, "
                f"peers say {low[client]}..{'' if high[client] is None else high[client]}"
            )
    return problems
