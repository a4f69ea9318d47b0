"""The sans-I/O SMTP parser: events, pairing, bodies, bounds; fed whole, byte by byte, split."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtptop.smtp import (
    AuthResponse,
    Command,
    Gap,
    MessageEnd,
    ParserLimits,
    Reply,
    Side,
    SmtpParser,
    TlsStarted,
    Violation,
    ViolationKind,
)

C, S = Side.CLIENT, Side.SERVER
Script = list[tuple[Side, bytes]]


def feed(script: Script, *, chunk: int | None = None, midstream: bool = False, **limits):
    """Run a script through a fresh parser, cutting each direction's data into chunks."""
    parser = SmtpParser(midstream=midstream, limits=ParserLimits(**limits))
    for side, data in script:
        step = chunk or len(data) or 1
        for i in range(0, len(data), step):
            parser.receive_data(side, data[i : i + step], 0.0)
    parser.close(0.0)
    return parser.events()


def feed_split(script: Script, cut: int):
    """Feed each message cut in two at ``cut`` (or whole when shorter)."""
    parser = SmtpParser()
    for side, data in script:
        parser.receive_data(side, data[:cut], 0.0)
        parser.receive_data(side, data[cut:], 0.0)
    parser.close(0.0)
    return parser.events()


def replies(events) -> list[tuple[int, str | None]]:
    """(code, what it answers) per reply: the verb, '.', 'auth', 'greeting' or None."""
    out = []
    for e in events:
        if isinstance(e, Reply):
            req = e.request
            if e.greeting:
                what = "greeting"
            elif isinstance(req, Command):
                what = req.verb
            elif isinstance(req, MessageEnd):
                what = "."
            elif isinstance(req, AuthResponse):
                what = "auth"
            else:
                what = None
            out.append((e.code, what))
    return out


def commands(events) -> list[str]:
    return [e.verb for e in events if isinstance(e, Command)]


FULL: Script = [
    (S, b"220 mx.example.net ESMTP Postfix\r\n"),
    (C, b"EHLO pc1.office.lan\r\n"),
    (S, b"250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n"),
    (C, b"MAIL FROM:<alice@office.example> SIZE=300\r\n"),
    (S, b"250 2.1.0 Ok\r\n"),
    (C, b"RCPT TO:<bob@example.org>\r\n"),
    (S, b"250 2.1.5 Ok\r\n"),
    (C, b"DATA\r\n"),
    (S, b"354 End data with <CR><LF>.<CR><LF>\r\n"),
    (
        C,
        b"From: alice@office.example\r\nSubject: hello\r\n..dotted: header\r\n\r\n"
        b"body line\r\n..a stuffed line\r\n.\r\n",
    ),
    (S, b"250 2.0.0 Ok: queued as 4ABC\r\n"),
    (C, b"QUIT\r\n"),
    (S, b"221 2.0.0 Bye\r\n"),
]


def test_full_session_events() -> None:
    events = feed(FULL)
    assert commands(events) == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert replies(events) == [
        (220, "greeting"),
        (250, "EHLO"),
        (250, "MAIL"),
        (250, "RCPT"),
        (354, "DATA"),
        (250, "."),
        (221, "QUIT"),
    ]
    ehlo_reply = [e for e in events if isinstance(e, Reply)][1]
    assert ehlo_reply.lines == (b"mx.example.net", b"PIPELINING", b"SIZE 10240000", b"8BITMIME")
    (end,) = [e for e in events if isinstance(e, MessageEnd)]
    assert end.complete
    assert end.headers == (b"From: alice@office.example", b"Subject: hello", b".dotted: header")
    body = FULL[9][1]
    assert end.size == len(body) - len(b".\r\n")
    assert not [e for e in events if isinstance(e, Violation)]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_same_events_in_any_chunking(chunk: int) -> None:
    assert feed(FULL, chunk=chunk) == feed(FULL)


def test_same_events_split_at_every_position() -> None:
    whole = feed(FULL)
    longest = max(len(data) for _, data in FULL)
    for cut in range(longest + 1):
        assert feed_split(FULL, cut) == whole, cut


