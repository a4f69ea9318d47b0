"""A short, bounded pass of the fuzz harness (tests/fuzz_engine.py), and the inputs it found.

The long runs are in tests/FUZZING.md; this pass keeps the harness working and catches
regressions that even a few thousand mutated inputs reach.  It needs no atheris.
"""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

import pytest
from fuzz_engine import (
    PACKAGE,
    Checker,
    FuzzInput,
    _exception_signature,
    _Wire,
    check,
    check_resources,
    corpus,
    fuzz,
    resources,
    seed_inputs,
    timeline,
)

from smtptop import identity
from smtptop.capture import CaptureFile
from smtptop.decode import LINKTYPE_ETHERNET

SMOKE_INPUTS = 3000
SMOKE_SECONDS = 18.0


def test_every_seed_passes_every_check(tmp_path: Path) -> None:
    """The seeds are valid traffic: any finding on them is a bug in the engine or harness."""
    path = str(tmp_path / "input")
    for data in seed_inputs():
        assert check(data, path) == []


def test_the_seeds_reach_every_part_of_the_engine() -> None:
    """SMTP on every link type and both IP versions, and the identity protocols."""
    sessions, identities = [], []
    for seed in corpus().engine:
        checker = Checker(tiny=False)
        for ts, linktype, frame in timeline(seed):
            checker.feed(ts, linktype, frame)
        assert checker.finish() == []
        sessions += checker.model.sessions()
        identities += checker.model.identities.values()
    assert {s.server_port for s in sessions} == {25, 465, 587, 2525}
    assert {s.outcome for s in sessions} >= {"rejected", "tempfailed", "tls", "no-mail"}
    assert any(s.midstream for s in sessions) and any(s.gaps for s in sessions)
    assert {source for i in identities for source in i.names} == {
        "dhcp", "dhcp-fqdn", "dns-ptr", "nbns", "mdns", "llmnr"
    }  # fmt: skip
    assert any(i.mac for i in identities)


def test_the_checker_sees_exceptions_the_analyzer_catches(monkeypatch: pytest.MonkeyPatch) -> None:
    """A caught exception is a lost packet: the harness must report it, with its place.
    The failure is planted in identity (pure Python in both builds: a compiled module's
    functions cannot be replaced), which the analyzer calls for an ARP frame."""
    checker = Checker(tiny=False)

    def broken(*_args: object) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(identity, "observe", broken)
    arp = b"\xff" * 6 + b"\x02" * 6 + b"\x08\x06" + bytes(28)
    checker.feed(1.0, LINKTYPE_ETHERNET, arp)
    signatures = [f.signature for f in checker.finish()]
    assert signatures == ["caught:ZeroDivisionError@analyzer.py:_skipped"]


def test_a_signature_names_the_package_not_a_folder_called_smtptop() -> None:
    """A clone named smtptop (git's default) puts "smtptop" in every test file's path: the
    place of a finding is still the innermost frame inside the package itself."""
    text = (
        "Traceback (most recent call last):\n"
        f'  File "{PACKAGE}analyzer.py", line 10, in feed\n'
        '  File "/home/me/smtptop/tests/test_fuzz_smoke.py", line 5, in broken\n'
        '  File "/srv/smtptop-dev/smtptop.py", line 7, in helper\n'
        "ZeroDivisionError: division by zero\n"
    )
    assert _exception_signature("caught", text=text) == "caught:ZeroDivisionError@analyzer.py:feed"


def test_fuzz_smoke() -> None:
    """The seeds, then a few thousand mutated frames and capture files: nothing unknown."""
    report = fuzz(SMOKE_INPUTS, seed=0, deadline=time.monotonic() + SMOKE_SECONDS)
    assert report.inputs >= 1000, f"only {report.inputs} inputs in {SMOKE_SECONDS} s"
    details = {s: report.findings[s][1] for s in report.unknown()}
    assert not details, details
    assert report.slowest < 2.0


def test_hostile_inputs_stay_within_their_budget() -> None:
    """A few seconds of the resource mode: hostile inputs of 4 to 64 KB (out-of-order floods,
    empty lines, replies, AUTH dialogues, garbage lines), every invariant and the budget."""
    report = resources(4.0, seed=0, sizes=(1 << 12, 1 << 16))
    assert report.inputs >= 10
    details = {s: report.findings[s][1] for s in report.unknown()}
    assert not details, details


def test_a_line_feed_flood_stays_within_the_event_budget() -> None:
    """1 MB of bare LFs was an event a byte (1,069,070 events, the budget allows 535,000)."""
    wire = _Wire(random.Random(3))
    wire.send(1, b"220 mx\r\n")
    for _ in range(120):
        wire.send(0, b"\n" * 8900)
    cost, found = check_resources(FuzzInput(0, frames=wire.records).encode())
    assert found == []
    assert cost.events <= 5


# --- regression inputs -------------------------------------------------------------------------


def _pcapng_with_idb(options: bytes) -> bytes:
    """A section header and one interface block whose options end where ``options`` ends."""

    def block(kind: int, body: bytes) -> bytes:
        return struct.pack("<II", kind, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    return shb + block(1, struct.pack("<HHI", 1, 0, 0) + options)


@pytest.mark.parametrize(
    "option", [struct.pack("<HH", 9, 1), struct.pack("<HH", 14, 8)], ids=["tsresol", "tsoffset"]
)
def test_idb_option_cut_short(option: bytes, tmp_path: Path) -> None:
    """An if_tsresol or if_tsoffset option longer than its block is a truncation (it was an
    IndexError or struct.error out of CaptureFile, found by fuzzing)."""
    path = tmp_path / "cut.pcapng"
    path.write_bytes(_pcapng_with_idb(option))
    capture = CaptureFile(str(path))
    assert list(capture) == []
    assert capture.truncated == "interface block with an option cut short after 0 records"


# Inputs the long fuzz runs found (tests/FUZZING.md), shrunk with ``fuzz_engine.py minimize``.
FOUND_IDB_CUT_SHORT = bytes.fromhex(
    "030a0d0d0a1c0000004d3c2b1a01000000ffffffffffffffff1c000000010000002c00000001000000000000"
    "0009000100940000000e000800010000000000000009000100940000000e00"
)
# Raw IP frames of a session seen mid-stream: an ACK, then two data segments each after a
# hole; giving up on the first hole leaves the second (660 bytes) buffered, over the tiny
# limits' max_ooo_bytes of 512.
FOUND_OOO_OVER_LIMIT = (
    bytes.fromhex(
        "02040028004500002870f140004006ddf2c0a80107c6336409c35600195dd2ecd20259356c5010faf0831d00"
        "00040065004500006570f340004006ddb3c0a80107c6336409c35600195dd2ece7025935d85018faf0c75c00"
        "004d41494c2046524f4d3a3c616c696365406f66666963652e6578616d706c653e0d0a5243505420544f3a3c"
        "626f62406578616d706c652e6f72673e0d0a0400bc02450002bc0000400040064c50c0a80107c6336409c356"
        "00195dd2ed460259361c5018faf0e8a80000"
    )
    + b"STARTTLS\r\n\xff\xfe500 what\r\n" * 30
)


def test_found_idb_option_cut_short(tmp_path: Path) -> None:
    """Was an IndexError out of CaptureFile."""
    assert check(FOUND_IDB_CUT_SHORT, str(tmp_path / "input")) == []


def test_found_out_of_order_store_over_its_limit(tmp_path: Path) -> None:
    """Was an out-of-order store over max_ooo_bytes: one hole given up per segment."""
    assert check(FOUND_OOO_OVER_LIMIT, str(tmp_path / "input")) == []
