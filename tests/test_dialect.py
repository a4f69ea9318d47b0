"""Dialect fingerprints against real client sessions.

RECORDED was recorded on 2026-11-28 by running each client against a tiny SMTP sink on
127.0.0.1/127.0.0.2 (ports 25, 587 and 2525; EHLO offers PIPELINING, SIZE, 8BITMIME,
AUTH PLAIN LOGIN, ENHANCEDSTATUSCODES, and CHUNKING in the *_chunking runs) inside a private
network namespace (`ip netns add`, only `lo` up), while tcpdump captured `lo`.  The command
lines and the flags are what smtptop's own engine (smtptop.analysis.analyze) made of those
captures, AUTH secrets masked as the model masks them.  Clients: Python smtplib
(`send_message` in a `with` block, then `login` + `sendmail` + `quit()`), swaks (plain,
--pipeline, --auth LOGIN, --protocol SMTP), curl (-T file, with --user, -T -), PHPMailer and
Jakarta Mail (Debian's packages), Perl Net::SMTP, msmtp, Nodemailer (npm), Postfix and Exim
(Debian's packages, relaying to the sink as smarthost) and sendmail (sendmail -Am -odi).
"vm" is the recording machine's host name.

CORPUS sessions come from shared/corpus (`python -m smtptop report --json FILE`, client
lines), named after the X-Mailer/User-Agent and Received headers of the mail they carried.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest

from smtptop.dialect import Dialect, fingerprint
from smtptop.model import ClientStep

AUTH_LINE = "********"  # in the tables: a client line inside an AUTH exchange


class Case(NamedTuple):
    client: str
    family: str
    confidence: str
    commands: list[str]
    pipelined: bool
    quit_sent: bool
    offered: bool | None  # the server offered PIPELINING (None: not known)
    greeting_seen: bool = True


RECORDED: list[Case] = [
    Case(
        "Python smtplib 3.11",
        "Python smtplib",
        "high",
        [
            "ehlo [127.0.0.1]",
            "mail FROM:<alice@example.com> size=163",
            "rcpt TO:<bob@example.org>",
            "data",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Python smtplib 3.11",
        "Python smtplib",
        "high",
        [
            "ehlo [127.0.0.1]",
            "AUTH PLAIN ********",
            "mail FROM:<alice@example.com> size=20",
            "rcpt TO:<bob@example.org>",
            "rcpt TO:<carol@example.net>",
            "data",
            "quit",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "swaks 20201014.0",
        "unknown",
        "low",
        ["EHLO vm", "MAIL FROM:<alice@example.com>", "RCPT TO:<bob@example.org>", "DATA", "QUIT"],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "swaks 20201014.0",
        "unknown",
        "low",
        [
            "EHLO vm",
            "MAIL FROM:<alice@example.com>",
            "RCPT TO:<bob@example.org>",
            "RCPT TO:<carol@example.net>",
            "DATA",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "swaks 20201014.0",
        "unknown",
        "low",
        [
            "EHLO vm",
            "AUTH LOGIN",
            "********",
            "********",
            "MAIL FROM:<alice@example.com>",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "swaks 20201014.0",
        "unknown",
        "low",
        ["HELO vm", "MAIL FROM:<alice@example.com>", "RCPT TO:<bob@example.org>", "DATA", "QUIT"],
        pipelined=False,
        quit_sent=True,
        offered=False,
    ),
    Case(
        "curl 7.88.1",
        "curl",
        "low",
        [
            "EHLO msg.txt",
            "MAIL FROM:<alice@example.com> SIZE=68",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "curl 7.88.1",
        "curl",
        "low",
        [
            "EHLO pc.example.lan",
            "AUTH PLAIN",
            "********",
            "MAIL FROM:<alice@example.com> SIZE=68",
            "RCPT TO:<bob@example.org>",
            "RCPT TO:<carol@example.net>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "curl 7.88.1",
        "unknown",
        "low",
        ["EHLO vm", "MAIL FROM:<alice@example.com>", "RCPT TO:<bob@example.org>", "DATA", "QUIT"],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "PHPMailer 6.6.3",
        "unknown",
        "low",
        ["EHLO vm", "MAIL FROM:<alice@example.com>", "RCPT TO:<bob@example.org>", "DATA", "QUIT"],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "PHPMailer 6.6.3",
        "unknown",
        "low",
        [
            "EHLO vm",
            "AUTH LOGIN",
            "********",
            "********",
            "MAIL FROM:<alice@example.com>",
            "RCPT TO:<bob@example.org>",
            "RCPT TO:<carol@example.net>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Jakarta Mail 2.0.0",
        "unknown",
        "low",
        [
            "EHLO localhost",
            "MAIL FROM:<alice@example.com>",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Jakarta Mail 2.0.0",
        "unknown",
        "low",
        [
            "EHLO localhost",
            "AUTH LOGIN",
            "********",
            "********",
            "MAIL FROM:<alice@example.com>",
            "RCPT TO:<bob@example.org>",
            "RCPT TO:<carol@example.net>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Perl Net::SMTP 3.14",
        "unknown",
        "low",
        [
            "EHLO localhost.localdomain",
            "MAIL FROM:<alice@example.com>",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "msmtp 1.8.23",
        "unknown",
        "low",
        [
            "EHLO localhost",
            "MAIL FROM:<alice@example.com>",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "msmtp 1.8.23",
        "unknown",
        "low",
        [
            "EHLO localhost",
            "AUTH PLAIN ********",
            "MAIL FROM:<alice@example.com>",
            "RCPT TO:<bob@example.org>",
            "RCPT TO:<carol@example.net>",
            "DATA",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Nodemailer 6.10.1",
        "Nodemailer",
        "low",
        ["EHLO [127.0.0.1]", "MAIL FROM:<alice@example.com>", "RCPT TO:<bob@example.org>", "DATA"],
        pipelined=False,
        quit_sent=False,
        offered=True,
    ),
    Case(
        "Nodemailer 6.10.1",
        "Nodemailer",
        "low",
        [
            "EHLO [127.0.0.1]",
            "AUTH PLAIN ********",
            "MAIL FROM:<alice@example.com>",
            "RCPT TO:<bob@example.org>",
            "RCPT TO:<carol@example.net>",
            "DATA",
        ],
        pipelined=False,
        quit_sent=False,
        offered=True,
    ),
    Case(
        "Postfix 3.7.11",
        "MTA",
        "low",
        [
            "EHLO pc.example.lan",
            "MAIL FROM:<alice@example.lan> SIZE=267",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Postfix 3.7.11",
        "MTA",
        "low",
        [
            "EHLO pc.example.lan",
            "MAIL FROM:<alice@example.lan> SIZE=273",
            "RCPT TO:<carol@example.net>",
            "RCPT TO:<bob@example.org>",
            "DATA",
        ],
        pipelined=True,
        quit_sent=False,
        offered=True,
    ),
    Case(
        "Postfix 3.7.11",
        "MTA",
        "low",
        [
            "EHLO pc.example.lan",
            "MAIL FROM:<alice@example.lan> SIZE=361 BODY=8BITMIME",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Postfix 3.7.11",
        "MTA",
        "low",
        [
            "EHLO pc.example.lan",
            "MAIL FROM:<alice@example.lan> SIZE=267",
            "RCPT TO:<carol@example.net>",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Exim 4.96",
        "MTA",
        "low",
        [
            "EHLO pc.example.lan",
            "MAIL FROM:<alice@example.lan> SIZE=1337",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Exim 4.96",
        "MTA",
        "low",
        [
            "EHLO pc.example.lan",
            "MAIL FROM:<alice@example.lan> SIZE=1409",
            "RCPT TO:<bob@example.org>",
            "RCPT TO:<carol@example.net>",
            "DATA",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Exim 4.96",
        "MTA",
        "low",
        [
            "EHLO pc.example.lan",
            "MAIL FROM:<alice@example.lan> SIZE=1337",
            "RCPT TO:<bob@example.org>",
            "BDAT 314 LAST",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Exim 4.96",
        "MTA",
        "low",
        [
            "EHLO pc.example.lan",
            "MAIL FROM:<alice@example.lan> SIZE=1409",
            "RCPT TO:<bob@example.org>",
            "RCPT TO:<carol@example.net>",
            "BDAT 386 LAST",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "sendmail 8.17.1.9",
        "sendmail",
        "high",
        [
            "EHLO pc.example.lan",
            "MAIL From:<alice@example.lan> SIZE=20 AUTH=alice@example.lan",
            "RCPT To:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "sendmail 8.17.1.9",
        "sendmail",
        "high",
        [
            "EHLO pc.example.lan",
            "MAIL From:<alice@example.lan> SIZE=111 BODY=8BITMIME AUTH=alice@example.lan",
            "RCPT To:<carol@example.net>",
            "RCPT To:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
]

CORPUS: list[Case] = [
    # traces/smtp.pcap, first session: X-Mailer "Microsoft Office Outlook 12.0"
    Case(
        "Outlook 2007",
        "Outlook",
        "high",
        [
            "EHLO GP",
            "AUTH LOGIN",
            "********",
            "********",
            "MAIL FROM: <gurpartap@patriots.in>",
            "RCPT TO: <raj_deol2002in@yahoo.co.in>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    # other/OISF-suricata-verify/smtp-bug-5981: X-Mailer "Microsoft Office Outlook, Build 11.0"
    Case(
        "Outlook 2003",
        "Outlook",
        "high",
        [
            "EHLO Percival",
            "AUTH LOGIN",
            "********",
            "********",
            "MAIL FROM: <xxxxxx@xxxxx.co.uk>",
            "RCPT TO: <xxxxxx@xxxxx.co.uk>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    # traces/smtp.pcap, second session: X-Mailer "Apple Mail (2.2102)"; the capture ends
    # before QUIT
    Case(
        "Apple Mail 8.2",
        "Apple Mail",
        "low",
        [
            "EHLO [192.168.133.100]",
            "MAIL FROM:<albert@example.com>",
            "RCPT TO:<ericlim220@yahoo.com>",
            "RCPT TO:<felica4uu@hotmail.com>",
            "RCPT TO:<davis_mark1@outlook.com>",
            "DATA",
        ],
        pipelined=False,
        quit_sent=False,
        offered=False,
    ),
    # traces/smtp__smtp-bdat-pipeline-8bitmime.pcap: vger.kernel.org (ZMailer, not Postfix:
    # Postfix writes "MAIL FROM:" and puts SIZE before BODY, see RECORDED)
    Case(
        "ZMailer (vger.kernel.org)",
        "ZMailer",
        "high",
        [
            "EHLO vger.kernel.org",
            "MAIL From:<linux-kernel-owner@vger.kernel.org> BODY=8BITMIME SIZE=4333",
            "RCPT To:<trafficwatcher@foundit.scootmail.com>",
            "BDAT 4404 LAST",
            "MAIL From:<linux-kernel-owner@vger.kernel.org> BODY=8BITMIME SIZE=8546",
            "RCPT To:<trafficwatcher@foundit.scootmail.com>",
            "BDAT 8757 LAST",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    # other/arkime-arkime/smtp-zip.pcap: Mutt through the local sendmail ("Received: (from
    # user@localhost)"); the session is sendmail relaying
    Case(
        "sendmail relay",
        "sendmail",
        "high",
        [
            "EHLO xxxxxxxxxxxxx.xxx.com",
            "MAIL From:<xxxxx@xxx.net> SIZE=1379",
            "RCPT To:<xxxxxxxxx@xxxxxxx.com>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    # other/ntop-nDPI/smtp.pcap: "SMI-8.6/SMI-SVR4" sendmail; EHLO refused, HELO, no params
    Case(
        "sendmail 8.6",
        "sendmail",
        "low",
        [
            "EHLO delta.peach.mil",
            "HELO delta.peach.mil",
            "MAIL From:<coreys@delta.peach.mil>",
            "RCPT To:<camronm@pigeon.eyrie.af.mil>",
            "RCPT To:<melvynr@pigeon.eyrie.af.mil>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=False,
    ),
    # other/arkime-arkime/smtp-subject-8859-b.pcap: Microsoft-MacOutlook mail relayed by the
    # company's server: an MTA
    Case(
        "MTA relay",
        "MTA",
        "low",
        [
            "EHLO xxxxxxxxxxxxxxxxx1.xxxxx.net",
            "MAIL FROM:<xxxxxxxxx@xxxxxxx.com> SIZE=4894",
            "RCPT TO:<xxxxxxxx@gmail.com>",
            "DATA",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=True,
    ),
    # traces/smtp-one-side-only.pcap: smtplib's sendmail() (lower-case "size="); one-sided,
    # so whether PIPELINING was offered is not known
    Case(
        "Python smtplib",
        "Python smtplib",
        "high",
        [
            "ehlo enzo.icir.org",
            "mail FROM:<robin@icir.org> size=9030",
            "rcpt TO:<robin@icir.org>",
            "data",
            "mail FROM:<robin@icir.org> size=9031",
            "rcpt TO:<rsommer@lbl.gov>",
            "data",
            "quit",
        ],
        pipelined=True,
        quit_sent=True,
        offered=None,
    ),
    # other/OISF-suricata-verify/smtp-data-rejected: spambot (HELO a Verizon FiOS name, forged
    # dhl.com senders): space after MAIL FROM: but not after RCPT TO:, trailing space, no QUIT
    Case(
        "spambot (smtp-data-rejected)",
        "unknown",
        "low",
        [
            "EHLO 173-66-46-112.wash.fios.verizon.net",
            "MAIL FROM: <splotchiestzg0@gezydb01.apis.dhl.com> ",
            "RCPT TO:<mirjam@abrakadabra.ch>",
            "DATA",
            "RSET",
            "MAIL FROM: <uprootedx38@gateway2c.dhl.com> ",
            "RCPT TO:<mirjam@abrakadabra.ch>",
            "DATA",
        ],
        pipelined=True,
        quit_sent=False,
        offered=True,
    ),
    # other/OISF-suricata-verify/smtp-errors, second session: spambot to Yahoo's MX
    Case(
        "spambot (smtp-errors)",
        "unknown",
        "low",
        [
            "HELO [0.0.0.0]",
            "MAIL FROM: <Ina32@4447.com>",
            "RCPT TO: <jcastro2111@yahoo.com>",
            "DATA",
            "QUIT",
        ],
        pipelined=True,
        quit_sent=True,
        offered=False,
    ),
]

# Not recorded: built from Thunderbird's source (mozilla/releases-comm-central,
# mailnews/compose/src/SmtpClient.sys.mjs): EHLO "[address]" or "[IPV6:address]" unless a
# hello argument is configured; MAIL FROM:<a> + " BODY=8BITMIME" (when offered) + " SIZE=n";
# one command at a time; QUIT after 5 idle seconds.
THUNDERBIRD: list[Case] = [
    Case(
        "Thunderbird (source)",
        "Thunderbird",
        "high",
        [
            "EHLO [192.168.1.23]",
            "AUTH PLAIN ********",
            "MAIL FROM:<anna@example.com> BODY=8BITMIME SIZE=1234",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=True,
    ),
    Case(
        "Thunderbird (source), IPv6",
        "Thunderbird",
        "high",
        [
            "EHLO [IPV6:2001:db8::23]",
            "MAIL FROM:<anna@example.com>",
            "RCPT TO:<bob@example.org>",
            "DATA",
            "QUIT",
        ],
        pipelined=False,
        quit_sent=True,
        offered=False,
    ),
]


def steps(lines: list[str]) -> list[ClientStep]:
    """The recorded lines as the model parses them: AUTH keeps its mechanism only."""
    out = []
    for line in lines:
        verb, _, arg = line.partition(" ")
        if line == AUTH_LINE:
            out.append(ClientStep("", ""))
        elif verb.upper() == "AUTH":
            words = arg.split()
            out.append(ClientStep(verb, words[0].upper() if words else "", len(words) > 1))
        else:
            out.append(ClientStep(verb, arg))
    return out


def _fingerprint(
    lines: list[str],
    *,
    pipelined: bool,
    quit_sent: bool,
    greeting_seen: bool,
    pipelining_offered: bool | None = None,
) -> Dialect:
    return fingerprint(
        steps(lines),
        pipelined=pipelined,
        quit_sent=quit_sent,
        greeting_seen=greeting_seen,
        pipelining_offered=pipelining_offered,
    )


def _case(client: str, nth: int = 0) -> Case:
    """The nth session of a client in the tables."""
    return [case for case in RECORDED + CORPUS + THUNDERBIRD if case.client == client][nth]


def _run(case: Case) -> Dialect:
    return _fingerprint(
        list(case.commands),
        pipelined=case.pipelined,
        quit_sent=case.quit_sent,
        greeting_seen=case.greeting_seen,
        pipelining_offered=case.offered,
    )


@pytest.mark.parametrize("case", RECORDED + CORPUS + THUNDERBIRD, ids=lambda case: case.client)
def test_family(case: Case) -> None:
    found = _run(case)
    assert (found.family, found.confidence) == (case.family, case.confidence)


def test_no_family_is_claimed_by_another_recorded_client() -> None:
    """A recorded client is named as itself or "unknown", never as another family."""
    owners = {"Python smtplib": "Python smtplib", "curl": "curl", "Nodemailer": "Nodemailer"}
    owners |= {"sendmail": "sendmail", "Postfix": "MTA", "Exim": "MTA"}
    for case in RECORDED:
        family = _run(case).family
        own = next((f for name, f in owners.items() if case.client.startswith(name)), "unknown")
        assert family in (own, "unknown"), case


def test_features_of_a_recorded_mta_session() -> None:
    assert _run(_case("Postfix 3.7.11", 2)).features == (
        "EHLO",
        "name: domain name",
        "uppercase",
        "MAIL FROM:<> no space",
        "MAIL params: SIZE BODY=8BITMIME",
        "pipelined",
        "QUIT",
    )


def test_features_of_outlook() -> None:
    assert _run(_case("Outlook 2007")).features == (
        "EHLO",
        "name: dotless",
        "uppercase",
        "MAIL FROM: <> space",
        "AUTH LOGIN",
        "QUIT",
    )


def test_features_of_smtplib_show_its_case_and_initial_response() -> None:
    features = _run(_case("Python smtplib 3.11", 1)).features
    assert {"lowercase", "FROM:/TO: uppercase", "MAIL params: size"} <= set(features)
    assert "AUTH PLAIN with initial response" in features


def test_curl_answers_auth_plain_on_a_second_line() -> None:
    assert "AUTH PLAIN on a second line" in _run(_case("curl 7.88.1", 1)).features


def test_spambot_traits() -> None:
    bot = _run(_case("spambot (smtp-data-rejected)"))
    assert bot.family == "unknown"
    assert {"MAIL FROM: <> space", "RCPT TO:<> no space", "trailing space", "no QUIT"} <= set(
        bot.features
    )
    helo = _run(_case("spambot (smtp-errors)"))
    assert {"HELO", "name: address literal", "pipelined without PIPELINING offered"} <= set(
        helo.features
    )


def test_cutwail_style_session() -> None:
    """Cutwail (spamauditor.org, 2015): EHLO ylmf-pc, "Mail From:", MAIL FROM = RCPT TO, no
    QUIT, talking before the greeting."""
    found = _fingerprint(
        ["EHLO ylmf-pc", "Mail From: <a@example.com>", "Rcpt To: <a@example.com>", "Data"],
        pipelined=True,
        quit_sent=False,
        greeting_seen=False,
        pipelining_offered=True,
    )
    assert found == Dialect(
        "unknown",
        "low",
        (
            "EHLO",
            "name: dotless",
            "case varies",
            "MAIL FROM: <> space",
            "MAIL FROM = RCPT TO",
            "pipelined",
            "no QUIT",
            "talked before greeting",
        ),
    )


def test_helo_name_kinds() -> None:
    kinds = {}
    for name in ("203.0.113.5", "[203.0.113.5]", "[IPv6:2001:db8::5]", "localhost", "ylmf-pc"):
        found = _fingerprint(
            [f"HELO {name}", "QUIT"], pipelined=False, quit_sent=True, greeting_seen=True
        )
        kinds[name] = found.features[1]
    assert kinds == {
        "203.0.113.5": "name: bare IP",
        "[203.0.113.5]": "name: address literal",
        "[IPv6:2001:db8::5]": "name: IPv6 literal",
        "localhost": "name: localhost",
        "ylmf-pc": "name: dotless",
    }


def test_case_mixing_is_a_feature() -> None:
    found = _fingerprint(
        ["EHLO", "rset", "staRttLs"], pipelined=True, quit_sent=False, greeting_seen=True
    )
    assert found.features == (
        "EHLO",
        "name: none",
        "uppercase",
        "mixed-case verbs",
        "STARTTLS",
        "RSET",
        "pipelined",
        "no QUIT",
    )
    varied = _fingerprint(
        ["EHLO pc.example.lan", "mail from:<a@b.example>", "RCPT TO:<c@d.example>", "DATA"],
        pipelined=False,
        quit_sent=True,
        greeting_seen=True,
    )
    assert "case varies" in varied.features
    assert varied.family == "unknown"


def test_a_named_family_that_talks_first_is_low_confidence() -> None:
    found = _run(_case("Outlook 2007")._replace(greeting_seen=False))
    assert (found.family, found.confidence) == ("Outlook", "low")
    assert found.features[-1] == "talked before greeting"


def test_pipelining_not_offered_lowers_confidence() -> None:
    found = _run(_case("sendmail 8.17.1.9", 1)._replace(offered=False))
    assert (found.family, found.confidence) == ("sendmail", "low")
    assert "pipelined without PIPELINING offered" in found.features


def test_no_commands() -> None:
    assert _fingerprint([], pipelined=False, quit_sent=False, greeting_seen=True) == Dialect(
        "unknown", "low", ()
    )


def test_commands_without_mail_are_unknown() -> None:
    found = _fingerprint(
        ["EHLO desktop.unx.ca", "STARTTLS"], pipelined=False, quit_sent=False, greeting_seen=True
    )
    assert found == Dialect(
        "unknown", "low", ("EHLO", "name: domain name", "uppercase", "STARTTLS", "no QUIT")
    )