def test_pipelined_commands_pair_first_in_first_out() -> None:
    events = feed(
        [
            (S, b"220 mx ESMTP\r\n"),
            (C, b"EHLO h.example\r\n"),
            (S, b"250 mx\r\n"),
            (C, b"MAIL FROM:<a@x.example>\r\nRCPT TO:<b@y.example>\r\nRCPT TO:<c@y.example>\r\n"),
            (C, b"DATA\r\n"),
            (S, b"250 ok\r\n250 ok\r\n550 5.1.1 <c@y.example>: user unknown\r\n354 go\r\n"),
            (C, b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n"),
            (S, b"250 queued\r\n221 bye\r\n"),
        ]
    )
    assert replies(events)[2:] == [
        (250, "MAIL"),
        (250, "RCPT"),
        (550, "RCPT"),
        (354, "DATA"),
        (250, "."),
        (221, "QUIT"),
    ]


def test_rejected_data_returns_to_commands() -> None:
    events = feed(
        [
            (S, b"220 mx\r\n"),
            (C, b"HELO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
            (
                S,
                b"250 hi\r\n250 ok\r\n550 no such user\r\n554 5.5.1 Error: no valid recipients\r\n",
            ),
            (C, b"QUIT\r\n"),
            (S, b"221 bye\r\n"),
        ]
    )
    assert commands(events) == ["HELO", "MAIL", "RCPT", "DATA", "QUIT"]
    assert (221, "QUIT") in replies(events)
    assert not [e for e in events if isinstance(e, MessageEnd)]


def test_empty_body_and_bare_lf_line_endings() -> None:
    events = feed(
        [
            (S, b"220 mx\n"),
            (C, b"HELO h\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\n"),
            (S, b"250 a\n250 b\n250 c\n354 d\n"),
            (C, b".\nDATA\n"),
            (S, b"250 e\n354 f\n"),
            (C, b"Subject: s\n\nbody\n.\nQUIT\n"),
            (S, b"250 g\n221 h\n"),
        ]
    )
    ends = [e for e in events if isinstance(e, MessageEnd)]
    assert [e.size for e in ends] == [0, len(b"Subject: s\n\nbody\n")]
    assert ends[1].headers == (b"Subject: s",)
    assert replies(events)[-3:] == [(354, "DATA"), (250, "."), (221, "QUIT")]


def test_body_that_looks_like_commands_is_not_parsed() -> None:
    events = feed(
        [
            (S, b"220 mx\r\n"),
            (C, b"HELO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
            (S, b"250 a\r\n250 b\r\n250 c\r\n354 d\r\n"),
            (C, b"Subject: s\r\n\r\nQUIT\r\nRCPT TO:<evil@x>\r\n.\r\n"),
            (S, b"250 ok\r\n"),
        ]
    )
    assert commands(events) == ["HELO", "MAIL", "RCPT", "DATA"]


BDAT: Script = [
    (S, b"220 mx ESMTP\r\n"),
    (C, b"EHLO h.example\r\n"),
    (S, b"250-mx\r\n250 CHUNKING\r\n"),
    (C, b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"),
    (S, b"250 ok\r\n250 ok\r\n"),
    (C, b"BDAT 21\r\nQUIT\r\n.\r\nRSET\r\nDATA\r\n"),
    (C, b"BDAT 7 LAST\r\nabc\r\n\r\nMAIL FROM:<e@f>\r\nBDAT 0 LAST\r\nQUIT\r\n"),
    (S, b"250 21 octets\r\n250 message ok\r\n250 ok\r\n250 empty ok\r\n221 bye\r\n"),
]


def test_bdat_chunks_are_skipped_by_size() -> None:
    events = feed(BDAT)
    assert commands(events) == ["EHLO", "MAIL", "RCPT", "BDAT", "BDAT", "MAIL", "BDAT", "QUIT"]
    assert replies(events)[-5:] == [
        (250, "BDAT"),
        (250, "BDAT"),
        (250, "MAIL"),
        (250, "BDAT"),
        (221, "QUIT"),
    ]


@pytest.mark.parametrize("chunk", [1, 5, 13])
def test_bdat_any_chunking(chunk: int) -> None:
    assert feed(BDAT, chunk=chunk) == feed(BDAT)


@pytest.mark.parametrize("arg", [b"5 X", b"-42 LAST", b"15555555557777777777777 LAST", b""])
def test_invalid_bdat_is_a_violation_not_a_chunk(arg: bytes) -> None:
    events = feed([(S, b"220 mx\r\n"), (C, b"BDAT " + arg + b"\r\nQUIT\r\n")])
    assert [(e.kind, e.reason) for e in events if isinstance(e, Violation)] == [
        (ViolationKind.BAD_BDAT, "invalid BDAT argument")
    ]
    assert commands(events) == ["BDAT", "QUIT"]


def test_auth_login_exchange_is_auth_responses() -> None:
    events = feed(
        [
            (S, b"220 mx\r\n"),
            (C, b"EHLO h\r\n"),
            (S, b"250 AUTH LOGIN PLAIN\r\n"),
            (C, b"AUTH LOGIN\r\n"),
            (S, b"334 VXNlcm5hbWU6\r\n"),
            (C, b"dXNlcg==\r\n"),
            (S, b"334 UGFzc3dvcmQ6\r\n"),
            (C, b"c2VjcmV0\r\n"),
            (S, b"235 2.7.0 Authentication successful\r\n"),
            (C, b"MAIL FROM:<a@b>\r\n"),
            (S, b"250 ok\r\n"),
        ]
    )
    auth = [e.line for e in events if isinstance(e, AuthResponse)]
    assert auth == [b"dXNlcg==", b"c2VjcmV0"]
    assert replies(events)[-3:] == [(334, "auth"), (235, "auth"), (250, "MAIL")]
    assert commands(events) == ["EHLO", "AUTH", "MAIL"]


def test_auth_lines_recognised_without_server_side() -> None:
    events = feed([(C, b"EHLO h\r\nAUTH LOGIN\r\ndXNlcg==\r\nc2VjcmV0\r\nMAIL FROM:<a@b>\r\n")])
    assert [e.line for e in events if isinstance(e, AuthResponse)] == [b"dXNlcg==", b"c2VjcmV0"]
    assert commands(events) == ["EHLO", "AUTH", "MAIL"]


def test_starttls_accepted_makes_the_rest_opaque() -> None:
    events = feed(
        [
            (S, b"220 mx\r\n"),
            (C, b"EHLO h\r\n"),
            (S, b"250 STARTTLS\r\n"),
            (C, b"STARTTLS\r\n"),
            (S, b"220 2.0.0 Ready to start TLS\r\n"),
            (C, b"\x16\x03\x01\x00\x05hello MAIL FROM:<x@y>\r\n"),
            (S, b"\x16\x03\x03\x00\x10 250 fake\r\n"),
        ]
    )
    assert [e for e in events if isinstance(e, TlsStarted)] == [TlsStarted(0.0, implicit=False)]
    assert commands(events) == ["EHLO", "STARTTLS"]
    assert replies(events)[-1] == (220, "STARTTLS")


def test_starttls_refused_stays_plaintext() -> None:
    events = feed(
        [
            (S, b"220 mx\r\n"),
            (C, b"STARTTLS\r\n"),
            (S, b"454 4.7.0 TLS not available\r\n"),
            (C, b"MAIL FROM:<a@b>\r\n"),
            (S, b"250 ok\r\n"),
        ]
    )
    assert not [e for e in events if isinstance(e, TlsStarted)]
    assert replies(events) == [(220, "greeting"), (454, "STARTTLS"), (250, "MAIL")]


def test_implicit_tls_client_with_plaintext_server() -> None:
    events = feed(
        [
            (C, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
            (S, b"220 mail.example ESMTP\r\n500 5.5.2 Error: bad syntax\r\n"),
        ]
    )
    assert [e for e in events if isinstance(e, TlsStarted)] == [TlsStarted(0.0, implicit=True)]
    assert replies(events) == [(220, "greeting"), (500, None)]


def test_long_line_is_cut_and_memory_stays_bounded() -> None:
    parser = SmtpParser(limits=ParserLimits(max_line=1000))
    parser.receive_data(S, b"220 mx\r\n", 0.0)
    parser.receive_data(C, b"EHLO ", 0.0)
    for _ in range(10_000):
        parser.receive_data(C, b"A" * 1000, 0.0)
        assert len(parser._client.buf) <= 1000
    parser.receive_data(C, b"\r\nQUIT\r\n", 0.0)
    events = parser.events()
    ehlo = next(e for e in events if isinstance(e, Command) and e.verb == "EHLO")
    assert ehlo.truncated and len(ehlo.line) == 1000
    assert commands(events) == ["EHLO", "QUIT"]
    assert any(
        isinstance(e, Violation) and e.kind is ViolationKind.LONG_LINE and "1000" in e.reason
        for e in events
    )


def test_pending_commands_are_bounded() -> None:
    parser = SmtpParser(limits=ParserLimits(max_pending=100))
    for _ in range(1000):
        parser.receive_data(C, b"NOOP\r\n", 0.0)
        assert parser.pending <= 100
    violations = [e for e in parser.events() if isinstance(e, Violation)]
    assert len(violations) == 9


def test_server_that_is_not_smtp_is_marked_and_ignored() -> None:
    events = feed(
        [
            (S, b"SSH-2.0-OpenSSH_9.2\r\n"),
            (C, b"SSH-2.0-PuTTY\r\n"),
            (S, b"250 looks like smtp\r\n"),
        ]
    )
    assert [(e.kind, e.reason) for e in events if isinstance(e, Violation)] == [
        (ViolationKind.SERVER_NOT_SMTP, "server does not speak SMTP")
    ]
    assert not replies(events)


def test_binary_client_stream_gives_up_after_a_few_lines() -> None:
    garbage = b"".join(bytes([1, 2, 3, 0, 65 + i]) + b"\r\n" for i in range(20))
    events = feed([(S, b"220 mx\r\n"), (C, garbage)])
    assert [(e.kind, e.reason) for e in events if isinstance(e, Violation)] == [
        (ViolationKind.CLIENT_NOT_SMTP, "client does not speak SMTP")
    ]
    assert len(commands(events)) == 8


def test_gap_in_client_commands_resyncs_on_a_known_verb() -> None:
    parser = SmtpParser()
    parser.receive_data(S, b"220 mx\r\n", 0.0)
    parser.receive_data(C, b"HELO h\r\nMAIL FROM:<a@", 1.0)
    parser.receive_gap(C, 100, 2.0)
    parser.receive_data(C, b"lf of a line\r\nrandom words\r\nRCPT TO:<c@d>\r\n", 3.0)
    parser.receive_data(S, b"250 hi\r\n250 ok\r\n", 4.0)
    events = parser.events()
    assert commands(events) == ["HELO", "MAIL", "RCPT"]
    mail = [e for e in events if isinstance(e, Command)][1]
    assert mail.truncated and mail.line == b"MAIL FROM:<a@"
    assert Gap(2.0, C, 100) in events
    assert replies(events) == [(220, "greeting"), (250, "HELO"), (250, "MAIL")]


def test_gap_inside_a_body_keeps_looking_for_its_end() -> None:
    parser = SmtpParser()
    parser.receive_data(S, b"220 mx\r\n", 0.0)
    parser.receive_data(C, b"HELO h\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n", 0.0)
    parser.receive_data(S, b"250 a\r\n250 b\r\n250 c\r\n354 d\r\n", 0.0)
    parser.receive_data(C, b"Subject: s\r\n\r\nfirst part", 0.0)
    parser.receive_gap(C, 1000, 0.0)
    parser.receive_data(C, b"last part\r\n.\r\nQUIT\r\n", 0.0)
    parser.receive_data(S, b"250 queued\r\n221 bye\r\n", 0.0)
    events = parser.events()
    (end,) = [e for e in events if isinstance(e, MessageEnd)]
    assert end.size == len(b"Subject: s\r\n\r\nfirst part") + 1000 + len(b"last part\r\n")
    assert replies(events)[-2:] == [(250, "."), (221, "QUIT")]


def test_reply_during_body_ends_a_body_whose_end_was_lost() -> None:
    parser = SmtpParser()
    parser.receive_data(S, b"220 mx\r\n", 0.0)
    parser.receive_data(C, b"HELO h\r\nDATA\r\n", 0.0)
    parser.receive_data(S, b"250 a\r\n354 go\r\n", 0.0)
    parser.receive_data(C, b"Subject: s\r\n\r\nbody", 0.0)
    parser.receive_gap(C, 50, 0.0)
    parser.receive_data(S, b"250 queued\r\n", 0.0)
    parser.receive_data(C, b"QUIT\r\n", 0.0)
    events = parser.events()
    (end,) = [e for e in events if isinstance(e, MessageEnd)]
    assert not end.complete
    assert replies(events)[-1] == (250, ".")
    assert commands(events)[-1] == "QUIT"


def test_midstream_pickup_ignores_half_lines_and_body_text() -> None:
    events = feed(
        [
            (C, b"rest of a body line\r\nmore body\r\n.\r\nQUIT\r\n"),
            (S, b"ueued as 123\r\n250 2.0.0 Ok: queued\r\n221 bye\r\n"),
        ],
        midstream=True,
    )
    assert commands(events) == ["QUIT"]
    assert replies(events) == [(250, None), (221, "QUIT")]


def test_greeting_after_pregreet_and_unsolicited_timeout() -> None:
    events = feed(
        [
            (C, b"EHLO eager.example\r\n"),
            (S, b"554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org\r\n"),
            (S, b"503 5.5.1 wait for the greeting\r\n"),
            (S, b"421 4.4.2 timeout\r\n"),
        ]
    )
    assert replies(events) == [(554, "greeting"), (503, "EHLO"), (421, None)]


def test_reply_lines_bounded_and_code_change_flagged() -> None:
    many = b"".join(b"250-line %d\r\n" % i for i in range(500)) + b"250 end\r\n"
    events = feed(
        [(S, b"220 mx\r\n"), (C, b"EHLO h\r\n"), (S, many + b"251-x\r\n252 y\r\n")],
        max_reply_lines=50,
    )
    reply = [e for e in events if isinstance(e, Reply)][1]
    assert len(reply.lines) == 50
    assert [e.reason for e in events if isinstance(e, Violation)] == [
        "continuation line with a different reply code"
    ]


def test_a_credential_that_reads_like_a_verb_is_still_a_credential() -> None:
    """AUTH LOGIN with the user and password sent without waiting: the password "MDM" is
    base64 ``TURN``, a verb; while AUTH awaits its answer it is an AUTH response.  A real
    QUIT after it stays a command."""
    events = feed(
        [
            (S, b"220 mx\r\n"),
            (C, b"AUTH LOGIN\r\nYWxpY2U=\r\nTURN\r\n"),
            (S, b"334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n235 ok\r\n"),
            (C, b"AUTH LOGIN\r\nQUIT\r\n"),
            (S, b"535 no\r\n221 bye\r\n"),
        ]
    )
    assert [e.line for e in events if isinstance(e, AuthResponse)] == [b"YWxpY2U=", b"TURN"]
    assert commands(events) == ["AUTH", "AUTH", "QUIT"]


def test_reply_bytes_bounded_while_collected() -> None:
    """A reply being collected holds at most ``max_reply_bytes``: a server of 100 long lines
    per reply, on every one of thousands of connections, cannot hold megabytes each."""
    long = b"".join(b"250-" + b"x" * 4000 + b"\r\n" for _ in range(99)) + b"250 end\r\n"
    events = feed([(S, b"220 mx\r\n"), (C, b"EHLO h\r\n"), (S, long)], max_reply_bytes=10_000)
    reply = [e for e in events if isinstance(e, Reply)][1]
    assert sum(map(len, reply.lines)) == 10_000
    assert [len(line) for line in reply.lines] == [4000, 4000, 2000]


def test_partial_lines_are_flushed_at_close() -> None:
    events = feed([(S, b"220 mx\r\n"), (C, b"QUIT"), (S, b"221 bye")])
    assert commands(events) == ["QUIT"]
    assert replies(events)[-1] == (221, "QUIT")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=20))
def test_random_chunk_sizes_give_the_same_events(sizes: list[int]) -> None:
    parser = SmtpParser()
    turn = 0
    for side, data in FULL + BDAT[1:]:
        pos = 0
        while pos < len(data):
            step = sizes[turn % len(sizes)]
            turn += 1
            parser.receive_data(side, data[pos : pos + step], 0.0)
            pos += step
    parser.close(0.0)
    whole = SmtpParser()
    for side, data in FULL + BDAT[1:]:
        whole.receive_data(side, data, 0.0)
    whole.close(0.0)
    assert parser.events() == whole.events()


FRAGMENTS = [
    b"DATA\r\n",
    b"354 go\r\n",
    b".\r\n",
    b"BDAT 10 LAST\r\n",
    b"AUTH LOGIN\r\n",
    b"334 x\r\n",
    b"STARTTLS\r\n",
    b"220 ok\r\n",
    b"250-a\r\n",
    b"\r\n.\r\n",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([C, S]),
            st.one_of(
                st.binary(max_size=300),
                st.sampled_from(FRAGMENTS),
            ),
        ),
        max_size=40,
    ),
    st.booleans(),
)
def test_arbitrary_input_never_raises(script: Script, midstream: bool) -> None:
    parser = SmtpParser(midstream=midstream, limits=ParserLimits(max_line=64, max_pending=8))
    for side, data in script:
        parser.receive_data(side, data, 0.0)
        assert len(parser._client.buf) <= 64 + 300 and len(parser._server.buf) <= 64 + 300
        assert parser.pending <= 8
    parser.receive_gap(C, 10, 0.0)
    parser.close(0.0)
    for event in parser.events():
        assert isinstance(
            event, (Command, AuthResponse, MessageEnd, Reply, TlsStarted, Gap, Violation)
        )


# --- command verbs however they are spaced ---------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"AUTH\tPLAIN AGFAYgBj", b"AUTH  PLAIN AGFAYgBj", b"auth plain AGFAYgBj",
     b"AUTH \t PLAIN\tAGFAYgBj", b" AUTH PLAIN AGFAYgBj", b"AUTH\x0bPLAIN AGFAYgBj"],
)  # fmt: skip
def test_auth_is_recognised_however_it_is_spaced(line: bytes) -> None:
    """The model masks the secrets of AUTH commands only: a tab must not hide one."""
    events = feed([(S, b"220 mx\r\n"), (C, line + b"\r\n"), (S, b"235 ok\r\n")])
    (auth,) = [e for e in events if isinstance(e, Command)]
    assert auth.verb == "AUTH"
    assert auth.arg.upper().split() == [b"PLAIN", b"AGFAYGBJ"]
    assert replies(events) == [(220, "greeting"), (235, "AUTH")]


