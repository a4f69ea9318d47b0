"""The expectation parsers: each format on small samples, then the whole corpus cross-checked
against INDEX.md's tshark-derived columns and across peers that saw the same session."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from . import expected
from .expected import CaptureExpectation, ExpectedSession, IndexRow, Match

ROOT = expected.corpus_root()
needs_corpus = pytest.mark.skipif(
    not (ROOT / "INDEX.md").is_file(), reason=f"no corpus at {ROOT} (set SMTPTOP_CORPUS)"
)

ZEEK_SMTP_LOG = "\n".join(
    [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#fields\tuid\ttrans_depth\thelo\tmailfrom\trcptto\tlast_reply\ttls",
        "C1\t1\tbox\ta@x\tb@x,c@x\t250 2.0.0 queued\tF",
        "C1\t2\tbox\t-\t(empty)\t250 OK\tF",
        "C1\t2\tbox\td@x\te@x\t221 bye\tF",
    ]
)


def test_zeek_log_special_values_and_sets() -> None:
    log = expected.parse_zeek_log(ZEEK_SMTP_LOG)
    assert log.fields[:3] == ["uid", "trans_depth", "helo"]
    first, second, _ = log.rows
    assert log.items(first, "rcptto") == ["b@x", "c@x"]
    assert second["mailfrom"] is None
    assert second["rcptto"] == ""
    assert log.items(second, "rcptto") == []


def test_zeek_cut_output_takes_its_first_line_as_header() -> None:
    log = expected.parse_zeek_log("### BTest baseline\nuid\tservice\thistory\nC1\tsmtp\tShAdDaFf\n")
    assert log.rows == [{"uid": "C1", "service": "smtp", "history": "ShAdDaFf"}]


def test_zeek_rows_merge_into_one_session() -> None:
    log = expected.parse_zeek_log(ZEEK_SMTP_LOG)
    rows = list(enumerate(log.rows, start=1))
    session = expected.zeek_session_from_rows(rows, log, "smtp.log", set())
    assert session.zeek_rows == (1, 2, 3)
    assert session.mail_from is not None
    assert session.mail_from.values == ("a@x", "d@x")
    assert session.rcpt_to is not None
    assert set(session.rcpt_to.values) == {"b@x", "c@x", "e@x"}
    assert session.rcpt_count == (3, None)
    # Row 1 ended with a message (row 2 is one transaction deeper); row 2 was flushed by the
    # next MAIL FROM with its 250 from RSET, row 3 ended at QUIT: one message accepted.
    assert session.accepted == (1, 1)
    assert session.reply_codes is not None
    assert session.reply_codes.values == (250, 250, 221)


def test_zeek_event_dumps_group_reply_lines() -> None:
    out = "\n".join(
        [
            "smtp_reply, C1, F, 220, >, mx ESMTP",
            "smtp_request, C1, T, EHLO, box",
            "smtp_reply, C1, F, 250, EHLO, mx, hello",
            "smtp_reply, C1, F, 250, EHLO, PIPELINING",
            "smtp_request, C1, T, MAIL, FROM:<a@x> SIZE=10",
            "smtp_reply, C1, F, 250, MAIL, ok",
            "smtp_request, C1, T, RCPT, TO:<b@x>",
            "smtp_reply, C1, F, 250, RCPT, ok",
            "smtp_request, C1, T, BDAT, 5 LAST",
            "smtp_reply, C1, F, 250, BDAT, queued",
            "smtp_request, C1, T, QUIT, ",
            "C2, T, MAIL, FROM:<>",
        ]
    )
    events = expected.parse_zeek_out(out)
    assert [event.uid for event in events].count("C2") == 1
    assert events[2].text == "mx, hello"
    session = expected.zeek_session_from_events(
        [event for event in events if event.uid == "C1"], "out", with_replies=True
    )
    assert session.helo == "box"
    assert session.reply_codes is not None
    assert session.reply_codes.values == (220, 250, 250, 250, 250)
    assert session.accepted == (1, 1)
    assert session.mail_from is not None
    assert session.mail_from.values == ("a@x",)


@pytest.mark.parametrize(
    ("argument", "address"),
    [
        ("FROM: <gurpartap@patriots.in>", "gurpartap@patriots.in"),
        ("From:<a@b> BODY=8BITMIME SIZE=4333", "a@b"),
        ("to:<bob@example.com>", "bob@example.com"),
        ("FROM:<>", ""),
        ("<alice@example.com>", "alice@example.com"),
        ("FROM:bare@host", "bare@host"),
    ],
)
def test_mailbox(argument: str, address: str) -> None:
    assert expected.mailbox(argument) == address


def test_transcript_pairs_replies_in_order() -> None:
    readme = "\n".join(
        [
            "Intro.",
            "```",
            "<--- 220 mx ESMTP",
            "---> EHLO box",
            "<--- 250-mx",
            "<--- 250 PIPELINING",
            "---> mail from:<a@x>",
            "---> rcpt to:<b@x>",
            "---> data          *** dropped here ***",
            "<--- 250 2.1.0 Ok",
            "<--- 250 2.1.5 Ok",
            "<--- 354 go ahead",
            "---> (message body)",
            "---> .",
            "<--- 250 queued",
            "---> ehlo",
            "<--- 501-mx (multiline)",
            "",
            "---> BDAT 0 LAST",
            "<--- 550 no",
            "```",
        ]
    )
    transcript = expected.parse_transcript(readme)
    assert transcript is not None
    assert transcript.complete
    assert transcript.codes == [220, 250, 250, 250, 354, 250, 501, 550]
    assert transcript.helos == ["box"]  # the empty EHLO keeps the known name
    assert transcript.mail_from == ["a@x"]
    assert transcript.rcpt_to == ["b@x"]
    assert transcript.accepted == 1
    assert expected.parse_transcript("No dialog here.\n```\nplain code\n```\n") is None


def test_suricata_requires() -> None:
    version = (8, 0, 7)
    assert expected._requires_ok({"min-version": "8.0.7"}, version)
    assert not expected._requires_ok({"min-version": 9}, version)
    assert not expected._requires_ok({"lt-version": "8.0.7"}, version)
    assert not expected._requires_ok({"version": 7}, version)
    assert expected._requires_ok({"version": 8}, version)


@pytest.fixture(scope="module")
def expectations() -> dict[str, CaptureExpectation]:
    return expected.load_expectations(ROOT)


@pytest.fixture(scope="module")
def index() -> dict[str, IndexRow]:
    return {row.capture: row for row in expected.index_rows(ROOT)}


def _on_our_ports(row: IndexRow) -> list[tuple[str, str, int]]:
    return [s for s in row.sessions if s[2] in expected.DEFAULT_PORTS]


@needs_corpus
def test_every_capture_has_peer_files(
    expectations: dict[str, CaptureExpectation], index: dict[str, IndexRow]
) -> None:
    assert len(index) >= 70
    for capture, exp in expectations.items():
        assert (ROOT / capture).is_file(), capture
        assert exp.sources, f"{capture}: no peer file read"


@needs_corpus
def test_captures_with_smtp_have_expectations(
    expectations: dict[str, CaptureExpectation], index: dict[str, IndexRow]
) -> None:
    for capture, row in index.items():
        exp = expectations[capture]
        if _on_our_ports(row):
            assert exp.min_sessions >= 1, capture
        else:  # only off-port SMTP (HTTP CONNECT, SOCKS5, port 8000): the peer's is excluded
            assert exp.excluded, capture
            assert exp.max_sessions == 0, capture


@needs_corpus
def test_session_bounds_hold_index_count(
    expectations: dict[str, CaptureExpectation], index: dict[str, IndexRow]
) -> None:
    for capture, exp in expectations.items():
        count = len(_on_our_ports(index[capture]))
        high = count if exp.max_sessions is None else exp.max_sessions
        assert exp.min_sessions <= count <= high, capture


@needs_corpus
def test_packet_counts_agree_with_index_frames(
    expectations: dict[str, CaptureExpectation], index: dict[str, IndexRow]
) -> None:
    counted = {capture: exp.packets for capture, exp in expectations.items() if exp.packets}
    assert counted
    for capture, packets in counted.items():
        assert packets == index[capture].frames, capture


@needs_corpus
def test_endpoints_agree_with_index(
    expectations: dict[str, CaptureExpectation], index: dict[str, IndexRow]
) -> None:
    checked = 0
    for capture, exp in expectations.items():
        for session in exp.sessions:
            if (key := session.key()) is not None:
                assert (key[0], key[2], key[3]) in index[capture].sessions, session.describe()
                checked += 1
    assert checked >= 60


@needs_corpus
def test_complete_transcripts_agree_with_index_codes(
    expectations: dict[str, CaptureExpectation], index: dict[str, IndexRow]
) -> None:
    complete = [
        (capture, session)
        for capture, exp in expectations.items()
        for session in exp.sessions
        if session.source.endswith("README.md")
        and session.reply_codes is not None
        and session.reply_codes.match is Match.EXACT
    ]
    assert len(complete) >= 5
    for capture, session in complete:
        assert session.reply_codes is not None
        assert Counter(session.reply_codes.values) == index[capture].reply_codes, capture


@needs_corpus
def test_zeek_last_reply_inference_matches_event_dumps(
    expectations: dict[str, CaptureExpectation],
) -> None:
    compared = 0
    for exp in expectations.values():
        by_connection: dict[object, list[ExpectedSession]] = defaultdict(list)
        for session in exp.sessions:
            if session.accepted is not None and session.key() is not None:
                by_connection[session.key()].append(session)
        for sessions in by_connection.values():
            rows = [s for s in sessions if s.zeek_rows]
            dumps = [s for s in sessions if s.source.endswith(("/out", "smtp-events.json"))]
            for row_session in rows:
                for dump in dumps:
                    assert row_session.accepted == dump.accepted, row_session.describe()
                    compared += 1
    assert compared >= 8


@needs_corpus
def test_disabled_analyzer_rows_are_a_prefix_of_the_default_ones() -> None:
    def rows(name: str) -> list[dict[str, str | None]]:
        path = ROOT / "baselines" / f"scripts.base.protocols.smtp.{name}" / "smtp.log"
        return expected.parse_zeek_log(path.read_text(encoding="utf-8")).rows

    default, disabled = (
        rows("mail-transactions-invalid"),
        rows("mail-transactions-invalid-disable-analyzer"),
    )
    assert 0 < len(disabled) < len(default)
    assert default[: len(disabled)] == disabled


@needs_corpus
def test_suricata_and_zeek_agree_on_the_wireshark_wiki_session(
    expectations: dict[str, CaptureExpectation],
) -> None:
    # INDEX: Suricata's bug-3616 pcap is the same first session as Zeek's smtp.pcap.
    suricata = expectations["other/OISF-suricata-verify/bug-3616-smtp/input.pcap"].sessions
    zeek = expectations["traces/smtp.pcap"].sessions
    named = [s for s in suricata if s.key() is not None and s.helo is not None]
    assert named
    for session in named:
        same = [z for z in zeek if z.key() == session.key() and z.zeek_rows]
        assert same, session.describe()
        assert all(z.helo == session.helo for z in same)
        assert session.mail_from is not None
        assert all(
            z.mail_from is not None and z.mail_from.values == session.mail_from.values for z in same
        )


@needs_corpus
def test_every_peer_file_is_read_or_explained(expectations: dict[str, CaptureExpectation]) -> None:
    accounted = {
        text.split(":", 1)[0].split(" ", 1)[0]
        for exp in expectations.values()
        for text in exp.sources + exp.ignored
    }
    files = [
        *ROOT.glob("baselines/*/*"),
        *ROOT.glob("other/OISF-suricata-verify/*/*.yaml"),
        *ROOT.glob("other/OISF-suricata-verify/*/README.md"),
        *ROOT.glob("other/arkime-arkime/*.test"),
        *ROOT.glob("other/ntop-nDPI/*.out"),
    ]
    traceless = set()
    for path in files:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith("baselines/") and expected.zeek_trace(path.parent) is None:
            traceless.add(path.parent.name)  # cluster tests fed by script events, no pcap
            continue
        assert rel in accounted, rel
    assert traceless == {
        "scripts.policy.frameworks.intel.seen.smtp-cluster",
        "scripts.policy.frameworks.intel.seen.manage-event-groups.basic-smtp",
    }
