"""Run inside a test's network namespace: open smtptop's PACKET_FANOUT group of capture
sockets on one end of a veth pair, send the frames given on stdin (JSON, hex) from the other
end, and print, as JSON, the frames each socket of the group received."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time

from smtptop.live import open_group

IDLE_SECONDS = 1.0  # nothing more for this long after the last frame sent: all arrived
LIMIT_SECONDS = 10.0


def main() -> None:
    sender_iface, capture_iface, count, ports = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        sys.argv[4],
    )
    frames = [bytes.fromhex(f) for f in json.load(sys.stdin)]
    group = open_group(capture_iface, count, ports=[int(p) for p in ports.split(",")])
    sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sender.bind((sender_iface, 0))
    for frame in frames:
        sender.send(frame)
    sender.close()
    received: list[list[str]] = []
    for part in group.parts:
        stop, seen, quiet_since = threading.Event(), [], time.monotonic()
        deadline = time.monotonic() + LIMIT_SECONDS
        for record in part.frames(stop):
            if record is not None:
                seen.append(record[2].hex())
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= IDLE_SECONDS or time.monotonic() > deadline:
                stop.set()
        received.append(seen)
    group.close()
    json.dump(received, sys.stdout)


if __name__ == "__main__":
    main()