def test_auth_login_spaced_with_tabs_makes_its_lines_auth_responses() -> None:
    events = feed(
        [
            (S, b"220 mx\r\n"),
            (C, b"AUTH\t\tLOGIN\r\n"),
            (S, b"334 VXNlcm5hbWU6\r\n"),
            (C, b"dXNlcg==\r\n"),
            (S, b"334 UGFzc3dvcmQ6\r\n"),
            (C, b"c2VjcmV0\r\n"),
            (S, b"235 ok\r\n"),
        ]
    )
    assert commands(events) == ["AUTH"]
    assert [e.line for e in events if isinstance(e, AuthResponse)] == [b"dXNlcg==", b"c2VjcmV0"]


def test_pipelined_auth_with_odd_spacing() -> None:
    """AUTH with an initial response, pipelined with MAIL and RCPT spaced with tabs."""
    events = feed(
        [
            (S, b"220 mx\r\n"),
            (C, b"EHLO\th\r\nAUTH\tPLAIN AGFAYgBj\r\nMAIL\tFROM: <a@b>\r\nRCPT  TO:<c@d>\r\n"),
            (S, b"250 mx\r\n235 ok\r\n250 ok\r\n250 ok\r\n"),
        ]
    )
    assert [(e.verb, e.arg.strip()) for e in events if isinstance(e, Command)] == [
        ("EHLO", b"h"),
        ("AUTH", b"PLAIN AGFAYgBj"),
        ("MAIL", b"FROM: <a@b>"),
        ("RCPT", b"TO:<c@d>"),
    ]
    assert not [e for e in events if isinstance(e, AuthResponse)]
    assert replies(events)[1:] == [(250, "EHLO"), (235, "AUTH"), (250, "MAIL"), (250, "RCPT")]


