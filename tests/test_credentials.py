"""AUTH credentials never reach an output unless ``--show-credentials`` asks for them.

Hypothesis writes AUTH dialogues (PLAIN, LOGIN, CRAM-MD5, XOAUTH2, OAUTHBEARER; with and
without an initial response; refused at any step, cancelled with ``*``, pipelined, one
mechanism after another) into a capture, runs the real report in every form (table, JSON,
CSV, through the command's own entry point) and renders the transcripts as the monitor does,
then looks for every secret: raw, base64 with and without padding, and every credential line
as sent.  With ``--show-credentials`` the credential lines must appear, so that the search is
known to find them.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import string
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import synth
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from smtptop import cli
from smtptop.analysis import analyze
from smtptop.model import Model, apply
from smtptop.smtp import Side, SmtpParser
from smtptop.tui.rows import transcript_line
from smtptop.wire import encode

CLIENT, SERVER = "192.168.7.20", "198.51.100.7"
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2", "OAUTHBEARER")
OAUTH = ("XOAUTH2", "OAUTHBEARER")
CHALLENGE = base64.b64encode(b"<1896.697170952@mx.example>")
XOAUTH2_ERROR = base64.b64encode(b'{"status":"401","schemes":"bearer"}')


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


@dataclass(slots=True)
class Attempt:
    """One AUTH exchange as the client means it; ``refused_at`` is the step the server
    refuses (0: the AUTH command itself), ``cancel_at`` the step the client sends ``*``."""

    mechanism: str
    user: str
    secret: str
    initial: bool
    refused_at: int | None
    cancel_at: int | None
    pipelined: bool

    def steps(self) -> list[tuple[bytes, bytes]]:
        """(client line, server reply) of the whole exchange when nothing goes wrong."""
        user, secret = self.user.encode(), self.secret.encode()
        mechanism = self.mechanism
        command = b"AUTH " + mechanism.encode()
        if mechanism == "LOGIN":
            ask_password = (b"334 UGFzc3dvcmQ6", b"235 2.7.0 ok")
            if self.initial:
                return [
                    (command + b" " + b64(user), ask_password[0]),
                    (b64(secret), ask_password[1]),
                ]
            return [(command, b"334 VXNlcm5hbWU6"), (b64(user), ask_password[0]),
                    (b64(secret), ask_password[1])]  # fmt: skip
        if mechanism == "CRAM-MD5":
            digest = hmac.new(secret, base64.b64decode(CHALLENGE), hashlib.md5).hexdigest()
            return [(command, b"334 " + CHALLENGE), (b64(user + b" " + digest.encode()), b"235 ok")]
        if mechanism == "PLAIN":
            blob = b64(b"\0" + user + b"\0" + secret)
        elif mechanism == "XOAUTH2":
            blob = b64(b"user=" + user + b"\x01auth=Bearer " + secret + b"\x01\x01")
        else:
            blob = b64(
                b"n,a=" + user + b",\x01host=mx\x01port=587\x01auth=Bearer " + secret + b"\x01\x01"
            )
        if self.initial:
            return [(command + b" " + blob, b"235 ok")]
        return [(command, b"334 "), (blob, b"235 ok")]

    def exchange(self) -> tuple[list[bytes], list[bytes]]:
        """The client lines and server replies as they go on the wire, refusals, cancels and
        OAuth's error challenge included."""
        client: list[bytes] = []
        server: list[bytes] = []
        for index, (line, reply) in enumerate(self.steps()):
            if index == self.cancel_at and index > 0:
                client.append(b"*")
                server.append(b"501 5.7.0 cancelled")
                break
            client.append(line)
            if index == self.refused_at:
                if self.mechanism in OAUTH and (index > 0 or self.initial):  # the token
                    server.append(b"334 " + XOAUTH2_ERROR)  # the error, then a blank line
                    client.append(b"")
                server.append(b"535 5.7.8 authentication failed" if index else b"504 5.5.4 no")
                break
            server.append(reply)
        if self.pipelined:  # every line at once, then the replies to each of them
            extra = len(client) - len(server)
            server += [b"500 5.5.2 unrecognised"] * extra
        return client, server


