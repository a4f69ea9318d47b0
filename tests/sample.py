"""Generate the bundled sample capture ``smtptop/data/office.pcap``.

What a SPAN port at a small office's gateway sees from 09:00 UTC on 2026-11-02 for about
13 minutes: seven PCs of ``studio-example.com`` send a few mails each through the ISP
smarthost (AUTH LOGIN or STARTTLS on 587, plain relaying on 25), while the infected PC
192.168.0.108 (``wxpanna.studio.lan``) spews spam straight to about fifty MX servers on
port 25, most of which refuse it because the office's public address 203.0.113.77 is on
blocklists. A little DNS, ARP and HTTPS keeps the decoder's skipping honest.

Run ``python3 tests/sample.py [OUT]``; the output is byte-for-byte reproducible.

The generation plan doubles as the ground truth: :func:`scenario` returns every planned
SMTP connection (:class:`Session`, with its script and the facts a passive observer can
know), and :meth:`Scenario.hosts` aggregates them per LAN host (:class:`HostTruth`), so
tests compare smtptop's report with what was generated rather than with copied numbers.
"""

import argparse
import base64
import functools
import quopri
import random
import string
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

from synth import (
    LINKTYPE_ETHERNET,
    Conversation,
    Frame,
    arp_frame,
    link_frame,
    merge,
    udp_packet,
    write_pcap,
)

SEED = 20261102
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp()
LOCAL_TIME = timezone(timedelta(hours=1))  # the office is in CET; mail Date headers use it
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "smtptop" / "data" / "office.pcap"

DOMAIN = "studio-example.com"
GATEWAY = "192.168.0.1"
GATEWAY_MAC = bytes.fromhex("000db94a2107")
PUBLIC_IP = "203.0.113.77"  # the office's address as the MX servers see it (NAT)
SMARTHOST = "198.51.100.25"
SMARTHOST_NAME = "smtp.isp-mail.example"
INFECTED = "192.168.0.108"
LAN_DOMAIN = "studio.lan"
INFECTED_NAME = f"wxpanna.{LAN_DOMAIN}"  # its DHCP name; it never says so over SMTP
INFECTED_MAC = bytes.fromhex("d4bed95e108c")
HTTPS_SERVERS = ("192.0.2.80", "198.51.100.143")
SMTP_PORTS = (25, 465, 587)

# Reply wording of the blocklists and big providers the spambot runs into.
_SPAMHAUS = (
    f"Service unavailable; Client host [{PUBLIC_IP}] blocked using zen.spamhaus.org; "
    f"https://www.spamhaus.org/query/ip/{PUBLIC_IP}"
)
_CBL = (
    f"550 5.7.1 Service unavailable; Client host [{PUBLIC_IP}] blocked using cbl.abuseat.org; "
    f"Blocked - see https://www.abuseat.org/lookup.cgi?ip={PUBLIC_IP}"
)
_BL21 = (
    f"553 5.7.1 [BL21] Connections will not be accepted from {PUBLIC_IP}, because the ip is "
    "in Spamhaus's list; see https://postmaster.yahooinc.com/error-codes"
)
_GMAIL_LINES = (
    f"[{PUBLIC_IP}      15] Our system has detected that this message is",
    "suspicious due to the very low reputation of the sending IP address.",
    "To protect our users from spam, mail sent from your IP address has",
    "been temporarily rate limited. For more information, go to",
    " https://support.google.com/mail/answer/188131 {id} - gsmtp",
)


