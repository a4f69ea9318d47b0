"""Which SMTP client software speaks this way: a session's "dialect".

Every SMTP client implements the protocol a little differently (B@bel, Stringhini et al.,
USENIX Security 2012): verb case, spacing after ``FROM:``, the ESMTP parameters it adds and in
which order, EHLO or HELO and with what name, pipelining, QUIT.  A workstation whose sessions
speak no mail client's dialect is suspect; one that talks before the greeting, pipelines
without PIPELINING offered or mixes case is almost certainly a bot.

A family is named only where recorded sessions show a trait that no other recorded client has
(tests/test_dialect.py holds the recordings and says how they were made):

* Python smtplib (run): lower-case verbs with upper-case ``FROM:``/``TO:`` (``mail FROM:<a>``).
* sendmail (run, and corpus relays): ``MAIL From:<a> SIZE=n`` and ``RCPT To:<b>``.
* ZMailer (source, and vger.kernel.org in the corpus): ``MAIL From:<a> BODY=8BITMIME SIZE=n``
  or BDAT.
* Outlook (2003 and 2007 in the corpus): ``EHLO`` with a dot-less NetBIOS name and a space
  after the colon in ``MAIL FROM: <a>`` and ``RCPT TO: <b>``.
* Thunderbird (source, mailnews/compose/src/SmtpClient.sys.mjs): EHLO with an address
  literal (``[IPV6:...]`` in capitals), ``MAIL FROM:<a> BODY=8BITMIME SIZE=n``.
* Apple Mail (corpus, low): EHLO with an IPv4 address literal and a bare ``MAIL FROM:<a>``.
* Nodemailer (run, low): ``EHLO [127.0.0.1]`` when the host name has no dot, and no QUIT.
* curl (run, low): ``MAIL FROM:<a> SIZE=n`` without pipelining where PIPELINING was offered,
  or ``AUTH PLAIN`` answered on a second line.
* MTA (Postfix and Exim run, Exchange in the corpus, low): ``MAIL FROM:<a> SIZE=n`` pipelined
  with RCPT and DATA.  The three speak alike.

swaks, PHPMailer, Java Mail, Perl Net::SMTP and msmtp were run too: they all send
``EHLO name / MAIL FROM:<a> / RCPT TO:<b> / DATA / QUIT`` and stay "unknown".

It reads the client's lines as parsed (:class:`~smtptop.model.ClientStep`), never the
transcript as shown: how a view shows AUTH lines must not change a verdict.  Pure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from smtptop.model import ClientStep

_VERBS = frozenset(
    {"HELO", "EHLO", "MAIL", "RCPT", "DATA", "QUIT", "RSET", "NOOP", "VRFY", "EXPN", "HELP"}
    | {"STARTTLS", "AUTH", "BDAT", "ETRN", "TURN"}
)
_CORE = frozenset({"HELO", "EHLO", "MAIL", "RCPT", "DATA"})
_ENVELOPE = re.compile(
    r"(?P<verb>mail|rcpt)\s+(?P<keyword>from|to)\s*:(?P<space>\s*)"
    r"(?P<address><[^>]*>|\S*)(?P<rest>.*)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Dialect:
    """The client family a session's commands point to, and the traits seen."""

    family: str  # "Outlook", "Thunderbird", "Apple Mail", "sendmail", ..., or "unknown"
    confidence: str  # "high" / "low"
    features: tuple[str, ...]  # readable traits, e.g. ("EHLO", "uppercase", "QUIT")


@dataclass(frozen=True, slots=True)
class _Envelope:
    """One MAIL or RCPT line, taken apart exactly as sent."""

    verb: str  # "MAIL", "mail", "Mail", ...
    keyword: str  # "FROM", "From", ...
    spaced: bool  # "FROM: <a>"
    bracketed: bool  # "<a>" rather than a bare address
    address: str
    params: tuple[str, ...]  # "SIZE=123", "BODY=8BITMIME", ... as sent
    trailing_space: bool


