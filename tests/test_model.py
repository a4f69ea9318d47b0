"""The model's definitions (rejected, tempfailed, accepted), masking and bounds."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtptop.analysis import Analysis, analyze
from smtptop.model import Model, ModelLimits, Session, is_lan, mailbox
from smtptop.render import host_json, render_csv, render_table, to_json
from smtptop.schema import host_record, record_fields, session_record
from smtptop.smtp import Event, Side, SmtpParser
from smtptop.wire import encode

from smtptop.analyzer import Stats  # isort: skip

C, S = Side.CLIENT, Side.SERVER
ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Sup3r-S3cret-pw"


def fold(model: Model, session_id: int, event: Event) -> None:
    """Fold one parser event into its session, as the engine's rows carry it."""
    for row in encode([(session_id, event)]):
        model.fold(*row)


def play(
    model: Model,
    session_id: int,
    script,
    client="192.168.0.5",
    server="198.51.100.1",
    at: float = 0.0,
):
    """Run a dialogue through a parser into ``model`` as session ``session_id``, from ``at``."""
    model.open_session(session_id, (client, 40000 + session_id), (server, 25), at, midstream=False)
    parser = SmtpParser()
    for side, data in script:
        parser.receive_data(side, data, at + 1.0)
        for event in parser.events():
            fold(model, session_id, event)
    parser.close(at + 2.0)
    for event in parser.events():
        fold(model, session_id, event)
    model.close_session(session_id, at + 2.0, "closed", client_bytes=0, server_bytes=0, packets=0)
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
    assert (session.outcome_reply.code if session.outcome_reply else None) == decisive
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
    assert len(model.sessions()) == 3 and model.sessions_not_kept == 5
    assert model.sessions_total == 8
    last = model.sessions()[-1]
    assert len(last.transcript) == 10 and last.transcript_lines_not_kept > 0
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


def test_a_host_keeps_all_its_sessions_while_the_budget_has_room() -> None:
    """No per-host cap: 500 sessions of one host are all kept under the default budget."""
    model = Model()
    for i in range(500):
        play(model, i, REJECTED if i % 2 else ACCEPTED)
    play(model, 500, ACCEPTED, client="192.168.0.6")
    host = model.hosts["192.168.0.5"]
    assert (host.sessions, host.sessions_kept, host.sessions_not_kept) == (500, 500, 0)
    assert kept_ids(model) == list(range(500)) and model.sessions_not_kept == 0


def test_the_busiest_host_gives_up_sessions_and_keeps_its_rejected_ones_longest() -> None:
    """Over the budget, sessions go from the host keeping the most; quiet hosts keep all of
    theirs, even the oldest, and the busy host keeps its rejected sessions longest."""
    model = Model(limits=ModelLimits(max_sessions=20))
    quiet = [f"192.168.0.{n}" for n in (6, 7, 8)]
    for i in range(9):
        play(model, i, ACCEPTED, client=quiet[i % 3])
    for i in range(9, 69):
        play(model, i, REJECTED if i % 2 else ACCEPTED)  # 30 of each, alternating
    assert all(kept_ids(model, ip) == list(range(n, 9, 3)) for n, ip in enumerate(quiet))
    assert all(model.hosts[ip].sessions_not_kept == 0 for ip in quiet)
    busy = model.hosts["192.168.0.5"]
    assert (busy.sessions_kept, busy.sessions_not_kept) == (11, 49)
    kept = model.host_sessions(busy.ip)
    accepted = [s.id for s in kept if not s.rejected]
    rejected = [s.id for s in kept if s.rejected]
    assert accepted == [64, 66, 68]  # the newest: they went while over a quarter of 12
    assert rejected == list(range(53, 69, 2))  # the rest, going further back
    assert (busy.sessions, busy.rejected_sessions, busy.accepted_messages) == (60, 30, 30)
    play(model, 69, ACCEPTED, client=quiet[0])  # a quiet host grows: the busy one pays
    assert len(kept_ids(model, quiet[0])) == 4 and busy.sessions_not_kept == 50


def test_hosts_keeping_as_many_give_up_in_the_order_they_got_there() -> None:
    """A tie between hosts goes to the one that has kept that many longest, whatever its
    sessions' outcomes: rejected sessions are kept longest within a host, not across."""
    model = Model(limits=ModelLimits(max_sessions=5))
    for i in range(4):
        play(model, i, ACCEPTED, client=f"192.168.0.{10 + i}")
    for i in range(4, 8):
        play(model, i, REJECTED, client=f"192.168.0.{10 + i}")
    assert sorted(model.finished) == [3, 4, 5, 6, 7]
    assert [model.hosts[f"192.168.0.{10 + i}"].sessions_not_kept for i in range(8)] == [
        1, 1, 1, 0, 0, 0, 0, 0
    ]  # fmt: skip


