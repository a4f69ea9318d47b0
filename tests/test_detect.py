"""Verdicts on scenario captures: the spambot is named with its reasons; normal life is not."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import sample
import synth
from conformance.expected import corpus_root

from smtptop.analysis import analyze, ranked_hosts
from smtptop.analyzer import Analyzer
from smtptop.capture import CaptureFile
from smtptop.detect import DetectConfig, Detector
from smtptop.model import Model, apply
from smtptop.render import to_json
from smtptop.wire import encode

CONFORMANCE = corpus_root()
SMARTHOST = "198.51.100.25"
SPAMHAUS = (
    b"554 5.7.1 Service unavailable; Client host [203.0.113.77] blocked using zen.spamhaus.org\r\n"
)


class Office:
    """Builds a capture of an office LAN, session by session, in time order."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.frames: list[synth.Frame] = []
        self.clock = 1_800_000_000.0
        self.port = 40000

    def session(self, client: str, server: str, script, *, port: int = 25, gap: float = 20.0):
        self.clock += gap
        self.port += 1
        conv = synth.Conversation(client, self.port, server, port, start=self.clock,
                                  seed=self.port)  # fmt: skip
        conv.smtp(script)
        conv.close()
        self.frames += conv.frames

    def normal_mail(self, client: str, name: str, server: str = SMARTHOST, port: int = 587):
        self.session(
            client,
            server,
            [
                ("S", b"220 smtp.isp-mail.example ESMTP Postfix\r\n"),
                ("C", f"EHLO {name}\r\n".encode()),
                ("S", b"250-smtp.isp-mail.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"),
                ("C", b"MAIL FROM:<staff@studio-example.com>\r\n"),
                ("S", b"250 2.1.0 Ok\r\n"),
                ("C", b"RCPT TO:<client@example.org>\r\n"),
                ("S", b"250 2.1.5 Ok\r\n"),
                ("C", b"DATA\r\n"),
                ("S", b"354 go ahead\r\n"),
                ("C", b"Subject: invoice\r\n\r\nPlease find it attached.\r\n.\r\n"),
                ("S", b"250 2.0.0 Ok: queued\r\n"),
                ("C", b"QUIT\r\n"),
                ("S", b"221 2.0.0 Bye\r\n"),
            ],
            port=port,
        )

    def spam(self, client: str, server: str, helo: str, sender: str, reply: bytes | None):
        """A spambot session: HELO, forged sender, several recipients, no QUIT."""
        script = [
            ("S", f"220 mx.{server.replace('.', '-')}.example ESMTP\r\n".encode()),
            ("C", f"HELO {helo}\r\n".encode()),
            ("S", b"250 hello\r\n"),
            ("C", f"MAIL FROM:<{sender}>\r\n".encode()),
            ("S", b"250 ok\r\n"),
        ]
        for n in range(3):
            script += [("C", f"RCPT TO:<user{n}@{server}.example>\r\n".encode())]
            script += [("S", reply or b"250 ok\r\n")]
        self.session(client, server, script, gap=self.rng.uniform(2, 8))

    def write(self, tmp_path: Path, name: str = "office.pcap") -> str:
        path = tmp_path / name
        synth.write_pcap(path, sorted(self.frames, key=lambda f: f.ts), synth.LINKTYPE_ETHERNET)
        return str(path)


def office_day(office: Office) -> None:
    for _ in range(3):
        for i, name in enumerate(("reception-pc", "accounts-pc", "design-ws1", "boss-laptop")):
            office.normal_mail(f"192.168.0.{10 + i}", f"{name}.studio.lan")


def bot_burst(office: Office, count: int, *, start: int = 0) -> None:
    helos = ["VKDVZAHG", "192.168.0.108", "outlook.com", "[203.0.113.77]", "qwrtzplk"]
    for i in range(start, start + count):
        reply = SPAMHAUS if i % 3 == 0 else (b"450 4.7.1 greylisted\r\n" if i % 5 == 0 else None)
        sender = (
            f"promo{i}@" + ("dhl.com", "paypal.com", "bank-secure.top", "wetransfer.com")[i % 4]
        )
        office.spam("192.168.0.108", f"203.0.113.{10 + i}", helos[i % len(helos)], sender, reply)


