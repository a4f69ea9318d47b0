"""The client of tests/test_live_capture.py: a known SMTP scenario, and what it saw happen.

Usage: ``python tests/live_client.py PLAN_JSON``, inside the test's client namespace.  The plan
names the client's two addresses (a LAN one and an outside one), the server addresses (see
live_servers.py), the submission account, the first local port and the swaks binary (empty:
no swaks sessions).  Every session binds its own local port, so the port alone identifies it.

It prints JSON ``{"sessions": [...]}``: per session the local address and port, the server,
the first line of the greeting, the last HELO/EHLO name, the envelope addresses sent and every
reply code with the stage it answered (``greeting``, a command verb, ``AUTH`` for credential
lines, ``end of data``).  That is the client's own account, the ground truth that the test
holds smtptop's analysis to.  No credential is ever written to it.
"""

from __future__ import annotations

import json
import re
import smtplib
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

TIMEOUT = 10.0
MAX_REPLY_LINES = 100
VERBS = frozenset({"EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "AUTH"})
HELO = "pc-042.corp.example"
SWAKS_LINE = re.compile(r"^(?: ->|<-|<\*\*) ")


@dataclass
class Record:
    """What one session did and saw."""

    name: str
    tool: str
    server: str
    client_ip: str
    client_port: int
    greeting: str = ""
    helo: str = ""
    mail_from: list[str] = field(default_factory=list)
    rcpt_to: list[str] = field(default_factory=list)
    exchanges: list[tuple[str, int]] = field(default_factory=list)
    auth_user: str = ""
    error: str = ""


def message(sender: str, recipients: list[str], subject: str, body: str) -> str:
    return (
        f"From: {sender}\r\nTo: {', '.join(recipients)}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@corp.example>\r\n\r\n{body}"
    )


# A body with lines that need dot-stuffing, and one big enough to span many TCP segments.
DOTTED = "Hello,\r\n.\r\n..two dots\r\n.leading dot\r\nBye.\r\n"
BIG = "".join(f"line {i:06d} {'x' * 60}\r\n" for i in range(4000))


class RecordingSMTP(smtplib.SMTP):
    """smtplib, noting every command's stage and the reply code it got back."""

    def __init__(self, record: Record) -> None:
        self.record = record
        self.stage = "greeting"
        source = (record.client_ip, record.client_port)
        super().__init__(local_hostname=HELO, timeout=TIMEOUT, source_address=source)

    def connect(self, host: str = "localhost", port: int = 0, source_address: Any = None):
        code, text = super().connect(host, port, source_address)
        self.record.greeting = text.decode("utf-8", "replace").splitlines()[0]
        return code, text

    def putcmd(self, cmd: str, args: str = "") -> None:
        verb = cmd.split(" ", 1)[0].upper()
        # A line that is no verb can only be a response inside an AUTH exchange.
        self.stage = verb if verb in VERBS else "AUTH"
        if verb in ("EHLO", "HELO"):
            self.record.helo = args
        super().putcmd(cmd, args)

    def getreply(self) -> tuple[int, bytes]:
        code, text = super().getreply()
        self.record.exchanges.append((self.stage, code))
        if self.stage == "DATA" and code == 354:
            self.stage = "end of data"
        return code, text

    def mail(self, sender: str, options: Any = ()) -> tuple[int, bytes]:
        self.record.mail_from.append(sender)
        return super().mail(sender, options)

    def rcpt(self, recip: str, options: Any = ()) -> tuple[int, bytes]:
        self.record.rcpt_to.append(recip)
        return super().rcpt(recip, options)


Steps = Callable[[RecordingSMTP], None]


def smtplib_session(record: Record, steps: Steps) -> Record:
    """Connect, run ``steps`` if greeted with 220 (else try EHLO, as a bot would), QUIT."""
    host, port = record.server.rsplit(":", 1)
    smtp = RecordingSMTP(record)
    try:
        code, _ = smtp.connect(host, int(port))
        if code == 220:
            steps(smtp)
        else:
            smtp.ehlo()
        smtp.quit()
    finally:
        smtp.close()
    return record


def send(sender: str, recipients: list[str], subject: str, body: str = DOTTED) -> Steps:
    def steps(smtp: RecordingSMTP) -> None:
        smtp.ehlo()
        deliver(smtp, sender, recipients, subject, body)

    return steps


def deliver(
    smtp: RecordingSMTP, sender: str, recipients: list[str], subject: str, body: str = DOTTED
) -> None:
    try:
        smtp.sendmail(sender, recipients, message(sender, recipients, subject, body))
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
        smtp.record.error = type(exc).__name__  # refused: the reply codes tell the story


def two_messages(smtp: RecordingSMTP) -> None:
    smtp.ehlo()
    deliver(smtp, "alice@corp.example", ["bob@accept.test"], "first", BIG)
    deliver(smtp, "alice@corp.example", ["carol@accept.test"], "second")


def helo_only_then_mail(smtp: RecordingSMTP) -> None:
    smtp.helo()
    deliver(smtp, "printer@corp.example", ["it@accept.test"], "scan")


def ehlo_only(smtp: RecordingSMTP) -> None:
    smtp.ehlo()


def authenticated(plan: dict[str, Any], mechanism: str, password: str, *, initial: bool) -> Steps:
    def steps(smtp: RecordingSMTP) -> None:
        smtp.ehlo()
        smtp.user, smtp.password = plan["user"], password
        smtp.record.auth_user = plan["user"]
        method = smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login
        try:
            smtp.auth(mechanism, method, initial_response_ok=initial)
        except smtplib.SMTPAuthenticationError as exc:
            smtp.record.error = type(exc).__name__
            return
        deliver(smtp, plan["user"], ["boss@partner.test"], f"report {mechanism}")

    return steps


def pipelined_session(record: Record) -> Record:
    """MAIL, two RCPTs and DATA in one write, as PIPELINING (RFC 2920) allows."""
    host, port = record.server.rsplit(":", 1)
    sender, recipients = "newsletter@corp.example", ["x@accept.test", "y@accept.test"]
    source = (record.client_ip, record.client_port)
    with socket.create_connection((host, int(port)), TIMEOUT, source_address=source) as sock:
        replies = sock.makefile("rb")

        def expect(stage: str) -> int:
            for _ in range(MAX_REPLY_LINES):
                line = replies.readline()
                if len(line) < 4 or line[3:4] != b"-":
                    break
            code = int(line[:3])
            record.exchanges.append((stage, code))
            if stage == "greeting":
                record.greeting = line[4:].decode("utf-8", "replace").strip()
            return code

        expect("greeting")
        record.helo = HELO
        sock.sendall(f"EHLO {HELO}\r\n".encode())
        expect("EHLO")
        record.mail_from.append(sender)
        record.rcpt_to.extend(recipients)
        batch = [f"MAIL FROM:<{sender}>", *(f"RCPT TO:<{r}>" for r in recipients), "DATA", ""]
        sock.sendall("\r\n".join(batch).encode())
        for stage in ("MAIL", *("RCPT" for _ in recipients), "DATA"):
            last = expect(stage)
        if last == 354:
            text = message(sender, recipients, "pipelined", "Pipelined body.\r\n")
            sock.sendall(text.encode() + b".\r\n")
            expect("end of data")
        sock.sendall(b"QUIT\r\n")
        expect("QUIT")
    return record


def swaks_session(swaks: str, record: Record, *options: str) -> Record:
    """Run swaks and read its transcript: ``->`` lines it sent, ``<-``/``<**`` replies."""
    host, port = record.server.rsplit(":", 1)
    command = [swaks, "--server", host, "--port", port, "--local-interface", record.client_ip]
    command += ["--local-port", str(record.client_port), "--timeout", "10", *options]
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode:
        record.error = f"swaks exited {done.returncode}"
    stages, codes, body = ["greeting"], [], False
    for line in done.stdout.splitlines():
        if not SWAKS_LINE.match(line):
            continue
        arrow, text = line[:3].strip(), line[4:].strip()
        if arrow != "->":
            if not codes and not record.greeting:
                record.greeting = text[4:]
            if text[3:4] != "-":
                codes.append(int(text[:3]))
                body = body or int(text[:3]) == 354
            continue
        if body:
            if text == ".":
                stages.append("end of data")
                body = False
            continue
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        stages.append(verb if verb in VERBS else "AUTH")
        if verb in ("EHLO", "HELO"):
            record.helo = arg
        elif verb in ("MAIL", "RCPT"):
            address = arg.partition(":")[2].strip().strip("<>")
            (record.mail_from if verb == "MAIL" else record.rcpt_to).append(address)
    record.exchanges = list(zip(stages, codes, strict=False))
    return record


def scenario(plan: dict[str, Any]) -> list[Record]:
    """Every session of the scenario, in order."""
    port = iter(range(plan["first_port"], plan["first_port"] + 100))
    accept, submission = f"{plan['accept']}:25", f"{plan['submission']}:587"
    password, wrong = plan["password"], plan["wrong_password"]

    def rec(name: str, server: str, tool: str = "smtplib", ip: str = plan["client_ip"]) -> Record:
        return Record(name, tool, server, ip, next(port))

    three = ["bob@accept.test", "carol@accept.test", "dave@accept.test"]
    records = [
        smtplib_session(rec("three-rcpt", accept), send("alice@corp.example", three, "hi")),
        smtplib_session(rec("two-messages", accept), two_messages),
        smtplib_session(rec("helo", accept), helo_only_then_mail),
        pipelined_session(rec("pipelined", accept, "socket")),
        smtplib_session(
            rec("spam-at-end-of-data", accept), send("bot@corp.example", ["v@a.test"], "spam")
        ),
        smtplib_session(rec("blocked-at-greeting", f"{plan['blocked']}:25"), ehlo_only),
        smtplib_session(
            rec("rbl-at-rcpt", f"{plan['rbl']}:25"),
            send("bot@corp.example", ["postmaster@rbl.test", "victim@rbl.test"], "offer"),
        ),
        smtplib_session(
            rec("greylisted", f"{plan['greylist']}:25"),
            send("bot@corp.example", ["someone@grey.test"], "offer"),
        ),
        smtplib_session(rec("ehlo-then-quit", accept), ehlo_only),
        smtplib_session(
            rec("outsider", accept, ip=plan["outsider_ip"]),
            send("guest@elsewhere.example", ["bob@accept.test"], "hello from outside"),
        ),
        smtplib_session(
            rec("auth-plain", submission), authenticated(plan, "PLAIN", password, initial=True)
        ),
        smtplib_session(
            rec("auth-login", submission), authenticated(plan, "LOGIN", password, initial=False)
        ),
        smtplib_session(
            rec("auth-login-initial", submission),
            authenticated(plan, "LOGIN", password, initial=True),
        ),
        smtplib_session(
            rec("auth-wrong-password", submission),
            authenticated(plan, "PLAIN", wrong, initial=True),
        ),
    ]
    swaks = plan.get("swaks")
    if swaks:
        records.append(
            swaks_session(
                swaks,
                rec("swaks-pipelined", accept, "swaks"),
                *("--helo", "swaks.corp.example", "--from", "eve@corp.example"),
                *("--to", "a@accept.test,b@accept.test", "--pipeline"),
            )
        )
        auth = swaks_session(
            swaks,
            rec("swaks-auth-login", submission, "swaks"),
            *("--helo", "swaks.corp.example", "--from", plan["user"], "--to", "z@partner.test"),
            *("--auth", "LOGIN", "--auth-user", plan["user"], "--auth-password", password),
        )
        auth.auth_user = plan["user"]
        records.append(auth)
    return records


def main() -> None:
    plan = json.loads(sys.argv[1])
    json.dump({"sessions": [asdict(r) for r in scenario(plan)]}, sys.stdout)


if __name__ == "__main__":
    main()
