"""The model's definitions (rejected, tempfailed, accepted), masking and bounds."""

from __future__ import annotations

import base64
import json

import pytest

from smtptop.model import Model, ModelLimits, is_lan, mailbox
from smtptop.report import Analysis, render_csv, render_table, to_json
from smtptop.smtp import Side, SmtpParser

from smtptop.analyzer import Stats  # isort: skip

C, S = Side.CLIENT, Side.SERVER
PASSWORD = "Sup3r-S3cret-pw"


def play(model: Model, session_id: int, script, client="192.168.0.5", server="198.51.100.1"):
    """Run a dialogue through a parser into ``model`` as session ``session_id``."""
    model.open_session(session_id, (client, 40000 + session_id), (server, 25), 0.0, midstream=False)
    parser = SmtpParser()
    for side, data in script:
        parser.receive_data(side, data, 1.0)
        for event in parser.events():
            model.apply(session_id, event)
    parser.close(2.0)
    for event in parser.events():
        model.apply(session_id, event)
    model.close_session(session_id, 2.0, "closed", client_bytes=0, server_bytes=0, packets=0)
    return model.session(session_id)


def greet(*steps):
    return [(S, b"220 mx.example ESMTP\r\n"), (C, b"EHLO pc.lan\r\n"), (S, b"250 ok\r\n"), *steps]


MAIL = [(C, b"MAIL FROM:<a@office.example>\r\n"), (S, b"250 ok\r\n")]
RCPT_OK = [(C, b"RCPT TO:<b@example.org>\r\n"), (S, b"250 ok\r\n")]
DATA = [
    (C, b"DATA\r\n"),
    (S, b"354 go\r\n"),
    (C, b"Subject: s\r\n\r\nhi\r\n.\r\n"),
]


@pytest.mark.parametrize(
    ("script", "outcome", "decisive"),
    [
        (greet(*MAIL, *RCPT_OK, *DATA, (S, b"250 queued\r\n")), "accepted", None),
        ([(S, b"554 5.7.1 blocked using zen.spamhaus.org\r\n")], "rejected", 554),
        ([(S, b"421 4.7.0 try later\r\n")], "tempfailed", 421),
        (
            greet(*MAIL, (C, b"RCPT TO:<x@y>\r\n"), (S, b"450 4.7.1 greylisted\r\n")),
            "tempfailed",
            450,
        ),
        (
            greet(
                *MAIL,
                (C, b"RCPT TO:<x@y>\r\n"),
                (S, b"450 4.7.1 greylisted\r\n"),
                (C, b"RCPT TO:<z@y>\r\n"),
                (S, b"550 5.7.1 cbl.abuseat.org\r\n"),
            ),
            "rejected",
            550,
        ),
        (greet(*MAIL, *RCPT_OK, *DATA, (S, b"554 5.7.1 spam\r\n")), "rejected", 554),
        (greet((C, b"VRFY root\r\n"), (S, b"502 5.5.1 no\r\n")), "no-mail", None),
        (greet((C, b"XYZZY\r\n"), (S, b"500 5.5.2 what?\r\n")), "no-mail", None),
        (
            [
                (S, b"220 mx\r\n"),
                (C, b"EHLO pc\r\n"),
                (S, b"500 unknown\r\n"),
                (C, b"HELO pc\r\n"),
                (S, b"250 ok\r\n"),
            ],
            "no-mail",
            None,
        ),
        (
            greet((C, b"STARTTLS\r\n"), (S, b"220 go\r\n"), (C, b"\x16\x03\x01\x00\x01x")),
            "tls",
            None,
        ),
        (greet(*MAIL, (C, b"BDAT 3 LAST\r\nabc"), (S, b"250 ok\r\n")), "accepted", None),
        ([(S, b"220 mx\r\n"), (S, b"421 4.4.2 timeout\r\n")], "no-mail", None),
    ],
    ids=[
        "accepted",
        "554-greeting",
        "421-greeting",
        "450-rcpt",
        "4xx-then-5xx",
        "554-end-of-data",
        "502-vrfy-not-counted",
        "500-unknown-not-counted",
        "ehlo-fallback",
        "tls",
        "bdat-last",
        "unsolicited-421",
    ],
)
def test_session_outcome(script, outcome: str, decisive: int | None) -> None:
    model = Model()
    session = play(model, 1, script)
    assert session.outcome == outcome
    assert (session.decisive.code if session.decisive else None) == decisive
    host = model.hosts["192.168.0.5"]
    assert host.rejected_sessions == (outcome == "rejected")
    assert host.tempfailed_sessions == (outcome == "tempfailed")
    server = host.servers["198.51.100.1"]
    assert server.rejected_sessions == host.rejected_sessions


def test_host_aggregates_over_sessions_and_servers() -> None:
    model = Model()
    for i in range(6):
        play(model, i, greet(*MAIL, *RCPT_OK, *RCPT_OK, *DATA, (S, b"250 ok\r\n")),
             server=f"203.0.113.{i % 3}")  # fmt: skip
    host = model.hosts["192.168.0.5"]
    assert (host.sessions, host.destinations, host.accepted_messages, host.recipients) == (
        6,
        3,
        6,
        12,
    )
    assert host.helos == {"pc.lan": 6}
    assert host.servers["203.0.113.0"].name == "mx.example"
    assert host.lan