# --- runs of empty lines ---------------------------------------------------------------------


def notes(events) -> list[tuple[Side, str]]:
    return [(e.side, e.reason) for e in events if isinstance(e, Violation)]


def test_a_flood_of_line_feeds_is_one_command_and_one_note() -> None:
    """4 MB of bare LFs in 65,000-byte segments: every byte was an event (30 MB took 74 s);
    now the run is the first empty line and one note with the exact count."""
    flood = b"\n" * 65_000
    parser = SmtpParser()
    parser.receive_data(S, b"220 mx\r\n", 0.0)
    for _ in range(64):
        parser.receive_data(C, flood, 1.0)
    parser.receive_data(C, b"\r\n\r\nQUIT\r\n", 2.0)
    parser.receive_data(S, b"\n" * 65_000 + b"\r\n" * 1000 + b"221 bye\r\n", 3.0)
    parser.close(4.0)
    events = parser.events()
    assert len(events) == 8
    assert [e.verb for e in events if isinstance(e, Command)] == ["", "QUIT"]
    assert notes(events) == [
        (C, "4,160,002 empty lines"),
        (C, "too many commands without a reply"),  # the run waits for 1,000 replies at most
        (S, "malformed reply line"),
        (S, "66,000 empty lines"),
    ]
    assert [(e.code, e.request.verb) for e in events if isinstance(e, Reply) and e.request] == [
        (221, "QUIT")
    ]