def test_the_byte_budget_holds_and_takes_from_the_busiest_host() -> None:
    model = Model()
    one = play(model, 0, ACCEPTED).footprint()
    limit = one * 5 // 2
    model = Model(limits=ModelLimits(max_kept_bytes=limit))
    for i in range(6):
        play(model, i, ACCEPTED)
    assert kept_ids(model) == [4, 5] and model.kept_bytes <= limit
    assert len(model.finished) + model.sessions_not_kept == model.sessions_total == 6
    assert model.kept_bytes == sum(s.footprint() for s in model.finished.values())
    play(model, 6, ACCEPTED, client="192.168.0.6")
    assert kept_ids(model) == [5] and kept_ids(model, "192.168.0.6") == [6]
    assert model.kept_bytes <= limit


def test_the_bundled_capture_summarises_no_session() -> None:
    """Far below the budget: every host of the demo keeps every session."""
    model = analyze([str(ROOT / "smtptop" / "data" / "office.pcap")], workers=0).model
    assert model.sessions_total > 0 and model.sessions_not_kept == 0
    assert len(model.finished) == model.sessions_total
    assert all(
        h.sessions_not_kept == 0 and h.sessions_kept == h.sessions for h in model.hosts.values()
    )


def _events(script) -> list:
    parser = SmtpParser()
    for side, data in script:
        parser.receive_data(side, data, 1.0)
    parser.close(2.0)
    return list(parser.events())


SCRIPTS = (
    _events(REJECTED),
    _events(ACCEPTED),
    _events(greet(*MAIL, *(RCPT_OK * 30), *DATA, (S, b"250 queued\r\n"))),  # a long one
)


@dataclass(slots=True)
class Reference:
    """The eviction policy written plainly, in O(kept) per eviction, to check the model:
    groups of kept sessions per host ("" for sessions of hosts not kept), oldest first."""

    limits: ModelLimits
    kept: dict[str, list[Session]] = field(default_factory=dict)
    entered: dict[str, int] = field(default_factory=dict)  # when a group got its size
    evicted: dict[str, int] = field(default_factory=dict)
    tick: int = 0

    def keep(self, group: str, session: Session) -> None:
        self._resized(group, [*self.kept.get(group, []), session])
        while (
            sum(map(len, self.kept.values())) > self.limits.max_sessions
            or sum(s.footprint() for g in self.kept.values() for s in g)
            > self.limits.max_kept_bytes
        ):
            busiest = min(self.kept, key=lambda g: (-len(self.kept[g]), self.entered[g]))
            sessions = self.kept[busiest]
            others = [s for s in sessions if not s.rejected]
            rejected = [s for s in sessions if s.rejected]
            many_others = others and (not rejected or len(others) * 4 > len(sessions))
            goes = others[0] if many_others else rejected[0]
            self._resized(busiest, [s for s in sessions if s is not goes])
            self.evicted[busiest] = self.evicted.get(busiest, 0) + 1

    def _resized(self, group: str, sessions: list[Session]) -> None:
        self.tick += 1
        self.entered[group] = self.tick
        self.kept[group] = sessions
        if not sessions:
            del self.kept[group]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 3), st.sampled_from([0, 0, 0, 1, 1, 2])),
        min_size=10,
        max_size=150,
    ),
    st.integers(0, 20),
    st.integers(0, 80_000),
)
@example([(False, 0, 0)] * 5 + [(False, 0, 1)] * 2 + [(True, 0, 0)] * 7, 6, 80_000)  # 2 of 7
def test_random_eviction_counts_every_session_and_follows_the_policy(
    steps: list[tuple[bool, int, int]], max_sessions: int, max_kept_bytes: int
) -> None:
    """Random opens and closes from 4 clients, one past ``max_hosts``: the model keeps
    exactly what the plain policy keeps, the budgets hold, and kept + evicted + open equals
    the sessions seen, per host and in total."""
    limits = ModelLimits(max_sessions=max_sessions, max_kept_bytes=max_kept_bytes, max_hosts=3)
    model, reference, opened = Model(limits=limits), Reference(limits), []
    for number, (close, client, script) in enumerate(steps):
        if close and opened:
            session = model.open[opened.pop(client % len(opened))]
            model.close_session(
                session.id, 3.0, "closed", client_bytes=0, server_bytes=0, packets=0
            )
            reference.keep(session.client_ip if session.client_ip in model.hosts else "", session)
        else:
            ip = f"192.168.0.{client}"
            model.open_session(
                number, (ip, 40000 + number), ("198.51.100.1", 25), 0.0, midstream=False
            )
            for event in SCRIPTS[script]:
                fold(model, number, event)
            opened.append(number)
        assert sorted(model.finished) == sorted(s.id for g in reference.kept.values() for s in g)
        assert len(model.finished) <= max_sessions and model.kept_bytes <= max_kept_bytes
        assert model.kept_bytes == sum(s.footprint() for s in model.finished.values())
        assert (
            len(model.finished) + model.sessions_not_kept + len(model.open) == model.sessions_total
        )
        for host in model.hosts.values():
            assert host.sessions_not_kept == reference.evicted.get(host.ip, 0)
            assert host.sessions_kept + host.sessions_not_kept + host.open_sessions == host.sessions


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
    model = Model(limits=ModelLimits(max_sessions=2, max_servers_per_host=1))
    for i in range(5):
        play(model, i, REJECTED, server=f"198.51.100.{i}")
    analysis = Analysis(model, Stats())
    data = json.loads(json.dumps(to_json(analysis)))
    assert data["stats"]["sessions_not_kept"] == 3 and data["stats"]["sessions_kept"] == 2
    (host,) = data["hosts"]
    assert (host["sessions"], host["sessions_not_kept"], host["servers_not_listed"]) == (5, 3, 4)
    assert len(data["sessions"]) == 2
    assert "3 older sessions summarised" in render_table(analysis)