def verdicts_of(path: str, **config) -> dict[str, dict]:
    report = to_json(analyze([path], detect=DetectConfig(**config)))
    return {h["ip"]: h for h in report["hosts"]}


def test_office_alone_is_all_normal(tmp_path: Path) -> None:
    office = Office()
    office_day(office)
    hosts = verdicts_of(office.write(tmp_path))
    assert {h["verdict"] for h in hosts.values()} == {"normal"}
    assert all(h["score"] == 0 for h in hosts.values())


def test_office_with_a_bot_names_the_bot_and_only_the_bot(tmp_path: Path) -> None:
    office = Office()
    office_day(office)
    bot_burst(office, 30)
    path = office.write(tmp_path)
    hosts = verdicts_of(path)
    bot = hosts["192.168.0.108"]
    assert bot["verdict"] == "spambot"
    signals = {r["signal"] for r in bot["reasons"]}
    assert {"direct-to-mx", "many-destinations", "blocklist", "helo", "sender-domains"} <= signals
    blocklist = next(r for r in bot["reasons"] if r["signal"] == "blocklist")
    assert "Spamhaus" in blocklist["evidence"]
    helo = next(r for r in bot["reasons"] if r["signal"] == "helo")["evidence"]
    for kind in ("bare IP address", "no dot", "a big company's domain", "random-looking"):
        assert kind in helo
    assert bot["score"] == sum(r["points"] for r in bot["reasons"])
    assert all(h["verdict"] == "normal" for ip, h in hosts.items() if ip != "192.168.0.108")
    analysis = analyze([path])
    assert ranked_hosts(analysis.model, analysis.verdicts())[0].ip == "192.168.0.108"


def test_a_bot_that_also_uses_the_smarthost_is_still_found(tmp_path: Path) -> None:
    office = Office()
    office_day(office)
    for _ in range(3):
        office.normal_mail("192.168.0.108", "wxpanna.studio.lan")
    bot_burst(office, 12)
    hosts = verdicts_of(office.write(tmp_path))
    assert hosts["192.168.0.108"]["verdict"] == "spambot"
    assert hosts["192.168.0.10"]["verdict"] == "normal"