@dataclass(slots=True)
class Session:
    """One planned TCP connection to an SMTP port and what a passive observer can know of it.

    `replies` holds every server reply code in order (a multi-line reply once); `rcpts`
    pairs each RCPT TO address with its reply code; `messages` counts DATA transactions the
    server accepted. After a successful STARTTLS everything is opaque, so those fields stop.
    """

    client: str
    server: str
    server_port: int
    server_name: str  # the host named in the banner (or in the plan, if the banner does not)
    start: float
    rtt: float
    server_ttl: int
    client_port: int = 0
    connect: str = "ok"  # "ok", "refused" (RST to the SYN) or "unanswered" (SYNs, no reply)
    # Who ended it and how: "client-fin", "server-fin", "client-rst", "server-rst" or "none".
    teardown: str = "client-fin"
    script: list[tuple[str, bytes, float]] = field(default_factory=list)
    helo_verb: str | None = None
    helo: str | None = None
    mail_from: list[str] = field(default_factory=list)
    rcpts: list[tuple[str, int]] = field(default_factory=list)
    replies: list[int] = field(default_factory=list)
    # the index in `replies` of a refusal of DATA that only follows from every RCPT refused
    consequence: int = -1
    messages: int = 0
    auth: bool = False
    tls: bool = False
    quit: bool = False
    blocklist: str | None = None  # the list (or provider policy) that refused the client

    @property
    def established(self) -> bool:
        return self.connect == "ok"

    @property
    def rejected(self) -> bool:
        """The server refused something for good: a 5xx reply, other than to a DATA sent
        after every RCPT was refused (that one follows from the RCPT replies)."""
        return any(code // 100 == 5 for i, code in enumerate(self.replies) if i != self.consequence)

    @property
    def deferred(self) -> bool:
        """The server only said "try again later" (a 4xx reply and no 5xx)."""
        return not self.rejected and any(code // 100 == 4 for code in self.replies)


@dataclass(slots=True)
class HostTruth:
    """Per LAN host totals over its SMTP connections, as :meth:`Scenario.hosts` counts them."""

    host: str
    connections: int = 0  # SYNs to an SMTP port, answered or not
    sessions: int = 0  # connections whose handshake completed
    destinations: list[str] = field(default_factory=list)  # distinct servers of sessions
    attempted: list[str] = field(default_factory=list)  # distinct servers of all connections
    helos: list[str] = field(default_factory=list)  # distinct HELO/EHLO names, first use order
    messages: int = 0  # messages the servers accepted (visible ones, not inside TLS)
    recipients_accepted: int = 0
    recipients_refused: int = 0  # RCPT TO answered 4xx or 5xx
    rejected: int = 0  # sessions with a 5xx reply
    deferred: int = 0  # sessions with a 4xx reply and no 5xx
    blocked: int = 0  # sessions refused because of a blocklist or reputation
    tls: int = 0  # sessions upgraded with STARTTLS
    codes: Counter[int] = field(default_factory=Counter)  # every reply code seen


@dataclass(slots=True)
class Scenario:
    """The generation plan: SMTP sessions plus already-built background frames."""

    sessions: list[Session]
    background: list[Frame]

    def hosts(self) -> dict[str, HostTruth]:
        """Return the ground truth per LAN client, in address order."""
        hosts: dict[str, HostTruth] = {}
        for session in self.sessions:
            truth = hosts.setdefault(session.client, HostTruth(session.client))
            truth.connections += 1
            _add_once(truth.attempted, session.server)
            if not session.established:
                continue
            truth.sessions += 1
            _add_once(truth.destinations, session.server)
            if session.helo is not None:
                _add_once(truth.helos, session.helo)
            truth.messages += session.messages
            truth.recipients_accepted += sum(code // 100 == 2 for _, code in session.rcpts)
            truth.recipients_refused += sum(code // 100 in (4, 5) for _, code in session.rcpts)
            truth.rejected += session.rejected
            truth.deferred += session.deferred
            truth.blocked += session.blocklist is not None
            truth.tls += session.tls
            truth.codes.update(session.replies)
        return dict(sorted(hosts.items(), key=lambda item: tuple(map(int, item[0].split(".")))))

    def frames(self) -> list[Frame]:
        """Render every session and merge it with the background, in capture order."""
        return merge(self.background, *(_render(session) for session in self.sessions))


def _add_once(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


@dataclass(slots=True, frozen=True)
class _Workstation:
    address: str
    name: str
    mac: bytes
    person: str
    agent: str  # "outlook" or "thunderbird"
    port: int
    starttls: bool
    mails: int
    ttl: int


_WORKSTATIONS = (
    _Workstation(
        "192.168.0.10", "reception-pc", bytes.fromhex("3cd92b4c1a02"), "Giulia Conti",
        "outlook", 587, False, 4, 128,
    ),
    _Workstation(
        "192.168.0.12", "accounts-pc", bytes.fromhex("3cd92b4c7e19"), "Marco Ferri",
        "outlook", 587, True, 3, 128,
    ),
    _Workstation(
        "192.168.0.15", "design-ws1", bytes.fromhex("f01898a23c41"), "Luca Moretti",
        "thunderbird", 25, False, 3, 64,
    ),
    _Workstation(
        "192.168.0.17", "manager-laptop", bytes.fromhex("a483e7b12f60"), "Elena Ricci",
        "thunderbird", 587, True, 4, 64,
    ),
    _Workstation(
        "192.168.0.21", "design-ws2", bytes.fromhex("f01898a25d07"), "Sara Galli",
        "thunderbird", 587, False, 3, 128,
    ),
    _Workstation(
        "192.168.0.24", "projects-pc", bytes.fromhex("e86a64113b8d"), "Paolo Marino",
        "outlook", 25, False, 2, 128,
    ),
    _Workstation(
        "192.168.0.30", "intern-pc", bytes.fromhex("e86a6411c2f4"), "Chiara Lombardi",
        "outlook", 587, False, 3, 128,
    ),
)  # fmt: skip
_WORKSTATION_AT = {pc.address: pc for pc in _WORKSTATIONS}

_CORRESPONDENTS = (
    ("Mario Rossi", "m.rossi@cartotecnica-rossi.example"),
    ("Anke Vogel", "a.vogel@vogel-druck.example"),
    ("Accounts Payable", "ap@northwind-supplies.example"),
    ("Tom Becker", "tom.becker@isp-mail.example"),
    ("Laura Bianchi", "laura.bianchi@isp-mail.example"),
    ("Hotel Bellavista", "booking@hotel-bellavista.example"),
    ("Studio Legale Neri", "segreteria@studiolegaleneri.example"),
    ("Print Service", "orders@fastprint-service.example"),
)
# A slip of the keyboard: the smarthost knows its own mailboxes and refuses this one.
_TYPO = ("Tom Becker", "tom.beker@isp-mail.example")
_SUBJECTS = (
    "Quote for the autumn brochure",
    "Invoice 2026/0412",
    "Re: Meeting on Thursday",
    "Proofs for the catalogue, second round",
    "Booking confirmation 12-14 November",
    "Contract draft - comments",
    "Fwd: updated price list",
    "Photos from the shooting",
    "Re: delivery address",
    "Timesheet October",
)
_SENTENCES = (
    "Thank you for your quick reply.",
    "Please find attached the documents we discussed on the phone.",
    "Could you confirm the quantities by the end of the week?",
    "The second proof looks much better, only the colours on page 4 need a small fix.",
    "We would like to move the meeting to Thursday at 10:30 if that suits you.",
    "I have forwarded your message to our accounts department.",
    "The invoice refers to the work completed in October.",
    "Let me know if anything is missing or unclear.",
    "We can deliver the files in PDF/X-4 as usual.",
    "The client approved the layout, so we can go ahead with printing.",
    "As agreed, payment is due within 30 days of the invoice date.",
    "I will be out of the office on Friday afternoon.",
    "The paper samples arrived this morning, thank you.",
    "Could you send us the updated price list for 2027?",
    "We still need the high-resolution logo for the cover.",
)

# The ISP smarthost, as Postfix answers an EHLO on both ports.
_SMARTHOST_EHLO = (
    f"250-{SMARTHOST_NAME}",
    "250-PIPELINING",
    "250-SIZE 52428800",
    "250-ETRN",
    "250-STARTTLS",
    "250-AUTH PLAIN LOGIN",
    "250-AUTH=PLAIN LOGIN",
    "250-ENHANCEDSTATUSCODES",
    "250-8BITMIME",
    "250-DSN",
    "250 SMTPUTF8",
)

# Spambot targets: MX behaviour and how many distinct servers behave that way.
_PROFILES = (
    ("spamhaus-greeting", 8),
    ("spamhaus-rcpt", 8),
    ("cbl-rcpt", 5),
    ("microsoft", 6),
    ("yahoo", 4),
    ("gmail", 5),
    ("greylist", 6),
    ("accept", 10),
)
_BLOCKLIST = {
    "spamhaus-greeting": "zen.spamhaus.org",
    "spamhaus-rcpt": "zen.spamhaus.org",
    "cbl-rcpt": "cbl.abuseat.org",
    "microsoft": "Microsoft S3140",
    "yahoo": "Yahoo BL21 (Spamhaus)",
    "gmail": "Gmail IP reputation",
}
_COMPANY_WORDS = (
    "nordhaus", "alpenblick", "baltic", "castello", "deltaport", "europa", "ferrotec",
    "granite", "harborline", "iris", "juniper", "kestrel", "lakeside", "meridian", "nova",
    "oakridge", "pinewood", "quarzo", "riverside", "solano", "tramonto", "umbra", "valmont",
    "westfield", "zephyr", "brightwater", "cedar", "dolomiti", "elmstead", "foxglove",
)  # fmt: skip
_COMPANY_KINDS = (
    "logistik", "freight", "consulting", "mobili", "tools", "media", "foods", "legal",
    "dental", "immobilien", "textiles", "travel", "energy", "print", "clinic",
)  # fmt: skip
_LOCAL_PARTS = (
    "info", "sales", "admin", "office", "contact", "accounts", "hr", "support", "m.weber",
    "j.smith", "a.martin", "k.schulz", "l.garcia", "p.dubois", "s.romano", "billing",
)  # fmt: skip
_FORGED_SENDERS = (
    "dhl.com", "paypal.com", "microsoft.com", "amazon.com", "apple.com", "fedex.com",
    "docusign.net", "wetransfer.com", "qxvtmra.info", "secure-mailbox-update.top",
)  # fmt: skip
_FORGED_HELOS = ("microsoft.com", "yahoo.com", "mail.google.com", "outlook.com", "dhl.com")
_SPAM_SUBJECTS = (
    "DHL: your parcel could not be delivered",
    "Invoice #{n} overdue - final notice",
    "Re: payment confirmation {n}",
    "Your mailbox is almost full",
    "Document shared with you via DocuSign",
    "Order #{n} has been shipped",
)


def _queue_id(rng: random.Random) -> str:
    return "4" + "".join(rng.choices(string.digits + string.ascii_letters, k=13))


def _date(ts: float) -> str:
    return format_datetime(datetime.fromtimestamp(ts, LOCAL_TIME))


def _crlf(text: str) -> bytes:
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def _dot_stuff(message: bytes) -> bytes:
    """Double leading dots and append the end-of-data mark, as RFC 5321 wants."""
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n"


class _Dialog:
    """Appends steps to a session's script while recording what they mean."""

    def __init__(self, session: Session, rng: random.Random, think: tuple[float, float]) -> None:
        self.session = session
        self.rng = rng
        self.think = think  # the client's delay range before each command

    def client(self, *commands: str | bytes) -> None:
        data = b"".join(c if isinstance(c, bytes) else _crlf(c + "\n") for c in commands)
        self.session.script.append(("C", data, self.rng.uniform(*self.think)))

    def server(self, *replies: str, delay: float | None = None) -> None:
        """Send one write holding `replies` (each possibly multi-line)."""
        for reply in replies:
            self.session.replies.append(int(reply[:3]))
        data = b"".join(_crlf(reply + "\n") for reply in replies)
        if delay is None:
            delay = self.rng.uniform(0.0005, 0.004)
        self.session.script.append(("S", data, delay))

    def opaque(self, by: str, data: bytes, delay: float) -> None:
        self.session.script.append((by, data, delay))


def _tls_records(rng: random.Random, content_type: int, *sizes: int) -> bytes:
    """Return TLS 1.2 records of random content: the encrypted part of a STARTTLS session."""
    return b"".join(
        bytes([content_type, 3, 3]) + size.to_bytes(2, "big") + rng.randbytes(size)
        for size in sizes
    )


def _client_hello(rng: random.Random) -> bytes:
    """Return a 512-byte ClientHello record: type 1, version 3.3, then random content."""
    return b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + rng.randbytes(506)


_CHANGE_CIPHER_SPEC = b"\x14\x03\x03\x00\x01\x01"


def _tls_exchange(dialog: _Dialog, mail_size: int) -> None:
    """Play a TLS handshake and an encrypted mail submission after STARTTLS."""
    rng = dialog.rng
    dialog.opaque("C", _client_hello(rng), 0.002)
    server_flight = _tls_records(rng, 0x16, 89, rng.randint(2800, 3900), 333, 4)
    dialog.opaque("S", server_flight, 0.004)
    finished = _CHANGE_CIPHER_SPEC + _tls_records(rng, 0x16, 40)
    dialog.opaque("C", _tls_records(rng, 0x16, 37) + finished, 0.003)
    dialog.opaque("S", _CHANGE_CIPHER_SPEC + _tls_records(rng, 0x16, 40), 0.002)
    # EHLO, AUTH, MAIL/RCPT, DATA, the message, QUIT: sizes follow the cleartext ones.
    for client_size, server_size in ((45, 290), (61, 53), (113, 63), (30, 61)):
        dialog.opaque("C", _tls_records(rng, 0x17, client_size), rng.uniform(0.002, 0.02))
        dialog.opaque("S", _tls_records(rng, 0x17, server_size), rng.uniform(0.001, 0.004))
    dialog.opaque("C", _tls_records(rng, 0x17, mail_size + 24), 0.01)
    dialog.opaque("S", _tls_records(rng, 0x17, 72), rng.uniform(0.05, 0.3))
    dialog.opaque("C", _tls_records(rng, 0x17, 30), 0.003)
    dialog.opaque("S", _tls_records(rng, 0x17, 40), 0.001)
    dialog.opaque("C", _tls_records(rng, 0x15, 26), 0.001)


def _paragraphs(rng: random.Random, count: int) -> list[str]:
    return [" ".join(rng.sample(_SENTENCES, rng.randint(3, 6))) for _ in range(count)]


def _wrap(text: str, width: int = 72) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def _attachment(rng: random.Random, boundary: str) -> str:
    size = rng.randint(2500, 6000)
    pdf = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(size)
    encoded = base64.encodebytes(pdf).decode().strip()
    name = f"document_{rng.randint(100, 999)}.pdf"
    return (
        f"--{boundary}\n"
        f'Content-Type: application/pdf; name="{name}"\n'
        f'Content-Disposition: attachment; filename="{name}"\n'
        "Content-Transfer-Encoding: base64\n\n"
        f"{encoded}\n"
    )


def _office_mail(
    rng: random.Random, pc: _Workstation, ts: float, to: list[tuple[str, str]]
) -> bytes:
    """Return an Outlook- or Thunderbird-looking message with a few KB of body."""
    sender = f"{pc.person.lower().replace(' ', '.')}@{DOMAIN}"
    text = "\n\n".join(_wrap(p) for p in ["Hello,", *_paragraphs(rng, rng.randint(3, 7))])
    text += f"\n\nBest regards,\n{pc.person}\nStudio Example - graphic design\n"
    recipients = ", ".join(f'"{name}" <{address}>' for name, address in to)
    subject = rng.choice(_SUBJECTS)
    with_attachment = rng.random() < 0.35
    if pc.agent == "outlook":
        part = rng.randrange(16**6)
        boundary = f"----=_NextPart_000_{part >> 8:04X}_01DB4C{part & 0xFF:02X}.C0E29240"
        html = "".join(f"<p class=MsoNormal>{line}</p>\n" for line in text.split("\n\n"))
        page = f"<html><head><meta charset=us-ascii></head><body lang=EN-GB>\n{html}</body></html>"
        html_part = quopri.encodestring(page.encode()).decode()
        alternative = (
            f'--{boundary}\nContent-Type: text/plain; charset="us-ascii"\n'
            f"Content-Transfer-Encoding: 7bit\n\n{text}\n"
            f'--{boundary}\nContent-Type: text/html; charset="us-ascii"\n'
            f"Content-Transfer-Encoding: quoted-printable\n\n{html_part}\n"
        )
        body = alternative + (_attachment(rng, boundary) if with_attachment else "")
        headers = (
            f'From: "{pc.person}" <{sender}>\nTo: {recipients}\nSubject: {subject}\n'
            f"Date: {_date(ts)}\n"
            f"Message-ID: <{rng.randrange(16**12):012x}${rng.randrange(16**8):08x}@{DOMAIN}>\n"
            f'MIME-Version: 1.0\nContent-Type: multipart/mixed;\n\tboundary="{boundary}"\n'
            "X-Mailer: Microsoft Outlook 16.0\n"
            f"Thread-Index: {base64.b64encode(rng.randbytes(16)).decode()}\n"
            "Content-Language: en-gb\n"
        )
        message = (
            f"{headers}\nThis is a multipart message in MIME format.\n\n{body}--{boundary}--\n"
        )
    else:
        boundary = f"------------{rng.randrange(10**24):024d}"
        message_id = "-".join(f"{rng.randrange(16**n):0{n}x}" for n in (8, 4, 4, 4, 12))
        headers = (
            f"Message-ID: <{message_id}@{DOMAIN}>\nDate: {_date(ts)}\nMIME-Version: 1.0\n"
            "User-Agent: Mozilla Thunderbird\nContent-Language: en-US\n"
            f"To: {recipients}\nFrom: {pc.person} <{sender}>\nSubject: {subject}\n"
        )
        if with_attachment:
            message = (
                f'{headers}Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
                "This is a multi-part message in MIME format.\n"
                f"--{boundary}\nContent-Type: text/plain; charset=UTF-8; format=flowed\n"
                f"Content-Transfer-Encoding: 7bit\n\n{text}\n"
                f"{_attachment(rng, boundary)}--{boundary}--\n"
            )
        else:
            message = (
                f"{headers}Content-Type: text/plain; charset=UTF-8; format=flowed\n"
                f"Content-Transfer-Encoding: 7bit\n\n{text}"
            )
    return _crlf(message)


def _office_session(rng: random.Random, pc: _Workstation, start: float, typo: bool) -> Session:
    """Plan one mail from a workstation through the smarthost."""
    session = Session(
        pc.address, SMARTHOST, pc.port, SMARTHOST_NAME, start, rtt=0.011, server_ttl=58
    )
    dialog = _Dialog(session, rng, (0.001, 0.012))
    sender = f"{pc.person.lower().replace(' ', '.')}@{DOMAIN}"
    to = [rng.choice(_CORRESPONDENTS)]
    if typo:
        to = [_CORRESPONDENTS[0], _TYPO]
    elif rng.random() < 0.3:
        to.append(rng.choice(tuple(c for c in _CORRESPONDENTS if c != to[0])))
    dialog.server(f"220 {SMARTHOST_NAME} ESMTP Postfix", delay=0.004)
    # Outlook greets with the bare computer name, Thunderbird with an address literal.
    outlook = pc.agent == "outlook"
    session.helo_verb = "EHLO"
    session.helo = pc.name.upper() if outlook else f"[{pc.address}]"
    dialog.client(f"EHLO {session.helo}")
    dialog.server("\r\n".join(_SMARTHOST_EHLO))
    message = _office_mail(rng, pc, start, to)
    if pc.starttls:
        dialog.client("STARTTLS")
        dialog.server("220 2.0.0 Ready to start TLS")
        session.tls = True
        _tls_exchange(dialog, len(message))
        session.teardown = "client-fin"
        return session
    if pc.port == 587:
        user = base64.b64encode(sender.encode()).decode()
        password = base64.b64encode(f"{pc.name.split('-')[0].title()}#2026".encode()).decode()
        dialog.client("AUTH LOGIN")
        dialog.server("334 VXNlcm5hbWU6")
        dialog.client(user)
        dialog.server("334 UGFzc3dvcmQ6")
        dialog.client(password)
        dialog.server("235 2.7.0 Authentication successful", delay=0.03)
        session.auth = True
    session.mail_from.append(sender)
    if outlook:  # a space after the colon, no parameters
        mail_from, rcpt_to = f"MAIL FROM: <{sender}>", "RCPT TO: <{}>"
    else:
        mail_from = f"MAIL FROM:<{sender}> BODY=8BITMIME SIZE={len(message)}"
        rcpt_to = "RCPT TO:<{}>"
    codes = [550 if (name, address) == _TYPO else 250 for name, address in to]
    rcpt_replies = [
        "250 2.1.5 Ok"
        if code == 250
        else f"550 5.1.1 <{address}>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
        for (_, address), code in zip(to, codes, strict=True)
    ]
    session.rcpts.extend((address, code) for (_, address), code in zip(to, codes, strict=True))
    if pc.agent == "thunderbird":  # pipelines MAIL and RCPTs, then DATA on its own
        dialog.client(mail_from, *(rcpt_to.format(address) for _, address in to))
        dialog.server("250 2.1.0 Ok", *rcpt_replies)
    else:
        dialog.client(mail_from)
        dialog.server("250 2.1.0 Ok")
        for (_, address), reply in zip(to, rcpt_replies, strict=True):
            dialog.client(rcpt_to.format(address))
            dialog.server(reply)
    dialog.client("DATA")
    dialog.server("354 End data with <CR><LF>.<CR><LF>")
    dialog.client(_dot_stuff(message))
    dialog.server(f"250 2.0.0 Ok: queued as {_queue_id(rng)}", delay=rng.uniform(0.08, 0.4))
    session.messages += 1
    dialog.client("QUIT")
    dialog.server("221 2.0.0 Bye")
    session.quit = True
    session.teardown = "client-fin" if pc.agent == "outlook" else "server-fin"
    return session


@dataclass(slots=True)
class _Mx:
    address: str
    profile: str
    domain: str
    host: str
    style: str  # "postfix", "exim", "microsoft", "yahoo" or "gmail"
    rtt: float
    ttl: int


def _mx_servers(rng: random.Random, count: int, taken: set[str]) -> list[str]:
    """Draw distinct addresses from the documentation networks, avoiding `taken`."""
    addresses: list[str] = []
    while len(addresses) < count:
        prefix = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
        address = f"{prefix}.{rng.randint(2, 254)}"
        if address not in taken and address not in addresses:
            addresses.append(address)
    return addresses


def _plan_mx(rng: random.Random) -> tuple[list[_Mx], list[str]]:
    """Return the MX servers the spambot talks to and the dead addresses it tries."""
    taken = {SMARTHOST, PUBLIC_IP, *HTTPS_SERVERS}
    total = sum(count for _, count in _PROFILES)
    addresses = _mx_servers(rng, total + 4, taken)
    domains: list[str] = []
    while len(domains) < total:
        domain = f"{rng.choice(_COMPANY_WORDS)}-{rng.choice(_COMPANY_KINDS)}.example"
        if domain not in domains:
            domains.append(domain)
    servers: list[_Mx] = []
    profiles = [profile for profile, count in _PROFILES for _ in range(count)]
    for address, domain, profile in zip(addresses, domains, profiles, strict=False):
        if profile == "microsoft":
            style = "microsoft"
            site = f"{rng.choice(('AM', 'DB', 'VI', 'PA'))}{rng.randint(1, 9)}"
            host = (
                f"{site}PEPF{rng.randrange(16**8):08X}.eurprd0{rng.randint(1, 9)}.outlook.example"
            )
        elif profile == "yahoo":
            style, host = "yahoo", f"mta{rng.randint(5, 7)}.am0.yahoodns.example"
        elif profile == "gmail":
            style, host = "gmail", "mx.google.example"
        else:
            style = "exim" if profile == "accept" and rng.random() < 0.4 else "postfix"
            host = f"mx{rng.randint(1, 3)}.{domain}" if rng.random() < 0.6 else f"mail.{domain}"
        if profile == "spamhaus-rcpt" and rng.random() < 0.5:
            style = "exim"
        servers.append(
            _Mx(
                address, profile, domain, host, style, rng.uniform(0.018, 0.19), rng.randint(44, 58)
            )
        )
    return servers, addresses[total:]


def _bot_helo(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        letters = string.ascii_lowercase if rng.random() < 0.6 else string.ascii_uppercase
        return "".join(rng.choices(letters, k=rng.randint(6, 11)))
    if kind < 0.7:
        return rng.choice((INFECTED, PUBLIC_IP, f"[{PUBLIC_IP}]"))
    return rng.choice(_FORGED_HELOS)


def _spam_message(rng: random.Random, sender: str, rcpts: list[str], ts: float) -> bytes:
    number = rng.randint(10000, 99999)
    subject = rng.choice(_SPAM_SUBJECTS).format(n=number)
    link = f"http://{''.join(rng.choices(string.ascii_lowercase, k=9))}.example/{number}"
    html = (
        "<html><body><table width=600><tr><td>"
        f"<p>Dear customer,</p><p>{subject}. Please review the details within 24 hours "
        f'to avoid suspension.</p><p><a href="{link}">View document</a></p>'
        "<p>This is an automated message, please do not reply.</p>"
        "</td></tr></table></body></html>"
    )
    encoded = base64.encodebytes((html * rng.randint(1, 3)).encode()).decode()
    message = (
        f'From: "Customer Service" <{sender}>\nTo: {rcpts[0]}\nSubject: {subject}\n'
        f"Date: {_date(ts)}\nMessage-ID: <{rng.randrange(16**16):016x}@{sender.split('@')[1]}>\n"
        'MIME-Version: 1.0\nContent-Type: text/html; charset="utf-8"\n'
        f"Content-Transfer-Encoding: base64\nX-Priority: 1\n\n{encoded}"
    )
    return _crlf(message)


def _spam_session(rng: random.Random, mx: _Mx, start: float, accept: bool) -> Session:
    """Plan one spambot connection; `accept` overrides greylisting on a retry."""
    session = Session(INFECTED, mx.address, 25, mx.host, start, rtt=mx.rtt, server_ttl=mx.ttl)
    dialog = _Dialog(session, rng, (0.0002, 0.002))
    profile = "accept" if accept else mx.profile
    session.blocklist = _BLOCKLIST.get(profile)
    when = datetime.fromtimestamp(start, UTC)

    def finish(quit_reply: str) -> Session:
        """End like a spambot: QUIT now and then, otherwise just drop the connection."""
        roll = rng.random()
        if roll < 0.45:
            dialog.client("QUIT")
            dialog.server(quit_reply)
            session.quit = True
            session.teardown = "server-fin"
        else:
            session.teardown = "client-fin" if roll < 0.75 else "client-rst"
        return session

    postfix_quit = "221 2.0.0 Bye"
    if profile == "spamhaus-greeting":
        dialog.server(f"554 5.7.1 {_SPAMHAUS}", delay=rng.uniform(0.01, 0.3))
        return finish("221 2.7.0 Error: I can break rules, too. Goodbye.")
    if profile == "yahoo":
        dialog.server(_BL21, delay=0.01)
        session.teardown = "server-fin"
        return session
    banner = {
        "postfix": f"220 {mx.host} ESMTP Postfix",
        "exim": f"220 {mx.host} ESMTP Exim 4.97 {format_datetime(when)}",
        "microsoft": f"220 {mx.host} Microsoft ESMTP MAIL Service ready at {format_datetime(when)}",
        "gmail": f"220 {mx.host} ESMTP {_queue_id(rng).lower()}.{rng.randint(100, 999)} - gsmtp",
    }[mx.style]
    dialog.server(banner, delay=rng.uniform(0.005, 0.6))
    session.helo_verb, session.helo = "HELO", _bot_helo(rng)
    dialog.client(f"HELO {session.helo}")
    dialog.server(
        {
            "postfix": f"250 {mx.host}",
            "exim": f"250 {mx.host} Hello {session.helo} [{PUBLIC_IP}]",
            "microsoft": f"250 {mx.host} Hello [{PUBLIC_IP}]",
            "gmail": f"250 {mx.host} at your service",
        }[mx.style]
    )
    sender = f"{rng.choice(_LOCAL_PARTS)}@{rng.choice(_FORGED_SENDERS)}"
    session.mail_from.append(sender)
    dialog.client(f"MAIL FROM:<{sender}>")
    if profile == "microsoft":
        dialog.server(
            f"550 5.7.1 Unfortunately, messages from [{PUBLIC_IP}] weren't sent. Please contact "
            "your Internet service provider since part of their network is on our block list "
            "(S3140). You can also refer your provider to "
            f"http://mail.live.com/mail/troubleshooting.aspx#errors. [{mx.host}]"
        )
        return finish("221 2.0.0 Service closing transmission channel")
    dialog.server(
        {"exim": "250 OK", "gmail": f"250 2.1.0 OK {_queue_id(rng).lower()} - gsmtp"}.get(
            mx.style, "250 2.1.0 Ok"
        )
    )
    rcpts = [f"{r}@{mx.domain}" for r in rng.sample(_LOCAL_PARTS, rng.randint(2, 5))]
    accepted = 0
    for index, rcpt in enumerate(rcpts):
        dialog.client(f"RCPT TO:<{rcpt}>")
        if profile == "gmail":
            lines = [line.format(id=_queue_id(rng).lower()) for line in _GMAIL_LINES]
            reply = "\r\n".join(f"421-4.7.0 {line}" for line in lines[:-1])
            dialog.server(f"{reply}\r\n421 4.7.0 {lines[-1]}")
            session.rcpts.append((rcpt, 421))
            session.teardown = "server-fin"
            return session
        if profile == "spamhaus-rcpt":
            reply = (
                f"554 5.7.1 {_SPAMHAUS}"
                if mx.style == "postfix"
                else f"550-Rejected because {PUBLIC_IP} is in a black list at zen.spamhaus.org\r\n"
                f"550 https://www.spamhaus.org/query/ip/{PUBLIC_IP}"
            )
            code = int(reply[:3])
        elif profile == "cbl-rcpt":
            code, reply = 550, _CBL
        elif profile == "greylist":
            code = 450
            reply = (
                f"450 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted for 300 seconds "
                f"(see http://postgrey.schweikert.ch/help/{mx.domain}.html)"
            )
        elif index > 0 and rng.random() < 0.35:
            code = 550
            reply = (
                "550 Unrouteable address"
                if mx.style == "exim"
                else f"550 5.1.1 <{rcpt}>: Recipient address rejected: "
                "User unknown in local recipient table"
            )
        else:
            code, reply = 250, "250 Accepted" if mx.style == "exim" else "250 2.1.5 Ok"
        dialog.server(reply)
        session.rcpts.append((rcpt, code))
        accepted += code == 250
    if accepted:
        dialog.client("DATA")
        dialog.server(
            '354 Enter message, ending with "." on a line by itself'
            if mx.style == "exim"
            else "354 End data with <CR><LF>.<CR><LF>"
        )
        dialog.client(_dot_stuff(_spam_message(rng, sender, rcpts, start)))
        queue_id = _queue_id(rng)
        queued = (
            f"250 OK id=1t{queue_id[1:5]}-000{queue_id[5:8]}-{queue_id[8:10]}"
            if mx.style == "exim"
            else f"250 2.0.0 Ok: queued as {queue_id}"
        )
        dialog.server(queued, delay=rng.uniform(0.05, 0.5))
        session.messages += 1
    elif rng.random() < 0.5:  # spambots often push DATA regardless
        dialog.client("DATA")
        session.consequence = len(session.replies)
        dialog.server(
            "503 valid RCPT command must precede DATA"
            if mx.style == "exim"
            else "554 5.5.1 Error: no valid recipients"
        )
    exim_quit = f"221 {mx.host} closing connection"
    return finish(exim_quit if mx.style == "exim" else postfix_quit)


def _plan_spambot(rng: random.Random) -> tuple[list[Session], list[_Mx]]:
    """Plan the spambot's bursts: waves of parallel connections, revisits, greylist retries.

    Also returns the first few servers in visiting order, whose MX records it looks up.
    """
    servers, dead = _plan_mx(rng)
    first = [mx for mx in servers if mx.profile != "greylist"]
    rng.shuffle(first)
    for mx in (mx for mx in servers if mx.profile == "greylist"):
        first.insert(rng.randint(0, 20), mx)  # early enough for a retry after five minutes
    queue: list[_Mx | tuple[str, str]] = list(first)
    for mx in rng.sample([mx for mx in servers if mx.profile == "accept"], 4):
        queue.insert(rng.randint(len(queue) // 2, len(queue)), mx)
    for address, failure in zip(dead, ("refused", "unanswered") * 2, strict=True):
        queue.insert(rng.randint(5, len(queue)), (address, failure))
    sessions: list[Session] = []
    first_visit: dict[str, float] = {}
    clock = START + 95.0
    while queue:
        for _ in range(min(len(queue), rng.choice((1, 1, 2, 2, 3, 4)))):
            target = queue.pop(0)
            start = clock + rng.uniform(0.0, 1.5)
            if isinstance(target, tuple):
                address, failure = target
                session = Session(INFECTED, address, 25, "", start, rtt=0.1, server_ttl=50)
                session.connect = failure
                session.teardown = "server-rst" if failure == "refused" else "none"
            else:
                session = _spam_session(rng, target, start, accept=False)
                first_visit.setdefault(target.address, start)
            sessions.append(session)
        clock += rng.uniform(14.0, 28.0)
    greylisted = sorted(
        (mx for mx in servers if mx.profile == "greylist"), key=lambda mx: first_visit[mx.address]
    )
    for index, mx in enumerate(greylisted[:3]):
        retry = first_visit[mx.address] + rng.uniform(300.0, 330.0)
        # The first two retries come late enough to pass; the third is still greylisted.
        sessions.append(_spam_session(rng, mx, retry, accept=index < 2))
    looked_up = sorted(servers, key=lambda mx: first_visit[mx.address])[:6]
    return sessions, looked_up


def _dns_name(name: str) -> bytes:
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def _dns_pair(
    rng: random.Random,
    client: str,
    mac: bytes,
    start: float,
    name: str,
    qtype: int,
    rdatas: list[bytes],
) -> list[Frame]:
    """Return a DNS query to the gateway's resolver and its answer."""
    ident = rng.getrandbits(16)
    port = rng.randint(49152, 65535)
    question = _dns_name(name) + qtype.to_bytes(2, "big") + b"\0\1"
    query = ident.to_bytes(2, "big") + bytes.fromhex("0100 0001 0000 0000 0000") + question
    answers = b"".join(
        b"\xc0\x0c" + qtype.to_bytes(2, "big") + b"\0\1" + (300).to_bytes(4, "big")
        + len(rdata).to_bytes(2, "big") + rdata
        for rdata in rdatas
    )  # fmt: skip
    header = bytes.fromhex("8180 0001") + len(rdatas).to_bytes(2, "big") + b"\0\0\0\0"
    response = ident.to_bytes(2, "big") + header + question + answers
    ask = udp_packet(client, GATEWAY, port, 53, query, ident=rng.getrandbits(16), ttl=128)
    tell = udp_packet(GATEWAY, client, 53, port, response, ident=rng.getrandbits(16))
    reply_at = round(start + rng.uniform(0.0008, 0.03), 6)
    return [
        Frame(
            round(start, 6),
            link_frame(LINKTYPE_ETHERNET, ask, src_mac=mac, dst_mac=GATEWAY_MAC, pad=True),
        ),
        Frame(
            reply_at,
            link_frame(LINKTYPE_ETHERNET, tell, src_mac=GATEWAY_MAC, dst_mac=mac, pad=True),
        ),
    ]


def _https_flow(rng: random.Random, pc: _Workstation, server: str, start: float) -> list[Frame]:
    """Return a short HTTPS fetch: handshake, TLS records, close."""
    conv = Conversation(
        pc.address, rng.randint(50000, 60000), server, 443, start=start, rtt=0.024,
        client_mac=pc.mac, server_mac=GATEWAY_MAC, client_ttl=pc.ttl, server_ttl=55,
        pad=True, seed=SEED,
    )  # fmt: skip
    conv.smtp(
        [
            ("C", _client_hello(rng)),
            ("S", _tls_records(rng, 0x16, 122, 6) + _tls_records(rng, 0x17, 3950)),
            ("C", _CHANGE_CIPHER_SPEC + _tls_records(rng, 0x17, 53, 420)),
            ("S", _tls_records(rng, 0x17, 210, 7800), 0.09),
        ]
    )
    conv.close("client", delay=rng.uniform(2.0, 8.0))
    return conv.frames


def _background(rng: random.Random, sessions: list[Session], looked_up: list[_Mx]) -> list[Frame]:
    """Return the traffic smtptop must skip: DNS lookups (the smarthost before each PC's
    first mail, a few MX records for the spambot), ARP chatter and two HTTPS fetches."""
    frames: list[Frame] = []
    smarthost = bytes(int(part) for part in SMARTHOST.split("."))
    resolved: list[str] = []
    for session in sessions:
        if session.server == SMARTHOST and session.client not in resolved:
            resolved.append(session.client)
            mac = _WORKSTATION_AT[session.client].mac
            ts = session.start - rng.uniform(0.01, 0.05)
            frames += _dns_pair(rng, session.client, mac, ts, SMARTHOST_NAME, 1, [smarthost])
    for mx in looked_up:
        visit = min(s.start for s in sessions if s.server == mx.address)
        record = (10).to_bytes(2, "big") + _dns_name(mx.host)
        ts = visit - rng.uniform(0.05, 0.2)
        frames += _dns_pair(rng, INFECTED, INFECTED_MAC, ts, mx.domain, 15, [record])
    for minute in range(0, 13, 2):
        pc = _WORKSTATIONS[minute // 2 % len(_WORKSTATIONS)]
        for address, mac in ((pc.address, pc.mac), (INFECTED, INFECTED_MAC)):
            ts = round(START + minute * 60 + rng.uniform(1.0, 50.0), 6)
            frames.append(Frame(ts, arp_frame(1, GATEWAY_MAC, GATEWAY, address)))
            reply = arp_frame(2, mac, address, GATEWAY, target_mac=GATEWAY_MAC)
            frames.append(Frame(round(ts + 0.0004, 6), reply))
    frames += _https_flow(rng, _WORKSTATIONS[0], HTTPS_SERVERS[0], START + 41.3)
    frames += _https_flow(rng, _WORKSTATIONS[3], HTTPS_SERVERS[1], START + 402.7)
    hosts = [(pc.address, pc.name, pc.mac) for pc in _WORKSTATIONS]
    hosts.append((INFECTED, INFECTED_NAME.split(".", 1)[0], INFECTED_MAC))
    for address, name, mac in hosts:
        ts = round(START + rng.uniform(0.5, 4.0), 6)
        frames += _dhcp_renewal(rng, address, name, mac, ts)
        frames.append(Frame(round(ts + 0.2, 6), _nbns_registration(rng, address, name, mac)))
    return sorted(frames, key=lambda f: f.ts)


def _dhcp_renewal(rng: random.Random, address: str, name: str, mac: bytes, ts: float):
    """A Windows-style DHCP REQUEST (host name, FQDN) and the gateway's ACK: who is who."""
    xid = rng.getrandbits(32)
    packed = bytes(int(part) for part in address.split("."))
    fqdn = f"{name}.{LAN_DOMAIN}".encode()

    def bootp(op: int, kind: int, yiaddr: bytes, options: bytes) -> bytes:
        return (
            struct.pack("!BBBBIHH", op, 1, 6, 0, xid, 0, 0)
            + bytes(4) + yiaddr + bytes(8) + mac + bytes(10) + bytes(192)
            + b"\x63\x82\x53\x63" + bytes([53, 1, kind]) + options + b"\xff"
        )  # fmt: skip

    request = bootp(
        1,
        3,
        bytes(4),
        bytes([61, 7, 1]) + mac
        + bytes([50, 4]) + packed
        + bytes([12, len(name)]) + name.encode()
        + bytes([81, 3 + len(fqdn), 0, 0, 0]) + fqdn,
    )  # fmt: skip
    ack = bootp(
        2, 5, packed, bytes([54, 4]) + bytes([192, 168, 0, 1]) + bytes([51, 4, 0, 1, 81, 128])
    )
    ask = udp_packet("0.0.0.0", "255.255.255.255", 68, 67, request, ttl=128)
    tell = udp_packet(GATEWAY, "255.255.255.255", 67, 68, ack)
    return [
        Frame(ts, link_frame(LINKTYPE_ETHERNET, ask, src_mac=mac, dst_mac=b"\xff" * 6)),
        Frame(
            round(ts + 0.0012, 6),
            link_frame(LINKTYPE_ETHERNET, tell, src_mac=GATEWAY_MAC, dst_mac=b"\xff" * 6),
        ),
    ]


def _nbns_registration(rng: random.Random, address: str, name: str, mac: bytes) -> bytes:
    """A NetBIOS name registration broadcast, as Windows sends when it joins the LAN."""
    padded = name.upper().encode()[:15].ljust(15) + b"\x00"
    encoded = b"".join(bytes([0x41 + (b >> 4), 0x41 + (b & 0x0F)]) for b in padded)
    question = b"\x20" + encoded + b"\x00" + b"\x00\x20\x00\x01"
    record = b"\xc0\x0c\x00\x20\x00\x01" + (300000).to_bytes(4, "big") + b"\x00\x06\x00\x00"
    record += bytes(int(part) for part in address.split("."))
    header = struct.pack("!HHHHHH", rng.getrandbits(16), 0x2910, 1, 0, 0, 1)
    packet = udp_packet(address, "192.168.0.255", 137, 137, header + question + record, ttl=128)
    return link_frame(LINKTYPE_ETHERNET, packet, src_mac=mac, dst_mac=b"\xff" * 6)


def _assign_ports(rng: random.Random, sessions: list[Session]) -> None:
    """Give each client ascending ephemeral ports in connection order, as Windows does."""
    next_port: dict[str, int] = {}
    for session in sorted(sessions, key=lambda s: s.start):
        port = next_port.get(session.client, rng.randint(49800, 62000))
        session.client_port = port
        next_port[session.client] = port + rng.randint(1, 4)


@functools.cache
def scenario() -> Scenario:
    """Build the (cached) generation plan; the same plan on every call and every machine."""
    rng = random.Random(SEED)
    sessions: list[Session] = []
    typo_done = False
    for pc in _WORKSTATIONS:
        times = sorted(rng.uniform(5.0, 760.0) for _ in range(pc.mails))
        for offset in times:
            typo = not typo_done and pc.name == "intern-pc"
            typo_done = typo_done or typo
            sessions.append(_office_session(rng, pc, START + offset, typo))
    spam, looked_up = _plan_spambot(rng)
    sessions += spam
    sessions.sort(key=lambda s: s.start)
    _assign_ports(rng, sessions)
    return Scenario(sessions, _background(rng, sessions, looked_up))


def _render(session: Session) -> list[Frame]:
    """Turn a planned session into frames as the SPAN port sees them."""
    workstation = _WORKSTATION_AT.get(session.client)
    conv = Conversation(
        session.client,
        session.client_port,
        session.server,
        session.server_port,
        start=session.start,
        rtt=session.rtt,
        client_mac=workstation.mac if workstation else INFECTED_MAC,
        server_mac=GATEWAY_MAC,
        client_ttl=workstation.ttl if workstation else 128,
        server_ttl=session.server_ttl,
        pad=True,
        seed=SEED,
    )
    if session.connect == "refused":
        conv.refused()
        return conv.frames
    if session.connect == "unanswered":
        conv.unanswered(retries=2)
        return conv.frames
    conv.smtp(session.script)
    by, how = session.teardown.split("-")
    if how == "fin":
        conv.close("client" if by == "client" else "server", delay=0.0005)
    else:
        conv.reset("client" if by == "client" else "server", delay=0.0005)
    return conv.frames


def generate(path: str | Path = DEFAULT_OUTPUT) -> list[Frame]:
    """Write the sample capture to `path` (gzip if it ends in .gz) and return its frames."""
    frames = scenario().frames()
    write_pcap(path, frames, LINKTYPE_ETHERNET)
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 tests/sample.py", description="Write the bundled sample capture."
    )
    parser.add_argument("output", nargs="?", default=str(DEFAULT_OUTPUT), help="pcap to write")
    args = parser.parse_args(argv)
    frames = generate(args.output)
    size = Path(args.output).stat().st_size
    print(f"wrote {len(frames)} packets, {size} bytes, to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