def fingerprint(
    steps: Sequence[ClientStep],
    *,
    pipelined: bool,
    quit_sent: bool,
    greeting_seen: bool,
    pipelining_offered: bool | None = None,
) -> Dialect:
    """From the client's lines of one session, in order, as parsed: each command's verb and
    argument as sent (``ClientStep("mail", "FROM:<a@b> SIZE=12")``), AUTH with only its
    mechanism, and a line inside an AUTH exchange as a step without a verb.

    ``greeting_seen`` is False when the client spoke before the server's greeting (pass
    ``not session.pregreet``).  ``pipelining_offered`` (None: unknown) tells pipelining
    without PIPELINING offered apart, and lets curl be named."""
    if not steps:
        return Dialect("unknown", "low", ())
    session = _Session(steps)
    features = session.features(pipelined, quit_sent, greeting_seen, pipelining_offered)
    family, confidence = session.family(pipelined, quit_sent, pipelining_offered)
    suspicious = not greeting_seen or (pipelined and pipelining_offered is False)
    if family == "unknown" or suspicious:
        confidence = "low"
    return Dialect(family, confidence, features)


class _Session:
    """The commands of one session, parsed once."""

    def __init__(self, steps: Sequence[ClientStep]) -> None:
        self.verbs: list[str] = []  # known verbs, as sent
        self.hellos: list[tuple[str, str]] = []  # (verb as sent, argument)
        self.mails: list[_Envelope] = []
        self.rcpts: list[_Envelope] = []
        self.auth = ""
        self.unrecognised = 0
        previous: ClientStep | None = None
        for step in steps:
            verb, arg = step.verb, step.arg
            upper = verb.upper()
            if not verb:
                if previous is not None and _plain_without_response(previous):
                    self.auth = "AUTH PLAIN on a second line"
            elif upper not in _VERBS:
                self.unrecognised += 1
            else:
                self.verbs.append(verb)
                if upper in ("HELO", "EHLO"):
                    self.hellos.append((verb, arg.strip()))
                elif upper in ("MAIL", "RCPT"):
                    envelope = _envelope(f"{verb} {arg}")
                    if envelope is not None:
                        (self.mails if upper == "MAIL" else self.rcpts).append(envelope)
                elif upper == "AUTH" and not self.auth:
                    self.auth = _auth(step)
            previous = step
        self.name = self.hellos[0][1] if self.hellos else ""
        self.name_kind = _name_kind(self.name) if self.hellos else "none"

    def features(
        self, pipelined: bool, quit_sent: bool, greeting_seen: bool, offered: bool | None
    ) -> tuple[str, ...]:
        out = [self._hello(), f"name: {self.name_kind}"]
        out += self._case()
        out += self._envelope_traits()
        if self.auth:
            out.append(self.auth)
        upper = {verb.upper() for verb in self.verbs}
        out += [verb for verb in ("STARTTLS", "BDAT", "RSET") if verb in upper]
        if self.unrecognised:
            out.append("unrecognised commands")
        if pipelined:
            out.append("pipelined without PIPELINING offered" if offered is False else "pipelined")
        out.append("QUIT" if quit_sent else "no QUIT")
        if not greeting_seen:
            out.append("talked before greeting")
        return tuple(out)

    def family(self, pipelined: bool, quit_sent: bool, offered: bool | None) -> tuple[str, str]:
        hello = self.hellos[0][0] if self.hellos else ""
        mail = self.mails[0] if self.mails else None
        rcpt = self.rcpts[0] if self.rcpts else None
        if mail is None:
            return "unknown", "low"
        params = [param.split("=", 1)[0].upper() for param in mail.params]
        body_first = params[:1] == ["BODY"] and "SIZE" in params
        if (
            hello in ("ehlo", "helo")
            and (mail.verb, mail.keyword) == ("mail", "FROM")
            and (rcpt is None or (rcpt.verb, rcpt.keyword) == ("rcpt", "TO"))
        ):
            return "Python smtplib", "high"
        if (
            hello in ("EHLO", "HELO")
            and (mail.verb, mail.keyword) == ("MAIL", "From")
            and (rcpt is None or (rcpt.verb, rcpt.keyword) == ("RCPT", "To"))
        ):
            if body_first or any(verb.upper() == "BDAT" for verb in self.verbs):
                return "ZMailer", "high"
            return "sendmail", "high" if params[:1] == ["SIZE"] else "low"
        if hello != "EHLO" or (mail.verb, mail.keyword) != ("MAIL", "FROM"):
            return "unknown", "low"
        if rcpt is not None and (rcpt.verb, rcpt.keyword) != ("RCPT", "TO"):
            return "unknown", "low"
        same_spacing = rcpt is None or (rcpt.spaced, rcpt.bracketed) == (True, True)
        if (
            mail.spaced
            and mail.bracketed
            and same_spacing
            and not params
            and self.name_kind == "dotless"
            and not pipelined
            and not mail.trailing_space
        ):
            return "Outlook", "high" if quit_sent else "low"
        if mail.spaced or not mail.bracketed or (rcpt is not None and rcpt.spaced):
            return "unknown", "low"
        literal = self.name_kind in ("address literal", "IPv6 literal")
        if literal and not pipelined and (body_first or self.name.startswith("[IPV6:")):
            return "Thunderbird", "high"
        if self.name == "[127.0.0.1]" and not quit_sent:
            return "Nodemailer", "low"
        if self.name_kind == "address literal" and not params and not pipelined:
            return "Apple Mail", "low"
        second_line_plain = self.auth == "AUTH PLAIN on a second line"
        if params == ["SIZE"] and not pipelined and (offered is True or second_line_plain):
            return "curl", "low"
        if "SIZE" in params and pipelined:
            return "MTA", "low"
        return "unknown", "low"

    def _hello(self) -> str:
        order: list[str] = []
        for verb, _ in self.hellos:
            if verb.upper() not in order:
                order.append(verb.upper())
        return ", then ".join(order) if order else "no EHLO/HELO"

    def _case(self) -> list[str]:
        styles = {_style(verb) for verb in self.verbs if verb.upper() in _CORE}
        out = [styles.pop() if len(styles) == 1 else "case varies"] if styles else []
        if any(_style(verb) == "mixed case" for verb in self.verbs) and out != ["mixed case"]:
            out.append("mixed-case verbs")
        if self.mails:
            mail = self.mails[0]
            keyword = _style(mail.keyword)
            if keyword != _style(mail.verb):
                shown = {"uppercase": "FROM:/TO:", "lowercase": "from:/to:"}
                out.append(f"{shown.get(keyword, 'From:/To:')} {keyword}")
        return out

    def _envelope_traits(self) -> list[str]:
        if not self.mails:
            return []
        mail = self.mails[0]
        out = [f"MAIL FROM{_spacing(mail)}"]
        if self.rcpts and _spacing(self.rcpts[0]) != _spacing(mail):
            out.append(f"RCPT TO{_spacing(self.rcpts[0])}")
        if any(line.trailing_space for line in self.mails + self.rcpts):
            out.append("trailing space")
        if mail.params:
            out.append("MAIL params: " + " ".join(_param_name(param) for param in mail.params))
        sender = mail.address.strip("<>").lower()
        if sender and any(rcpt.address.strip("<>").lower() == sender for rcpt in self.rcpts):
            out.append("MAIL FROM = RCPT TO")
        return out