def internal_mail_server(office: Office, *, inbound: bool) -> None:
    """An office mail server: delivers to many MX hosts with a proper name, is polite."""
    for i in range(25):
        server = f"198.18.{i % 12}.25"
        office.session(
            "192.168.0.5",
            server,
            [
                ("S", b"220 mx.example.net ESMTP\r\n"),
                ("C", b"EHLO mail.studio-example.com\r\n"),
                ("S", b"250-mx.example.net\r\n250 PIPELINING\r\n"),
                ("C", b"MAIL FROM:<news@studio-example.com>\r\n"),
                ("S", b"250 ok\r\n"),
                ("C", b"RCPT TO:<someone@example.net>\r\n"),
                ("S", b"250 ok\r\n"),
                ("C", b"DATA\r\n"),
                ("S", b"354 go\r\n"),
                ("C", b"Subject: newsletter\r\n\r\nhi\r\n.\r\n"),
                ("S", b"250 ok\r\n"),
                ("C", b"QUIT\r\n"),
                ("S", b"221 bye\r\n"),
            ],
            gap=5.0,
        )
    if inbound:
        office.session(
            "198.18.40.7",
            "192.168.0.5",
            [("S", b"220 mail.studio-example.com ESMTP\r\n"), ("C", b"EHLO mx.example.net\r\n"),
             ("S", b"250 ok\r\n"), ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")],
        )  # fmt: skip


@pytest.mark.parametrize("how", ["named", "seen receiving mail"])
def test_a_legitimate_mail_server_is_not_a_spambot(how: str, tmp_path: Path) -> None:
    office = Office()
    office_day(office)
    internal_mail_server(office, inbound=how != "named")
    config = {"mail_servers": ("192.168.0.5",)} if how == "named" else {}
    hosts = verdicts_of(office.write(tmp_path), **config)
    assert hosts["192.168.0.5"]["verdict"] == "normal"


def test_a_bulk_sender_through_the_smarthost_is_normal(tmp_path: Path) -> None:
    office = Office()
    office_day(office)
    many = [("C", f"RCPT TO:<customer{i}@example.org>\r\n".encode()) for i in range(200)]
    script = [
        ("S", b"220 smtp.isp-mail.example ESMTP\r\n"),
        ("C", b"EHLO marketing-pc.studio.lan\r\n"),
        ("S", b"250-smtp.isp-mail.example\r\n250 PIPELINING\r\n"),
        ("C", b"MAIL FROM:<news@studio-example.com>\r\n"),
        ("S", b"250 ok\r\n"),
        *many,
        ("S", b"250 ok\r\n" * 200),
        ("C", b"DATA\r\n"),
        ("S", b"354 go\r\n"),
        ("C", b"Subject: November news\r\n\r\nhello\r\n.\r\n"),
        ("S", b"250 ok\r\n"),
        ("C", b"QUIT\r\n"),
        ("S", b"221 bye\r\n"),
    ]
    for _ in range(5):
        office.session("192.168.0.40", SMARTHOST, script, port=587)
    hosts = verdicts_of(office.write(tmp_path))
    assert hosts["192.168.0.40"]["verdict"] == "normal"
    assert hosts["192.168.0.40"]["recipients"] == 1000


def test_a_capture_begun_mid_burst(tmp_path: Path) -> None:
    office = Office()
    office_day(office)
    bot_burst(office, 20)
    start = min(f.ts for f in office.frames if b"HELO VKDVZAHG" in f.data) + 60
    office.frames = [f for f in office.frames if f.ts >= start]
    hosts = verdicts_of(office.write(tmp_path))
    assert hosts["192.168.0.108"]["verdict"] == "spambot"


def test_smarthost_named_by_greeting_or_address(tmp_path: Path) -> None:
    office = Office()
    office_day(office)
    path = office.write(tmp_path)
    for named in ("smtp.isp-mail.example", SMARTHOST):
        analysis = analyze([path], detect=DetectConfig(smarthosts=(named,)))
        assert analysis.detector is not None
        assert analysis.detector.smarthosts() == {SMARTHOST}
    analysis = analyze([path])
    assert analysis.detector is not None and analysis.detector.proposed_smarthost() == SMARTHOST


def test_sample_bot_is_marked_within_its_first_ten_sessions() -> None:
    """The bundled office: the infected PC is the first row, a spambot by its 10th session,
    named and with its MAC; nobody else is flagged."""
    truth = [s for s in sample.scenario().sessions if s.client == sample.INFECTED]
    tenth_end = sorted(s.start for s in truth)[9] + 30
    analyzer, model = Analyzer(), Model()
    detector = Detector(model)
    for record in CaptureFile(str(sample.DEFAULT_OUTPUT)):
        if record[0] > tenth_end:
            break
        analyzer.packet(*record)
        apply(model, encode(analyzer.take()))
    verdicts = detector.evaluate()
    bot = verdicts[sample.INFECTED]
    assert model.hosts[sample.INFECTED].sessions <= 12
    assert bot.verdict == "spambot"
    assert {"blocklist", "helo"} <= {r.signal for r in bot.reasons}
    assert all(v.verdict == "normal" for ip, v in verdicts.items() if ip != sample.INFECTED)
    identity = model.identities[sample.INFECTED]
    assert identity.name == sample.INFECTED_NAME
    assert identity.mac == sample.INFECTED_MAC.hex(":")


def test_report_carries_verdicts_names_and_mac() -> None:
    report = to_json(analyze([str(sample.DEFAULT_OUTPUT)]))
    first = report["hosts"][0]
    assert first["ip"] == sample.INFECTED and first["verdict"] == "spambot"
    assert first["names"]["dhcp-fqdn"] == sample.INFECTED_NAME
    assert first["mac"] == sample.INFECTED_MAC.hex(":")
    assert "vendor" in first and "dialect" in first
    assert all(h["verdict"] == "normal" for h in report["hosts"][1:])


NO_CORPUS = pytest.mark.skipif(
    not (CONFORMANCE / "INDEX.md").is_file(),
    reason=f"no corpus at {CONFORMANCE} (set $SMTPTOP_CORPUS)",
)


@NO_CORPUS
def test_corpus_ordinary_sessions_yield_no_spambot() -> None:
    """The public captures' ordinary mail sessions are no spambots; the malware-traffic
    capture (smtp-errors: spam to Yahoo with HELO [0.0.0.0], a forged DHL sender) and the
    forged-DHL session of smtp-data-rejected may be."""
    spam = {"172.16.2.159", "10.7.29.101"}
    flagged = {}
    for path in sorted(CONFORMANCE.rglob("*.pcap*")):
        if path.suffix == ".out":
            continue
        for host in to_json(analyze([str(path)]))["hosts"]:
            if host["verdict"] == "spambot" and host["ip"] not in spam:
                flagged[host["ip"]] = str(path)
    assert flagged == {}


def outlook_mail(office: Office, client: str, name: str, server: str, port: int) -> None:
    """Outlook's way: EHLO with the NetBIOS name (no dot), ``MAIL FROM: <a>`` and QUIT."""
    office.session(
        client,
        server,
        [
            ("S", b"220 mail.studio-example.com ESMTP\r\n"),
            ("C", f"EHLO {name}\r\n".encode()),
            ("S", b"250-mail.studio-example.com\r\n250 AUTH LOGIN PLAIN\r\n"),
            ("C", b"MAIL FROM: <staff@studio-example.com>\r\n"),
            ("S", b"250 2.1.0 Ok\r\n"),
            ("C", b"RCPT TO: <client@example.org>\r\n"),
            ("S", b"250 2.1.5 Ok\r\n"),
            ("C", b"DATA\r\n"),
            ("S", b"354 go ahead\r\n"),
            ("C", b"Subject: offer\r\n\r\nAttached.\r\n.\r\n"),
            ("S", b"250 2.0.0 Ok: queued\r\n"),
            ("C", b"QUIT\r\n"),
            ("S", b"221 2.0.0 Bye\r\n"),
        ],
        port=port,
    )


ORDINARY_NAMES = (
    "PC-BERND", "PC-FRANK", "PC-HORST", "WS-SCHMIDT", "NB-KBRANDT", "DESKTOP-7F3K2QH",
    "LAPTOP-JMB2K8QS", "pc-bernd.studio.lan", "ws-schmidt.corp.lan", "nb-kbrandt.corp.lan",
)  # fmt: skip


@pytest.mark.parametrize("relay", ["smarthost", "office mail server"])
def test_ordinary_pcs_score_below_ten_without_a_helo_reason(relay: str, tmp_path: Path) -> None:
    """PCs that send through the ISP's smarthost or the office's own mail server, with the
    names offices give them and Outlook's dot-less NetBIOS HELO, are not spambot-like."""
    office = Office()
    server, port = (SMARTHOST, 587) if relay == "smarthost" else ("192.168.0.5", 25)
    for _ in range(3):
        for i, name in enumerate(ORDINARY_NAMES):
            outlook_mail(office, f"192.168.0.{20 + i}", name, server, port)
    hosts = verdicts_of(office.write(tmp_path))
    pcs = {ip: h for ip, h in hosts.items() if ip.startswith("192.168.0.")}
    assert len(pcs) == len(ORDINARY_NAMES)
    for ip, host in pcs.items():
        assert host["verdict"] == "normal", (ip, host["reasons"])
        assert host["score"] < 10, (ip, host["reasons"])
        assert "helo" not in {r["signal"] for r in host["reasons"]}, (ip, host["reasons"])


def test_a_pc_with_a_netbios_name_straight_to_mx_gets_no_dot(tmp_path: Path) -> None:
    """ "No dot" is judged where a host speaks to foreign MX servers itself."""
    office = Office()
    office_day(office)
    for i in range(3):
        outlook_mail(office, "192.168.0.50", "PC-BERND", f"203.0.113.{60 + i}", 25)
    helo = next(r for r in verdicts_of(office.write(tmp_path))["192.168.0.50"]["reasons"]
                if r["signal"] == "helo")  # fmt: skip
    assert helo["evidence"] == "no dot ('PC-BERND')"


def test_the_demo_flags_only_the_bot_and_ordinary_pcs_score_below_ten() -> None:
    hosts = to_json(analyze([str(sample.DEFAULT_OUTPUT)]))["hosts"]
    bot = next(h for h in hosts if h["ip"] == sample.INFECTED)
    assert (bot["verdict"], bot["score"]) == ("spambot", 180)
    for host in hosts:
        if host["ip"] != sample.INFECTED:
            assert host["score"] < 10 and not host["reasons"], host


def greylisted_delivery(office: Office, client: str, server: str, rcpt_replies: list[bytes]):
    """A mail server delivering with PIPELINING: MAIL, every RCPT and DATA in one go; when
    no RCPT is accepted the server answers DATA "554 no valid recipients" (RFC 2920)."""
    rcpts = [("C", f"RCPT TO:<user{i}@example.net>\r\n".encode()) for i in range(len(rcpt_replies))]
    accepted = any(r.startswith(b"2") for r in rcpt_replies)
    script = [
        ("S", b"220 mx.example.net ESMTP\r\n"),
        ("C", b"EHLO mail.studio-example.com\r\n"),
        ("S", b"250-mx.example.net\r\n250 PIPELINING\r\n"),
        ("C", b"MAIL FROM:<news@studio-example.com>\r\n"), *rcpts, ("C", b"DATA\r\n"),
        ("S", b"250 2.1.0 Ok\r\n" + b"".join(rcpt_replies)
         + (b"354 go\r\n" if accepted else b"554 5.5.1 Error: no valid recipients\r\n")),
    ]  # fmt: skip
    if accepted:
        script += [("C", b"hello\r\n.\r\n"), ("S", b"554 5.7.1 message refused\r\n")]
    script += [("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")]
    office.session(client, server, script)


GREYLISTED = b"450 4.2.0 Recipient address rejected: Greylisted\r\n"
UNKNOWN_USER = b"550 5.1.1 Recipient address rejected: User unknown\r\n"


@pytest.mark.parametrize(
    ("rcpt_replies", "outcome"),
    [
        ([GREYLISTED, GREYLISTED], "tempfailed"),  # DATA's 554 follows from the 450s
        ([GREYLISTED, UNKNOWN_USER], "rejected"),  # a 550 to a RCPT is a refusal
        ([b"250 2.1.5 Ok\r\n", GREYLISTED], "rejected"),  # a recipient accepted: the 554 counts
    ],
)
def test_a_refusal_of_data_after_every_rcpt_refused_does_not_count(
    rcpt_replies: list[bytes], outcome: str, tmp_path: Path
) -> None:
    office = Office()
    for i in range(4):
        greylisted_delivery(office, "192.168.0.5", f"198.18.0.{i + 1}", rcpt_replies)
    analysis = analyze([office.write(tmp_path)])
    sessions = analysis.model.sessions()
    assert [s.outcome for s in sessions] == [outcome] * 4
    host = to_json(analysis)["hosts"][0]
    assert host["rejected_sessions"] == (4 if outcome == "rejected" else 0)
    assert host["tempfailed_sessions"] == (4 if outcome == "tempfailed" else 0)
    if outcome == "tempfailed":
        assert "rejections" not in {r["signal"] for r in host["reasons"]}


def judged(path: str, *, show_credentials: bool) -> dict[str, tuple]:
    analysis = analyze([path], show_credentials=show_credentials, workers=0)
    return {ip: (v.verdict, v.score, v.reasons, v.dialect) for ip, v in analysis.verdicts().items()}


def captures_with_auth() -> list[Path]:
    paths = [sample.DEFAULT_OUTPUT]
    if (CONFORMANCE / "INDEX.md").is_file():
        paths += sorted(p for p in CONFORMANCE.rglob("*.pcap*") if p.suffix != ".out")
    return paths


def test_show_credentials_changes_no_verdict(tmp_path: Path) -> None:
    """How AUTH lines are shown is a display choice: verdicts, scores, reasons and dialects
    are the same with and without --show-credentials, on every capture of the corpus."""
    office = Office()
    auth = [
        ("S", b"220 mx.example.net ESMTP\r\n"), ("C", b"EHLO pc.studio.lan\r\n"),
        ("S", b"250-mx.example.net\r\n250 AUTH PLAIN LOGIN\r\n"), ("C", b"AUTH PLAIN\r\n"),
        ("S", b"334 \r\n"), ("C", b"AGJvYgBzZWNyZXQ=\r\n"), ("S", b"235 ok\r\n"),
        ("C", b"MAIL FROM:<a@b.example> SIZE=10\r\n"), ("S", b"250 ok\r\n"),
        ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n"),
    ]  # fmt: skip
    for i in range(3):
        office.session("192.168.0.70", f"203.0.113.{i + 1}", auth)
    paths = [Path(office.write(tmp_path)), *captures_with_auth()]
    for path in paths:
        masked = judged(str(path), show_credentials=False)
        shown = judged(str(path), show_credentials=True)
        assert masked == shown, path
    assert judged(str(paths[0]), show_credentials=False)["192.168.0.70"][3] == "curl"


# -- the all-clear: a flagged host that went quiet ----------------------------------------------


def bot_then_office_hours(tmp_path: Path, quiet_minutes: float) -> str:
    """A bot burst, then ``quiet_minutes`` of the office (the bot's PC too) using only the
    smarthost."""
    office = Office()
    bot_burst(office, 12)
    office.clock += 5
    for _ in range(int(quiet_minutes * 1.5)):  # two mails 20 s apart: 40 s a round
        office.normal_mail("192.168.0.10", "reception-pc.studio.lan")
        office.normal_mail("192.168.0.108", "wxpanna.studio.lan")
    return office.write(tmp_path, f"quiet-{quiet_minutes}.pcap")


def test_a_flagged_host_quiet_long_enough_says_since_when(tmp_path: Path) -> None:
    bot = verdicts_of(bot_then_office_hours(tmp_path, 15))["192.168.0.108"]
    assert bot["verdict"] == "spambot", "the evidence stands"
    assert bot["quiet_since"] == bot["last_direct_mx"]
    assert bot["last_seen"] - bot["last_direct_mx"] > 600, "only smarthost mail since"


def test_quiet_counts_from_quiet_after(tmp_path: Path) -> None:
    path = bot_then_office_hours(tmp_path, 8)
    bot = verdicts_of(path)["192.168.0.108"]
    assert bot["last_direct_mx"] is not None and bot["quiet_since"] is None
    assert verdicts_of(path, quiet_after=300.0)["192.168.0.108"]["quiet_since"] is not None


def test_a_host_still_sending_or_never_flagged_is_not_quiet(tmp_path: Path) -> None:
    office = Office()
    office_day(office)
    bot_burst(office, 12)
    hosts = verdicts_of(office.write(tmp_path))
    bot = hosts["192.168.0.108"]
    assert bot["quiet_since"] is None
    assert bot["last_direct_mx"] >= bot["last_seen"], "its latest session went to an MX"
    normal = hosts["192.168.0.10"]
    assert normal["verdict"] == "normal" and normal["last_direct_mx"] is None
    assert normal["quiet_since"] is None