def noops(count: int, reply: bytes) -> list:
    return [step for _ in range(count) for step in ((C, b"NOOP\r\n"), (S, reply))]


CONTROL_REPLY = b"".join(b"250-" + b"\x01" * 1000 + b"\r\n" for _ in range(9)) + b"250 ok\r\n"


def test_footprint_counts_every_reply_kept() -> None:
    """Reply texts are held apart from the transcript: a session whose transcript is full
    still pays for each reply it keeps, at its escaped length."""
    limits = ModelLimits(max_transcript_lines=5, max_reply_bytes=1 << 20)
    short = play(Model(limits=limits), 1, greet(*noops(20, b"250 ok\r\n")))
    long = play(Model(limits=limits), 1, greet(*noops(20, CONTROL_REPLY)))
    assert len(short.replies) == len(long.replies) == 22
    assert len(short.transcript) == len(long.transcript) == 5
    texts = sum(len(r.text) for r in long.replies) - sum(len(r.text) for r in short.replies)
    assert texts > 20 * 4096  # each \x01 kept as the four characters of "\x01"
    assert long.footprint() - short.footprint() >= texts


def test_reply_text_is_cut_per_reply_and_per_session_and_says_so() -> None:
    limits = ModelLimits(max_reply_text=1000, max_reply_bytes=5000)
    model = Model(limits=limits)
    refusal = b"550-" + b"\x01" * 2000 + b"\r\n550 5.7.1 listed at zen.spamhaus.org\r\n"
    script = [*noops(10, CONTROL_REPLY), (C, b"MAIL FROM:<a@b>\r\n"), (S, refusal)]
    session = play(model, 1, greet(*script))
    texts = [r.text for r in session.replies[2:12]]
    assert texts[0] == "\\x01" * 250 + "...(35,011 characters not kept)"
    assert texts[-1] == "...(36,011 characters not kept)"  # the session's budget is spent
    # the budget, a marker per reply and the deciding reply's own room
    assert session.reply_bytes <= 5000 + 12 * 40 + 1000
    assert session.reply_characters_not_kept > 10 * 35000
    # the refusal that decides the outcome still gets its own room
    assert session.outcome_reply is session.replies[-1] and len(session.outcome_reply.text) > 1000
    ((code, text),) = model.hosts["192.168.0.5"].refusals
    assert code == 550 and len(text) <= 1024 + 40 and text.endswith("characters not kept)")


def test_refusal_texts_are_bounded_per_host() -> None:
    limits = ModelLimits(max_refusal_text=100, max_refusal_bytes=1000)
    model = Model(limits=limits)
    refusals = [
        step
        for i in range(30)
        for step in ((C, b"RCPT TO:<x@y>\r\n"), (S, b"550 %d " % i + b"x" * 300 + b"\r\n"))
    ]
    play(model, 1, greet(*MAIL, *refusals))
    host = model.hosts["192.168.0.5"]
    assert host.refusal_bytes <= 1000 and len(host.refusals) == 7
    assert host.refusals_not_kept == 30 - 7
    assert all(len(text) <= 100 + 40 for _, text in host.refusals)