@dataclass(slots=True)
class Dialogue:
    attempts: list[Attempt]
    sent: list[bytes] = field(default_factory=list)  # the credential lines that went out

    def script(self) -> list[tuple[str, bytes]]:
        steps = [
            ("S", b"220 mx.example ESMTP\r\n"),
            ("C", b"EHLO pc.office.example\r\n"),
            ("S", b"250-mx.example\r\n250-PIPELINING\r\n250 AUTH " + " ".join(MECHANISMS).encode()
             + b"\r\n"),
        ]  # fmt: skip
        for attempt in self.attempts:
            client, server = attempt.exchange()
            self.sent += [line for line in client if line not in (b"", b"*")]
            if attempt.pipelined:
                steps.append(("C", b"".join(line + b"\r\n" for line in client)))
                steps.append(("S", b"".join(line + b"\r\n" for line in server)))
                continue
            for line, reply in zip(client, server, strict=False):
                steps += [("C", line + b"\r\n"), ("S", reply + b"\r\n")]
        return [*steps, ("C", b"QUIT\r\n"), ("S", b"221 bye\r\n")]

    def forbidden(self) -> set[str]:
        """Every form in which a secret could leak."""
        found: set[str] = set()
        for attempt in self.attempts:
            encoded = b64(attempt.secret.encode()).decode()
            found |= {attempt.secret, encoded, encoded.rstrip("=")}
        for line in self.sent:
            words = line.split()
            if words[0] != b"AUTH" or len(words) == 3:  # a response, or an initial one
                blob = words[-1].decode()
                found |= {blob, blob.rstrip("=")}
        return found


PRINTABLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)
# random printable ASCII around a mark no report has, so a secret cannot occur by chance
SECRETS = st.builds(lambda left, right: f"{left}#pw#{right}", PRINTABLE, PRINTABLE)
USERS = st.builds(
    lambda name: f"u{name}@office.example", st.text(string.ascii_lowercase, min_size=3, max_size=8)
)


@st.composite
def auth_attempts(draw: st.DrawFn) -> Attempt:
    mechanism = draw(st.sampled_from(MECHANISMS))
    initial = mechanism != "CRAM-MD5" and draw(st.booleans())
    return Attempt(
        mechanism=mechanism,
        user=draw(USERS),
        secret=draw(SECRETS),
        initial=initial,
        refused_at=draw(st.sampled_from((None, 0, 1, 2))),
        cancel_at=draw(st.sampled_from((None, None, 1, 2))),
        pipelined=draw(st.booleans()),
    )


def capture(dialogue: Dialogue, path: Path) -> Path:
    conv = synth.Conversation(CLIENT, 41000, SERVER, 587, start=1_800_000_000.0)
    conv.smtp(dialogue.script())
    conv.close()
    synth.write_pcap(path, conv.frames, synth.LINKTYPE_ETHERNET)
    return path


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON document, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def report_texts(path: Path, tmp: Path) -> list[str]:
    """The report in every form, through ``smtptop report``'s entry point, and each form's
    strings as a reader sees them (JSON and CSV decoded: a quote is escaped in the file)."""
    texts = []
    for form in ("--table", "--json", "--csv"):
        out = tmp / f"report{form}"
        argv = ["report", str(path), "-o", str(out), "--error-log", str(tmp / "errors.log")]
        assert cli.main([*argv, form] if form != "--table" else argv) == 0
        text = out.read_text()
        texts.append(text)
        if form == "--json":
            texts += strings(json.loads(text))
        elif form == "--csv":
            texts += [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    return texts


def monitor_texts(path: Path, *, show_credentials: bool) -> tuple[list[str], list[str]]:
    """The transcripts as the monitor draws them, and the sessions' AUTH users."""
    model = analyze([str(path)], show_credentials=show_credentials, workers=0).model
    sessions = model.sessions()
    lines = [transcript_line(line).plain for s in sessions for line in s.transcript]
    return lines, [s.auth_user for s in sessions]


def check(dialogue: Dialogue, tmp: Path) -> None:
    path = capture(dialogue, tmp / "auth.pcap")
    forbidden = dialogue.forbidden()
    transcript, users = monitor_texts(path, show_credentials=False)
    for text in [*report_texts(path, tmp), *transcript]:
        leaked = [secret for secret in forbidden if secret in text]
        assert not leaked, f"{leaked} in {text[:300]!r}"
    assert set(users) <= {"", *(a.user for a in dialogue.attempts)}
    shown, _ = monitor_texts(path, show_credentials=True)
    for line in dialogue.sent:  # revealed on request: the search above can find them
        assert any(line.decode() in text for text in shown), line


def attempt(mechanism: str, **changes: Any) -> Attempt:
    fields = {"user": "ualice@office.example", "secret": "Sup3r-S3cret-pw", "initial": False,
              "refused_at": None, "cancel_at": None, "pipelined": False} | changes  # fmt: skip
    return Attempt(mechanism, **fields)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tries=st.lists(auth_attempts(), min_size=2, max_size=3))  # a switch at least