def test_each_empty_line_waits_for_its_reply() -> None:
    """Servers answer an empty line (Postfix: 500 5.5.2), so each of a run is paired with a
    reply, and the command after it gets its own."""
    events = feed(
        [
            (S, b"220 mx\r\n"),
            (C, b"\r\n\n\r\nMAIL FROM:<a@b>\r\n"),
            (S, b"500 bad syntax\r\n" * 3 + b"250 ok\r\n"),
        ]
    )
    assert replies(events) == [(220, "greeting"), (500, ""), (500, ""), (500, ""), (250, "MAIL")]
    assert notes(events) == [(C, "3 empty lines")]
    assert commands(events) == ["", "MAIL"]


def test_one_empty_line_is_a_command_without_a_note() -> None:
    events = feed([(S, b"220 mx\r\n"), (C, b"\r\nQUIT\r\n"), (S, b"500 what\r\n221 bye\r\n")])
    assert commands(events) == ["", "QUIT"]
    assert replies(events) == [(220, "greeting"), (500, ""), (221, "QUIT")]
    assert not notes(events)


def test_empty_lines_inside_auth_repeat_the_empty_response() -> None:
    events = feed(
        [
            (S, b"220 mx\r\n"),
            (C, b"AUTH LOGIN\r\n"),
            (S, b"334 VXNlcm5hbWU6\r\n"),
            (C, b"\r\n\r\n\r\n"),
            (S, b"334 UGFzc3dvcmQ6\r\n535 no\r\n500 what\r\n"),
        ]
    )
    assert [e.line for e in events if isinstance(e, AuthResponse)] == [b""]
    assert replies(events)[2:] == [(334, "auth"), (535, "auth"), (500, "auth")]
    assert notes(events) == [(C, "3 empty lines")]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, None])