def test_credentials_are_masked_everywhere() -> None:
    plain = base64.b64encode(f"\0alice@office.example\0{PASSWORD}".encode())
    login_user = base64.b64encode(b"bob@office.example")
    login_pass = base64.b64encode(PASSWORD.encode())
    model = Model()
    plain_session = play(model, 1, greet((C, b"AUTH PLAIN " + plain + b"\r\n"),
                                         (S, b"235 ok\r\n")))  # fmt: skip
    login_session = play(
        model,
        2,
        greet(
            (C, b"AUTH LOGIN\r\n"),
            (S, b"334 VXNlcm5hbWU6\r\n"),
            (C, login_user + b"\r\n"),
            (S, b"334 UGFzc3dvcmQ6\r\n"),
            (C, login_pass + b"\r\n"),
            (S, b"235 ok\r\n"),
        ),
    )
    assert plain_session.auth_user == "alice@office.example"
    assert login_session.auth_user == "bob@office.example"
    analysis = Analysis(model, Stats())
    outputs = [json.dumps(to_json(analysis)), render_table(analysis), render_csv(analysis)]
    for secret in (PASSWORD, plain.decode(), login_pass.decode()):
        assert not any(secret in out for out in outputs)
    assert "AUTH PLAIN ********" in [t.text for t in plain_session.transcript]

    shown = Model(show_credentials=True)
    revealed = play(shown, 1, greet((C, b"AUTH PLAIN " + plain + b"\r\n"), (S, b"235 ok\r\n")))
    assert f"AUTH PLAIN {plain.decode()}" in [t.text for t in revealed.transcript]


def test_wire_text_is_inert_in_the_model() -> None:
    model = Model()
    session = play(
        model,
        1,
        [
            (S, b"220 mx \x1b]2;PWNED\x07 [bold]x[/]\r\n"),
            (C, b"HELO \x1b[31mred\xe2\x80\xaeevil\x9b\r\n"),
            (S, b"250 ok\r\n"),
        ],
    )
    texts = [t.text for t in session.transcript] + [session.helo, session.banner]
    assert all("\x1b" not in t and "\u202e" not in t and "\x9b" not in t for t in texts)
    assert session.helo == "\\x1b[31mred\\u202eevil\\x9b"
    assert "[bold]x[/]" in session.transcript[0].text


def test_bounds_count_what_they_cut() -> None:
    limits = ModelLimits(
        max_sessions=3, max_transcript_lines=10, max_addresses=5, max_replies=4, max_helos=2
    )
    model = Model(limits=limits)
    many_rcpts = [
        step for i in range(20) for step in ((C, b"RCPT TO:<r%d@x>\r\n" % i), (S, b"250 ok\r\n"))
    ]
    for i in range(8):
        play(model, i, [*greet(*MAIL), *many_rcpts, (C, b"EHLO name%d\r\n" % i)])
    assert len(model.sessions()) == 3 and model.sessions_evicted == 5
    assert model.sessions_total == 8
    last = model.sessions()[-1]
    assert len(last.transcript) == 10 and last.transcript_dropped > 0
    assert len(last.rcpt_to) == 5 and last.recipients == 20
    assert len(last.replies) == 4
    host = model.hosts["192.168.0.5"]
    assert host.sessions == 8 and host.recipients == 160
    assert len(host.helos) == 2


@pytest.mark.parametrize(
    ("ip", "lan"),
    [
        ("10.1.2.3", True),
        ("172.31.0.1", True),
        ("192.168.0.108", True),
        ("100.64.1.1", True),
        ("169.254.3.4", True),
        ("fd12::1", True),
        ("fe80::1", True),
        ("8.8.8.8", False),
        ("172.32.0.1", False),
        ("2001:db8::1", False),
    ],
)
def test_lan_ranges(ip: str, lan: bool) -> None:
    assert is_lan(ip) is lan


@pytest.mark.parametrize(
    ("arg", "address"),
    [
        ("FROM:<a@b.example> SIZE=12", "a@b.example"),
        ("FROM: <a@b.example>", "a@b.example"),
        ("from:a@b.example BODY=8BITMIME", "a@b.example"),
        ("FROM:<>", ""),
        ("TO:<c@d.example>", "c@d.example"),
        ("TO:<broken", "broken"),
    ],
)
def test_mailbox(arg: str, address: str) -> None:
    assert mailbox(arg) == address


# --- bounded memory: what is kept in full, and what is summarised ------------------------------

REJECTED = [(S, b"554 5.7.1 blocked using zen.spamhaus.org\r\n")]
ACCEPTED = greet(*MAIL, *RCPT_OK, *DATA, (S, b"250 queued\r\n"), (C, b"QUIT\r\n"))