def _envelope(line: str) -> _Envelope | None:
    match = _ENVELOPE.fullmatch(line)
    if match is None:
        return None
    return _Envelope(
        verb=match["verb"],
        keyword=match["keyword"],
        spaced=bool(match["space"]),
        bracketed=match["address"].startswith("<"),
        address=match["address"],
        params=tuple(match["rest"].split()),
        trailing_space=line != line.rstrip(),
    )


def _auth(step: ClientStep) -> str:
    mechanism = step.arg.upper()
    if not mechanism:
        return "AUTH"
    if mechanism == "PLAIN":
        return "AUTH PLAIN with initial response" if step.initial_response else "AUTH PLAIN"
    return f"AUTH {mechanism}"


def _plain_without_response(step: ClientStep) -> bool:
    return step.verb.upper() == "AUTH" and step.arg.upper() == "PLAIN" and not step.initial_response


def _name_kind(name: str) -> str:
    """What kind of HELO/EHLO name: spambots use bare IPs, dot-less and placeholder names."""
    if not name:
        return "none"
    if name.startswith("[") and name.endswith("]"):
        inner = name[1:-1]
        if inner.lower().startswith("ipv6:"):
            return "IPv6 literal"
        return "address literal" if _is_ip(inner) else "bad literal"
    if _is_ip(name):
        return "bare IP"
    if name.lower() in ("localhost", "localhost.localdomain"):
        return "localhost"
    return "domain name" if "." in name.strip(".") else "dotless"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _style(word: str) -> str:
    if word.isupper():
        return "uppercase"
    if word.islower():
        return "lowercase"
    if word[:1].isupper() and word[1:].islower():
        return "capitalised"
    return "mixed case"


def _spacing(line: _Envelope) -> str:
    if not line.bracketed:
        return ": address without <>"
    return ": <> space" if line.spaced else ":<> no space"


def _param_name(param: str) -> str:
    """The parameter's name as sent; BODY keeps its value (8BITMIME, 7BIT)."""
    name = param.partition("=")[0]
    return param if name.upper() == "BODY" else name
