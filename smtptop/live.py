"""Live capture on a network interface (a hub or a switch's SPAN port).

Frames come raw from scapy's AF_PACKET listen socket (``recv_raw``: no per-packet
dissection, VLAN tags restored from the kernel's auxiliary data, nanosecond timestamps).
The kernel filters them first with the built-in BPF program of :mod:`smtptop.bpf`, which
needs no libpcap; the socket buffer is raised so that bursts are not lost, and the kernel's
own drop counter is read with ``PACKET_STATISTICS`` so that loss is shown, never silent.
Once the socket is open, root is dropped, as tcpdump's ``-Z`` does.
"""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import os
import pwd
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import netifaces

from smtptop import bpf
from smtptop.capture import Frame, PcapWriter
from smtptop.decode import LINKTYPE_ETHERNET, LINKTYPE_RAW
from smtptop.source import Source

SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 16 << 20
ARPHRD_LOOPBACK = 772
ETHERNET_HATYPES = (1, ARPHRD_LOOPBACK)  # lo carries an (all-zero) Ethernet header
MTU = 65535
POLL_SECONDS = 0.2
FLUSH_SECONDS = 0.5
MAX_BURST = 512


class CaptureSetupError(Exception):
    """Capture cannot start; the message is one line that says what to do."""


@dataclass(slots=True)
class Interface:
    name: str
    addresses: list[str] = field(default_factory=list)
    default: bool = False


def default_interface() -> str | None:
    """The interface that carries the default route (IPv4 first, then IPv6)."""
    defaults = netifaces.gateways().get("default", {})
    for family in (netifaces.AF_INET, netifaces.AF_INET6):
        if family in defaults:
            return str(defaults[family][1])
    return None


def list_interfaces() -> list[Interface]:
    default = default_interface()
    found = []
    for name in netifaces.interfaces():
        addresses = [
            f"{addr['addr']}/{_prefix(family, addr.get('netmask', ''))}"
            for family in (netifaces.AF_INET, netifaces.AF_INET6)
            for addr in netifaces.ifaddresses(name).get(family, [])
            if "addr" in addr
        ]
        found.append(Interface(name, addresses, name == default))
    return found


def _prefix(family: int, netmask: str) -> int:
    if "/" in netmask:
        return int(netmask.rsplit("/", 1)[1])
    if not netmask:
        return 32 if family == netifaces.AF_INET else 128
    if family == netifaces.AF_INET:
        return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
    return bin(int(ipaddress.IPv6Address(netmask))).count("1")


def interface_networks(name: str) -> list[str]:
    """The subnets configured on an interface: the office LAN, seen from the laptop."""
    networks = []
    for entry in next((i.addresses for i in list_interfaces() if i.name == name), []):
        address = entry.split("%", 1)[0].rsplit("/", 1)[0]
        prefix = entry.rsplit("/", 1)[1]
        network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        if not network.is_loopback and not network.is_link_local:
            networks.append(str(network))
    return networks


def privilege_hint(iface: str) -> str:
    """Sudo, or setcap on smtptop's own interpreter only: file capabilities on a shared
    Python would let every script it runs open raw sockets."""
    setcap = "sudo setcap cap_net_raw,cap_net_admin+eip"
    python = os.path.realpath(sys.executable)
    prefix = os.path.realpath(sys.prefix)
    own = sys.prefix != sys.base_prefix and os.path.commonpath([python, prefix]) == prefix
    start = f"capturing on {iface} needs privileges: run it with sudo"
    if own:
        return f"{start}, or grant them once with '{setcap} {python}'"
    return (
        f"{start}. setcap on {python} would let every script of that shared Python open raw "
        "sockets; give the rights to a copy of its own instead, from smtptop's checkout: "
        "'python3 -m venv --copies ~/.local/share/smtptop && "
        f"~/.local/share/smtptop/bin/pip install . && {setcap} ~/.local/share/smtptop/bin/python3'"
    )


def attach_program(sock: socket.socket, program: list[bpf.Instruction]) -> None:
    """Install a classic BPF program on a socket (struct sock_fprog by hand, no libpcap)."""
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def compile_expression(expression: str, iface: str) -> list[bpf.Instruction]:
    """A tcpdump-syntax filter, compiled by libpcap through scapy."""
    from scapy.arch.common import compile_filter
    from scapy.error import Scapy_Exception

    try:
        program = compile_filter(expression, iface)
    except ImportError:
        raise CaptureSetupError(
            "a custom filter (-f) needs libpcap: install it with 'apt-get install libpcap0.8'"
            " (the built-in filter does not)"
        ) from None
    except Scapy_Exception as exc:
        raise CaptureSetupError(f"bad filter {expression!r}: {exc}") from None
    insns = program.bf_insns
    return [(insns[i].code, insns[i].jt, insns[i].jf, insns[i].k) for i in range(program.bf_len)]