def kept_ids(model: Model, ip: str = "192.168.0.5") -> list[int]:
    return [s.id for s in model.host_sessions(ip)]


def test_each_host_keeps_its_most_recent_sessions() -> None:
    model = Model(limits=ModelLimits(max_sessions_per_host=3))
    for i in range(6):
        play(model, i, ACCEPTED)
    play(model, 6, ACCEPTED, client="192.168.0.6")
    assert kept_ids(model) == [3, 4, 5] and kept_ids(model, "192.168.0.6") == [6]
    host = model.hosts["192.168.0.5"]
    assert (host.sessions, host.sessions_kept, host.sessions_evicted) == (6, 3, 3)
    assert model.sessions_evicted == 3 and model.session(2) is None
    assert host.accepted_messages == 6  # the counts do not depend on what is kept


def test_rejected_sessions_are_kept_longest() -> None:
    """Those not rejected go first while they are more than a quarter of what is kept."""
    model = Model(limits=ModelLimits(max_sessions_per_host=4))
    for i, script in enumerate([REJECTED] * 3 + [ACCEPTED] * 3):
        play(model, i, script)
    assert kept_ids(model) == [0, 1, 2, 5]  # the latest accepted one stays visible
    play(model, 6, REJECTED)
    assert kept_ids(model) == [1, 2, 5, 6]  # now the oldest rejected one goes
    play(model, 7, REJECTED, client="192.168.0.6")
    assert model.hosts["192.168.0.5"].sessions_evicted == 3
    assert model.hosts["192.168.0.5"].rejected_sessions == 4


def test_global_budgets_by_count_and_bytes() -> None:
    model = Model(limits=ModelLimits(max_sessions=5))
    for i in range(4):
        play(model, i, ACCEPTED, client=f"192.168.0.{10 + i}")
    for i in range(4, 8):
        play(model, i, REJECTED, client=f"192.168.0.{10 + i}")
    # others were more than a quarter: the oldest of them went, the rejected ones stayed
    assert sorted(model.finished) == [3, 4, 5, 6, 7]
    one = model.finished[3].footprint()
    model = Model(limits=ModelLimits(max_kept_bytes=one * 5 // 2))
    for i in range(6):
        play(model, i, ACCEPTED)
    assert kept_ids(model) == [4, 5] and model.kept_bytes <= one * 5 // 2
    assert len(model.finished) + model.sessions_evicted == model.sessions_total == 6
    assert model.kept_bytes == sum(s.footprint() for s in model.finished.values())


def test_aggregates_stay_exact_when_sessions_and_server_rows_go() -> None:
    model = Model(limits=ModelLimits(max_sessions=2, max_servers_per_host=2))
    for i in range(10):
        play(model, i, REJECTED if i % 2 else ACCEPTED, server=f"198.51.100.{i % 5}")
    host = model.hosts["192.168.0.5"]
    assert (host.sessions, host.rejected_sessions, host.accepted_messages) == (10, 5, 5)
    assert host.destinations == 5 and host.destinations_uncounted == 0
    assert list(host.servers) == ["198.51.100.3", "198.51.100.4"]  # the most recent
    assert sum(s.sessions for s in host.servers.values()) + host.servers_dropped == 10
    assert model.servers["198.51.100.4"].sessions == 2
    assert model.servers["198.51.100.4"].lan_clients == 1


def test_destinations_past_their_byte_budget_are_counted() -> None:
    model = Model(limits=ModelLimits(max_destination_bytes=8))  # two IPv4 addresses
    for i in range(4):
        play(model, i, ACCEPTED, server=f"198.51.100.{i}")
    host = model.hosts["192.168.0.5"]
    assert (host.destinations, host.destinations_uncounted) == (2, 2)


def test_address_set_is_exact() -> None:
    import random

    from smtptop.model import AddressSet

    rng = random.Random(1)
    found, truth = AddressSet(), set()
    for _ in range(5000):
        ip = (
            f"2001:db8::{rng.randrange(3000):x}"
            if rng.random() < 0.1
            else f"198.{rng.randrange(18, 20)}.{rng.randrange(8)}.{rng.randrange(256)}"
        )
        assert (ip in found) == (ip in truth)
        if ip not in truth:
            found.add(ip)
            truth.add(ip)
    assert found.size == len(truth) and len(found._sorted) > 1000  # merged into the array


def test_summarised_sessions_are_visible_in_every_report() -> None:
    model = Model(limits=ModelLimits(max_sessions_per_host=2, max_servers_per_host=1))
    for i in range(5):
        play(model, i, REJECTED, server=f"198.51.100.{i}")
    analysis = Analysis(model, Stats())
    data = json.loads(json.dumps(to_json(analysis)))
    assert data["stats"]["sessions_not_kept"] == 3 and data["stats"]["sessions_kept"] == 2
    (host,) = data["hosts"]
    assert (host["sessions"], host["sessions_not_kept"], host["servers_not_listed"]) == (5, 3, 4)
    assert len(data["sessions"]) == 2
    assert "3 older sessions summarised" in render_table(analysis)