def test_runs_of_empty_lines_in_any_chunking(chunk: int | None) -> None:
    """Bare LFs, CRLFs and lines of CRs, in any cutting: the same events."""
    script = [
        (S, b"220 mx\r\n"),
        (C, b"EHLO h\r\n\n\r\n\r\r\n\n\r\n"),
        (S, b"250 mx\r\n\r\n\n\n"),
        (C, b"\n\nMAIL FROM:<a@b>\r\n\r\r\r\n\n"),
        (S, b"500 x\r\n" * 5),
    ]
    events = feed(script, chunk=chunk)
    assert events == feed(script)
    assert notes(events) == [
        (C, "5 empty lines"),
        (S, "malformed reply line"),
        (S, "3 empty lines"),
        (C, "2 empty lines"),
        (C, "2 empty lines"),
    ]


def test_line_feeds_in_a_body_are_counted_not_parsed() -> None:
    flood = b"\n" * 65_000
    parser = SmtpParser()
    for side, data in [(S, b"220 mx\r\n"), (C, b"DATA\r\n"), (S, b"354 go\r\n")]:
        parser.receive_data(side, data, 0.0)
    parser.receive_data(C, b"Subject: x\r\n", 0.0)
    for _ in range(16):
        parser.receive_data(C, flood, 0.0)
    parser.receive_data(C, b".\r\n", 0.0)
    parser.close(0.0)
    (end,) = [e for e in parser.events() if isinstance(e, MessageEnd)]
    assert end.complete and end.size == len(b"Subject: x\r\n") + 16 * 65_000
    assert end.headers == (b"Subject: x",)