class LiveSource(Source):
    """Frames from an interface.  Lossy: when the app falls behind, batches are dropped and
    counted rather than blocking the capture (the kernel would drop them silently)."""

    lossy = True

    def __init__(
        self,
        iface: str,
        *,
        ports: Iterable[int],
        promisc: bool = True,
        expression: str | None = None,
        write: str | None = None,
    ) -> None:
        names = netifaces.interfaces()
        if iface not in names:
            raise CaptureSetupError(f"no interface {iface!r}; there are: {', '.join(names)}")
        self.iface = iface
        self.label = f"interface {iface}" + ("" if promisc else " (not promiscuous)")
        self._socket = self._open(iface, promisc)
        raw = self._socket.ins
        hatype = raw.getsockname()[3]
        self.linktype = LINKTYPE_ETHERNET if hatype in ETHERNET_HATYPES else LINKTYPE_RAW
        # On loopback every packet is seen twice, leaving and arriving: keep one.
        self._skip_outgoing = hatype == ARPHRD_LOOPBACK
        try:
            program = (
                compile_expression(expression, iface)
                if expression
                else bpf.default_program(ports, ethernet=self.linktype == LINKTYPE_ETHERNET)
            )
            attach_program(raw, program)
        except (ValueError, OSError) as exc:
            self.close()
            raise CaptureSetupError(f"cannot install the capture filter: {exc}") from None
        except CaptureSetupError:
            self.close()
            raise
        shown = (
            f"-f {expression!r}"
            if expression
            else "SMTP on ports " + ",".join(map(str, sorted(ports)))
        )
        self.waiting = f"Waiting for SMTP on {iface} (filter: {shown}) …"
        self.receive_buffer = self._raise_buffer(raw)
        self._drain_unfiltered(raw)
        self._kernel_packets = 0
        self._kernel_drops = 0
        self._stats_lock = threading.Lock()
        self.writer = PcapWriter(write, self.linktype) if write else None

    @staticmethod
    def _open(iface: str, promisc: bool):  # -> scapy L2ListenSocket
        logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # no chatter on the screen
        try:
            from scapy.arch.linux import L2ListenSocket
        except PermissionError as exc:  # scapy keeps a cache under $HOME
            raise CaptureSetupError(
                f"scapy cannot read {exc.filename}: run with a HOME this user can read"
            ) from None

        try:
            return L2ListenSocket(iface=iface, promisc=promisc, nofilter=1)
        except PermissionError:
            raise CaptureSetupError(privilege_hint(iface)) from None
        except OSError as exc:
            raise CaptureSetupError(f"cannot capture on {iface}: {exc.strerror or exc}") from None

    @staticmethod
    def _raise_buffer(raw: socket.socket) -> int:
        """16 MiB: the default 128 KiB loses bursts from ~30k packets/s."""
        for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
            try:
                raw.setsockopt(socket.SOL_SOCKET, option, RECEIVE_BUFFER)
                break
            except OSError:
                continue
        return raw.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    @staticmethod
    def _drain_unfiltered(raw: socket.socket) -> None:
        """Drop what arrived between bind and filter: everything later passed the filter."""
        raw.setblocking(False)
        try:
            while raw.recv(65535):
                pass
        except BlockingIOError:
            pass

    def kernel_drops(self) -> int:
        self._read_statistics()
        return self._kernel_drops

    def kernel_packets(self) -> int:
        self._read_statistics()
        return self._kernel_packets

    def _read_statistics(self) -> None:
        """PACKET_STATISTICS resets on every read: accumulate."""
        with self._stats_lock:
            try:
                raw = self._socket.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            except OSError:
                return
            packets, drops = struct.unpack("II", raw)
            self._kernel_packets += packets
            self._kernel_drops += drops

    def frames(self, stop: threading.Event) -> Iterator[Frame | None]:
        sock = self._socket
        raw = sock.ins
        linktype = self.linktype
        writer = self.writer
        skip_outgoing = self._skip_outgoing
        last_flush = time.monotonic()
        try:
            while not stop.is_set():
                ready, _, _ = select.select([raw], [], [], POLL_SECONDS)
                if ready:
                    for _ in range(MAX_BURST):
                        try:
                            # recv_raw's own receive step, which also gives the packet type
                            data, address, ts = sock._recv_raw(raw, MTU)
                        except BlockingIOError:
                            break
                        if not data or (skip_outgoing and address[2] == socket.PACKET_OUTGOING):
                            continue
                        record = (ts or time.time(), linktype, data)
                        if writer is not None:
                            writer.write(record[0], data)
                        yield record
                else:
                    yield None
                if writer is not None and time.monotonic() - last_flush >= FLUSH_SECONDS:
                    writer.flush()
                    last_flush = time.monotonic()
        finally:
            if writer is not None:
                writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self._socket.close()


def drop_privileges(user: str | None, *, owned_files: Iterable[str] = ()) -> str | None:
    """Give up root once the socket is open: to ``user``, else the sudo caller, else nobody.

    Files already opened for writing are handed to that user.  Returns the user name, or
    None when not running as root.
    """
    if os.geteuid() != 0:
        return None
    name = user or os.environ.get("SUDO_USER") or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise CaptureSetupError(f"no user {name!r} to run as (see --user)") from None
    for path in owned_files:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    os.initgroups(name, entry.pw_gid)
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=entry.pw_dir, USER=name, LOGNAME=name)
    unreadable = [p for p in _own_files() if not os.access(p, os.R_OK | os.X_OK)]
    if unreadable:
        raise CaptureSetupError(
            f"running as {name}, Python cannot read {unreadable[0]}: choose a user who can "
            "with --user, or install smtptop where every user can read it"
        )
    return name


def _own_files() -> list[str]:
    """Where the rest of smtptop and its libraries will be imported from."""
    import textual

    return [os.path.dirname(os.__file__), os.path.dirname(textual.__file__)]
