"""Real SMTP servers for tests/test_live_capture.py, run inside the test's server namespace.

Usage: ``python tests/live_servers.py PLAN_JSON``.  PLAN_JSON names an address for each role
(``accept``, ``blocked``, ``rbl``, ``greylist``, ``submission``) and the submission account
(``user``, ``password``).  The roles are the answers a spambot meets in the wild, so the
capture holds real aiosmtpd replies rather than synthesised ones:

* accept: aiosmtpd accepting everything, with PIPELINING advertised, except a message whose
  Subject mentions spam, which is refused at the end of data;
* blocked: a 554 greeting naming a DNS blocklist, then 503 to all but QUIT (RFC 5321 3.1);
* rbl: 550 at RCPT naming a blocklist, except for postmaster (which RFC 5321 4.5.1 keeps open);
* greylist: 450 at RCPT;
* submission: port 587, AUTH PLAIN/LOGIN required, without TLS (the point is to see it).

The process stops by itself after ``lifetime`` seconds and on SIGTERM/SIGINT, so that a test
that dies cannot leave it running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import warnings
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

BLOCKED_GREETING = (
    "554 5.7.1 Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org"
)
RBL_REJECT = (
    "550 5.7.1 Service unavailable; Client host [198.51.100.7] blocked using cbl.abuseat.org"
)
GREYLISTED = "450 4.7.1 greylisted, try again later"
SPAM_REJECT = "554 5.7.1 Message rejected as spam"
MAX_COMMANDS = 50  # the blocked server hangs up after this many commands
IDLE_TIMEOUT = 10.0


class AcceptHandler:
    """Accept every envelope; refuse spam at the end of data; advertise PIPELINING."""

    def __init__(self) -> None:
        self.queued = 0

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        headers = content.split(b"\r\n\r\n", 1)[0].lower()
        if b"subject:" in headers and b"spam" in headers:
            return SPAM_REJECT
        self.queued += 1
        return f"250 2.0.0 Ok: queued as {self.queued:08X}"


class RcptHandler(AcceptHandler):
    """Answer every RCPT (but postmaster's) with one fixed refusal."""

    def __init__(self, refusal: str, *, postmaster_ok: bool) -> None:
        super().__init__()
        self.refusal = refusal
        self.postmaster_ok = postmaster_ok

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if self.postmaster_ok and address.lower().startswith("postmaster@"):
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"
        return self.refusal


def authenticator(user: str, password: str) -> Any:
    """An aiosmtpd authenticator that knows one account."""

    def check(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok, handled=False)

    return check


async def blocked_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A server that refuses at connect: 554 greeting, 503 to everything but QUIT."""
    try:
        writer.write(BLOCKED_GREETING.encode() + b"\r\n")
        for _ in range(MAX_COMMANDS):
            line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
            if not line:
                break
            if line.strip().upper() == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                break
            writer.write(b"503 5.5.1 Error: bad sequence of commands\r\n")
            await writer.drain()
        await writer.drain()
    except (TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(plan: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def smtp(handler: Any, name: str, **options: Any) -> Any:
        return lambda: SMTP(
            handler, hostname=name, ident="ESMTP test", timeout=IDLE_TIMEOUT, loop=loop, **options
        )

    factories = {
        ("accept", 25): smtp(AcceptHandler(), "mx1.accept.test"),
        ("rbl", 25): smtp(RcptHandler(RBL_REJECT, postmaster_ok=True), "mx.rbl.test"),
        ("greylist", 25): smtp(RcptHandler(GREYLISTED, postmaster_ok=False), "mx.grey.test"),
        ("submission", 587): smtp(
            AcceptHandler(),
            "smtp.submit.test",
            auth_required=True,
            auth_require_tls=False,
            authenticator=authenticator(plan["user"], plan["password"]),
        ),
    }
    servers = [
        await loop.create_server(factory, plan[role], port)
        for (role, port), factory in factories.items()
    ]
    servers.append(await asyncio.start_server(blocked_client, plan["blocked"], 25))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), plan.get("lifetime", 60))
    for server in servers:
        server.close()


def main() -> None:
    # aiosmtpd warns about AUTH without TLS (the point here) and about its own deprecations.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    asyncio.run(serve(json.loads(sys.argv[1])))


if __name__ == "__main__":
    main()