@example(tries=[attempt("LOGIN", refused_at=0), attempt("PLAIN", secret="plain-Secret-1")])
@example(tries=[attempt("LOGIN", refused_at=0), attempt("XOAUTH2", secret="ya29.Token-xyz")])
@example(
    tries=[attempt("LOGIN", refused_at=0, pipelined=True), attempt("OAUTHBEARER", initial=True)]
)
@example(tries=[attempt("LOGIN", cancel_at=1), attempt("CRAM-MD5", secret="cram-Secret-2")])
def test_no_secret_in_any_output(tries: list[Attempt], tmp_path: Path) -> None:
    check(Dialogue(tries), tmp_path)


def test_the_report_command_masks_a_refused_login_then_plain(tmp_path: Path) -> None:
    """The finding as reported: AUTH LOGIN refused at once, then AUTH PLAIN after a 334."""
    dialogue = Dialogue([attempt("LOGIN", refused_at=0), attempt("PLAIN", secret="plain-S3cret!")])
    path = capture(dialogue, tmp_path / "auth.pcap")
    forbidden = dialogue.forbidden()
    for form in ([], ["--json"], ["--csv"]):
        out = subprocess.run(
            [sys.executable, "-m", "smtptop", "report", str(path), *form,
             "--error-log", str(tmp_path / "errors.log")],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert not [secret for secret in forbidden if secret in out]
        if form == ["--json"]:
            assert json.loads(out)["sessions"][0]["auth_user"] == "ualice@office.example"


@pytest.mark.parametrize(
    ("mechanism", "message", "user"),
    [
        ("XOAUTH2", b"auth=Bearer tok,a=evil\x01user=bob@x.example\x01\x01", "bob@x.example"),
        ("XOAUTH2", b"auth=Bearer user=tok\x01\x01", ""),
        ("OAUTHBEARER", b"n,a=b=2Cob@x.example,\x01auth=Bearer a=tok\x01\x01", "b,ob@x.example"),
        ("OAUTHBEARER", b"n,,\x01auth=Bearer tok,a=evil\x01\x01", ""),
        ("CRAM-MD5", b"0123456789abcdef0123456789abcdef", ""),  # a digest alone names nobody
        ("PLAIN", b"only\0two", ""),
    ],
)
@pytest.mark.parametrize("initial", [True, False])
def test_the_user_is_never_read_from_a_token(
    mechanism: str, message: bytes, user: str, initial: bool
) -> None:
    command = f"AUTH {mechanism}".encode()
    steps = [(command + b" " + b64(message), b"235 ok")]
    if not initial:
        steps = [(command, b"334 " + (CHALLENGE if mechanism == "CRAM-MD5" else b"")),
                 (b64(message), b"235 ok")]  # fmt: skip
    model = Model()
    model.open_session(1, (CLIENT, 41000), (SERVER, 587), 0.0, midstream=False)
    parser = SmtpParser()
    parser.receive_data(Side.SERVER, b"220 mx\r\n", 0.0)
    for line, reply in steps:
        parser.receive_data(Side.CLIENT, line + b"\r\n", 1.0)
        parser.receive_data(Side.SERVER, reply + b"\r\n", 1.0)
    for event in parser.events():
        apply(model, encode([(1, event)]))
    assert model.open[1].auth_user == user
