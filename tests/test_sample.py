"""Check the bundled sample capture: reproducible, small, readable, and true to its plan."""

import shutil
import struct
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sample

TCPDUMP = shutil.which("tcpdump")


@dataclass
class Connection:
    """One TCP connection to an SMTP port as the test's own minimal decoder sees it."""

    syn: bool = False
    syn_ack: bool = False
    client: list[tuple[int, bytes]] = field(default_factory=list)
    server: list[tuple[int, bytes]] = field(default_factory=list)


def records(data: bytes) -> list[tuple[float, bytes]]:
    """Return (timestamp, frame) pairs of a little-endian microsecond pcap."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    assert struct.unpack_from("<I", data, 20)[0] == 1  # Ethernet
    result, offset = [], 24
    while offset < len(data):
        seconds, micros, caplen, length = struct.unpack_from("<IIII", data, offset)
        assert caplen == length
        result.append((seconds + micros / 1e6, data[offset + 16 : offset + 16 + caplen]))
        offset += 16 + caplen
    return result


def dissect(data: bytes) -> tuple[Counter[str], dict[tuple[str, int, str, int], Connection]]:
    """Classify frames and gather SMTP connections keyed by (client, port, server, port)."""
    kinds: Counter[str] = Counter()
    connections: dict[tuple[str, int, str, int], Connection] = {}
    for _, frame in records(data):
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        if ethertype == 0x0806:
            kinds["arp"] += 1
            continue
        assert ethertype == 0x0800
        ip = frame[14:]
        ihl, (total,), proto = (ip[0] & 15) * 4, struct.unpack_from("!H", ip, 2), ip[9]
        src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
        sport, dport = struct.unpack_from("!HH", ip, ihl)
        if proto == 17:
            kind = {53: "dns", 67: "dhcp", 68: "dhcp", 137: "netbios"}
            found = {kind[p] for p in (sport, dport) if p in kind}
            assert len(found) == 1
            kinds[found.pop()] += 1
            continue
        assert proto == 6
        seq, _, offset, flags = struct.unpack_from("!IIBB", ip, ihl + 4)
        payload = ip[ihl + (offset >> 4) * 4 : total]
        if 443 in (sport, dport):
            kinds["https"] += 1
            continue
        kinds["smtp"] += 1
        from_client = dport in sample.SMTP_PORTS
        key = (src, sport, dst, dport) if from_client else (dst, dport, src, sport)
        connection = connections.setdefault(key, Connection())
        connection.syn |= from_client and flags & 0x12 == 0x02
        connection.syn_ack |= not from_client and flags & 0x12 == 0x12
        if payload:
            (connection.client if from_client else connection.server).append((seq, payload))
    return kinds, connections


def stream(chunks: list[tuple[int, bytes]]) -> bytes:
    return b"".join(payload for _, payload in sorted(dict(chunks).items()))


def reply_codes(data: bytes) -> list[int]:
    """Return the code of every complete reply, stopping where TLS starts."""
    codes = []
    for line in data.split(b"\r\n"):
        if not (line[:3].isdigit() and line[3:4] in (b" ", b"-")):
            break
        if line[3:4] == b" ":
            codes.append(int(line[:3]))
            if line.startswith(b"220 2.0.0 Ready to start TLS"):
                break
    return codes


@pytest.fixture(scope="module")
def committed() -> bytes:
    return sample.DEFAULT_OUTPUT.read_bytes()


def test_regenerating_gives_the_committed_bytes(tmp_path: Path, committed: bytes) -> None:
    output = tmp_path / "office.pcap"
    # As README says to run it: as a script, from any folder.
    command = [sys.executable, sample.__file__, str(output)]
    subprocess.run(command, cwd=tmp_path, check=True, capture_output=True)
    assert output.read_bytes() == committed


def test_sample_is_small_and_spans_about_a_quarter_hour(committed: bytes) -> None:
    assert len(committed) < 1_000_000
    times = [ts for ts, _ in records(committed)]
    assert times == sorted(times)
    assert datetime.fromtimestamp(times[0], UTC).strftime("%Y-%m-%d %H:%M") == "2026-11-02 09:00"
    assert 10 * 60 <= times[-1] - times[0] <= 15 * 60


@pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")
def test_tcpdump_reads_the_sample_without_complaint(committed: bytes) -> None:
    result = subprocess.run(
        [str(TCPDUMP), "-nn", "-vv", "-r", str(sample.DEFAULT_OUTPUT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "incorrect" not in result.stdout and "bad cksum" not in result.stdout
    assert "truncated" not in result.stdout + result.stderr
    quiet = subprocess.run(
        [str(TCPDUMP), "-nn", "-q", "-r", str(sample.DEFAULT_OUTPUT)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(quiet.stdout.splitlines()) == len(records(committed))


def test_capture_holds_background_traffic(committed: bytes) -> None:
    kinds, _ = dissect(committed)
    background = ("arp", "dns", "https", "dhcp", "netbios")
    assert all(kinds[kind] > 0 for kind in background)
    assert kinds["smtp"] > sum(kinds[kind] for kind in background)


def test_every_planned_session_is_in_the_capture_as_planned(committed: bytes) -> None:
    _, connections = dissect(committed)
    scenario = sample.scenario()
    planned = {(s.client, s.client_port, s.server, s.server_port): s for s in scenario.sessions}
    assert planned.keys() == connections.keys()
    for key, session in planned.items():
        connection = connections[key]
        assert connection.syn
        assert connection.syn_ack == session.established
        server = stream(connection.server)
        client = stream(connection.client)
        assert reply_codes(server) == session.replies, key
        commands = client.split(b"STARTTLS\r\n")[0].split(b"\r\n")
        if session.helo is not None:
            assert commands[0] == f"{session.helo_verb} {session.helo}".encode()
        rcpts = [
            line[8:].strip(b" <>").decode() for line in commands if line.startswith(b"RCPT TO:")
        ]
        assert rcpts == [address for address, _ in session.rcpts]
        pairs = zip(session.replies, session.replies[1:], strict=False)
        assert session.messages == sum(pair == (354, 250) for pair in pairs)
        assert (b"QUIT\r\n" in client) == session.quit
        if session.tls:
            assert server.split(b"220 2.0.0 Ready to start TLS\r\n")[1][:3] == b"\x16\x03\x03"


def test_ground_truth_tells_the_story(committed: bytes) -> None:
    hosts = sample.scenario().hosts()
    bot = hosts.pop(sample.INFECTED)
    assert 6 <= len(hosts) <= 8
    for truth in hosts.values():
        assert truth.destinations == [sample.SMARTHOST] and truth.blocked == 0
        # Outlook says its computer name, Thunderbird its address in brackets
        assert truth.helos in ([truth.host.join("[]")], [truth.helos[0].upper()])
    assert sum(truth.tls for truth in hosts.values()) > 0
    assert sum(truth.messages for truth in hosts.values()) > 10
    assert sum(truth.codes[550] for truth in hosts.values()) == 1  # the recipient typo
    assert 40 <= len(bot.destinations) <= 60
    assert len(bot.attempted) > len(bot.destinations)  # a few SYNs went unanswered or refused
    assert bot.sessions > len(bot.destinations)  # greylist retries and second batches
    assert bot.blocked > bot.sessions // 2 and 0 < bot.messages < bot.sessions // 2
    assert bot.deferred > 0 and bot.codes[421] > 0 and bot.codes[553] > 0
    literals = (sample.INFECTED, sample.PUBLIC_IP, f"[{sample.PUBLIC_IP}]")
    assert any("." not in helo for helo in bot.helos)
    assert any(helo in literals for helo in bot.helos)
    assert not any(helo.endswith(".studio.lan") for helo in bot.helos)
    blocklists = {s.blocklist for s in sample.scenario().sessions if s.blocklist}
    assert {"zen.spamhaus.org", "cbl.abuseat.org"} <= blocklists and len(blocklists) == 5
