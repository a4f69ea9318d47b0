"""Flood an interface with a capture file's frames, for tests/test_live_gateway.py.

Usage: ``python tests/live_flood.py IFACE PCAP ROUNDS``, inside the test's sending namespace,
with smtptop importable.  Sends every frame of PCAP out of IFACE, ROUNDS times over, as fast
as a raw packet socket takes them: far faster than smtptop analyses, so the kernel has to drop
packets at the capture.  Prints the number of frames sent.
"""

from __future__ import annotations

import socket
import sys

from smtptop.capture import CaptureFile


def main() -> None:
    iface, path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    frames = [data for _ts, _linktype, data in CaptureFile(path)]
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        for _ in range(rounds):
            for frame in frames:
                sock.send(frame)
    print(len(frames) * rounds)


if __name__ == "__main__":
    main()