def test_open_sessions_share_one_budget_and_give_it_back() -> None:
    model = Model(limits=ModelLimits(max_open_bytes=20_000))
    greeting = CONTROL_REPLY.replace(b"250", b"220")
    for i in range(3):
        model.open_session(
            i, ("192.168.0.5", 40000 + i), ("198.51.100.1", 25), 0.0, midstream=False
        )
        parser = SmtpParser()
        parser.receive_data(S, greeting, 1.0)
        for event in parser.events():
            fold(model, i, event)
    assert model.open_bytes == sum(s.held for s in model.open.values()) <= 20_000
    assert model.open[2].transcript_lines_not_kept > 0 and model.open[2].replies_not_kept == 1
    for i in range(3):
        model.close_session(i, 2.0, "closed", client_bytes=0, server_bytes=0, packets=0)
    assert model.open_bytes == 0
    assert model.kept_bytes == sum(s.footprint() for s in model.finished.values())


def test_each_record_is_built_on_its_own() -> None:
    """A host's or a session's record needs only its model objects, so that records can be
    written one by one: each is what the whole report holds for it."""
    analysis = analyze([str(ROOT / "smtptop" / "data" / "office.pcap")], workers=0)
    report = to_json(analysis)
    model, verdicts = analysis.model, analysis.verdicts()
    first = min(model.sessions(), key=lambda s: (s.start, s.id))
    written = json.loads(json.dumps(session_record(first), default=record_fields))
    assert written == report["sessions"][0]
    top = report["hosts"][0]
    host = model.hosts[top["ip"]]
    assert host_json(host, verdicts[host.ip], model.identities.get(host.ip)) == top
    rating = host_record(host, verdicts[host.ip]).verdict
    assert rating == "spambot" and type(rating) is str  # the value, not the enum


def test_the_timeline_counts_sessions_and_rejections_per_minute() -> None:
    model = Model()
    starts = [0, 10, 59, 60, 185, 185]  # seconds: minutes 0, 0, 0, 1, 3, 3
    for i, at in enumerate(starts):
        play(model, i, REJECTED if i % 2 else ACCEPTED, at=1_800_000_000 + at)
    timeline = model.hosts["192.168.0.5"].timeline
    first = 1_800_000_000 // 60
    width, sessions, rejected = timeline.window(first, first + 4, 30)
    assert (width, sessions, rejected) == (1, [3, 1, 0, 2], [1, 1, 0, 1])
    assert model.timeline_bins == timeline.bins == 4


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-(10**7), 10**7), st.booleans()), min_size=1, max_size=300),
    st.integers(2, 40),
)
def test_timeline_bins_widen_within_their_bound_and_lose_no_session(events, most) -> None:
    from smtptop.model.compact import Timeline

    timeline = Timeline()
    bins = 0
    for minute, rejected in events:
        bins += timeline.add(minute * 60.0 + 30, rejected, most)
        assert bins == timeline.bins <= most
        assert timeline.first % timeline.width == 0
    low, high = min(m for m, _ in events), max(m for m, _ in events)
    width, sessions, rejected_bins = timeline.window(low, high + 1, 10**9)
    assert width == timeline.width
    assert sum(sessions) == sum(1 for _, r in events if not r)
    assert sum(rejected_bins) == sum(1 for _, r in events if r)
    for cut in (2, 7, 30):
        _, narrow, _ = timeline.window(low, high + 1, cut)
        assert len(narrow) <= cut and sum(narrow) == sum(sessions)
    start = low - low % width  # each event sits in the bin its minute falls in
    for minute in {m for m, r in events if not r}:
        assert sessions[(minute - start) // width] > 0


def test_timelines_widen_when_their_budget_for_all_hosts_is_spent() -> None:
    model = Model(limits=ModelLimits(max_timeline_bins=6))
    for i in range(12):
        play(model, i, ACCEPTED, client=f"192.168.0.{i % 2 + 5}", at=i * 600.0)
    assert model.timeline_bins <= 6
    for ip in ("192.168.0.5", "192.168.0.6"):
        timeline = model.hosts[ip].timeline
        assert timeline.width > 1
        assert sum(timeline.window(0, 200, 100)[1]) == 6  # widened, every session counted
