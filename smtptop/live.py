"""Live capture on a network interface (a hub or a switch's SPAN port).

Frames come raw from scapy's AF_PACKET listen socket (``recv_raw``: no per-packet
dissection, VLAN tags restored from the kernel's auxiliary data, nanosecond timestamps).
The kernel filters them first with the built-in BPF program of :mod:`smtptop.bpf`, which
needs no libpcap; the socket buffer is raised so that bursts are not lost, and the kernel's
own drop counter is read with ``PACKET_STATISTICS`` so that loss is shown, never silent.
Once the socket is open, root is dropped, as tcpdump's ``-Z`` does, and every capability with
it (a setcap'd interpreter run by a user would otherwise keep them).
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import netifaces

from smtptop import bpf, files
from smtptop.capture import CaptureError, Frame, PcapWriter
from smtptop.decode import LINKTYPE_ETHERNET, LINKTYPE_RAW, MirrorPorts
from smtptop.merge import by_time
from smtptop.source import Parallel, Source, StopFlag

SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_FANOUT = 18
PACKET_FANOUT_DATA = 22
PACKET_FANOUT_CBPF = 6
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000  # the kernel picks a group id no other process uses
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


def attach_program(
    sock: socket.socket,
    program: list[bpf.Instruction],
    level: int = socket.SOL_SOCKET,
    option: int = SO_ATTACH_FILTER,
) -> None:
    """Install a classic BPF program on a socket (struct sock_fprog by hand, no libpcap):
    its filter, or (``PACKET_FANOUT_DATA``) its fanout group's dealer."""
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(level, option, fprog)


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
        owner: files.Owner | None = None,
        mirrors: MirrorPorts | None = None,
    ) -> None:
        names = netifaces.interfaces()
        if iface not in names:
            raise CaptureSetupError(f"no interface {iface!r}; there are: {', '.join(names)}")
        self.iface = iface
        self.not_promiscuous = "" if promisc else " (not promiscuous)"
        self.label = f"interface {iface}{self.not_promiscuous}"
        self.writer: PcapWriter | None = None
        self._frames: list[Generator[Frame | None, None, None]] = []
        self._closed = False
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
                else bpf.default_program(
                    ports, ethernet=self.linktype == LINKTYPE_ETHERNET, mirrors=mirrors
                )
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
        self.filter_shown = shown
        self.waiting = f"Waiting for SMTP on {iface} (filter: {shown}) …"
        self.receive_buffer = self._raise_buffer(raw)
        self.drain()
        self._kernel_drops = 0
        self._stats_lock = threading.Lock()
        if write:
            try:
                self.writer = self._writer(write, owner or files.invoking_user())
            except (files.OutputError, CaptureError) as exc:
                self.close()
                raise CaptureSetupError(str(exc)) from None

    def _writer(self, path: str, owner: files.Owner) -> PcapWriter:
        """The ``-w`` file, made safely (see :mod:`smtptop.files`): the writer gets that very
        file, not whatever ``path`` names by the time it would be opened again."""
        writer = PcapWriter(os.fdopen(files.create(path, owner), "wb"), path, self.linktype)
        writer.flush()  # nothing buffered: an engine process forked later writes the rest
        return writer

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

    def drain(self) -> None:
        """Drop what arrived between bind and filter (or joining a fanout group): everything
        later passed the filter (and was dealt to this socket)."""
        raw = self._socket.ins
        raw.setblocking(False)
        try:
            while raw.recv(65535):
                pass
        except BlockingIOError:
            pass

    def join_fanout(self, group: int | None, program: list[bpf.Instruction]) -> int:
        """Join a PACKET_FANOUT group (a new one when ``group`` is None, dealing packets out
        with ``program``): from then on each packet reaches one socket of the group.
        Returns the group's id."""
        raw = self._socket.ins
        try:
            if group is None:
                flags = PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_UNIQUEID
                raw.setsockopt(SOL_PACKET, PACKET_FANOUT, flags << 16)
                group = raw.getsockopt(SOL_PACKET, PACKET_FANOUT) & 0xFFFF
                attach_program(raw, program, SOL_PACKET, PACKET_FANOUT_DATA)
            else:
                raw.setsockopt(SOL_PACKET, PACKET_FANOUT, group | PACKET_FANOUT_CBPF << 16)
        except OSError as exc:
            raise CaptureSetupError(
                f"cannot share the capture on {self.iface} among engine processes "
                f"(PACKET_FANOUT: {exc.strerror or exc}): use --workers 0 or 1"
            ) from None
        return group

    def recorded(self) -> list[str]:
        return [self.writer.path] if self.writer is not None else []

    def kernel_drops(self) -> int:
        self._read_statistics()
        return self._kernel_drops

    def _read_statistics(self) -> None:
        """PACKET_STATISTICS resets on every read: accumulate."""
        with self._stats_lock:
            try:
                raw = self._socket.ins.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            except OSError:
                return
            _packets, drops = struct.unpack("II", raw)
            self._kernel_drops += drops

    def frames(self, stop: StopFlag) -> Iterator[Frame | None]:
        frames = self._capture(stop)
        self._frames.append(frames)
        return frames

    def drops(self) -> list[tuple[str, int]]:
        return [(self.iface, self.kernel_drops())]

    def _capture(self, stop: StopFlag) -> Generator[Frame | None, None, None]:
        raw = self._socket.ins
        writer = self.writer
        last_flush = time.monotonic()
        try:
            while not stop.is_set():
                ready, _, _ = select.select([raw], [], [], POLL_SECONDS)
                if ready:
                    yield from self.burst()
                else:
                    yield None
                if writer is not None and time.monotonic() - last_flush >= FLUSH_SECONDS:
                    writer.flush()
                    last_flush = time.monotonic()
        finally:
            if writer is not None and not self._closed:
                writer.flush()

    def burst(self) -> Iterator[Frame]:
        """The frames waiting in the socket, up to ``MAX_BURST`` (written to -w as they
        come); none when it holds none."""
        sock = self._socket
        raw = sock.ins
        linktype = self.linktype
        writer = self.writer
        skip_outgoing = self._skip_outgoing
        for _ in range(MAX_BURST):
            try:
                # recv_raw's own receive step, which also gives the packet type
                data, address, ts = sock._recv_raw(raw, MTU)
            except BlockingIOError:
                return
            if not data or (skip_outgoing and address[2] == socket.PACKET_OUTGOING):
                continue
            record = (ts or time.time(), linktype, data)
            if writer is not None:
                writer.write(record[0], data)
            yield record

    def fileno(self) -> int:
        """The capture socket's, for ``select``."""
        return int(self._socket.ins.fileno())

    def close(self) -> None:
        """In order: the capture generators first, whose last flush needs the file open,
        then the file, then the socket.  A capture stopped by a signal leaves its generator
        suspended; closed later by the garbage collector, it would flush a closed file."""
        if self._closed:
            return
        for frames in self._frames:
            with contextlib.suppress(ValueError):  # running in another thread: it ends there
                frames.close()
        self._closed = True
        if self.writer is not None:
            self.writer.close()
        self._socket.close()


def open_group(
    iface: str,
    count: int,
    *,
    ports: Iterable[int],
    promisc: bool = True,
    expression: str | None = None,
    write: str | None = None,
    owner: files.Owner | None = None,
    mirrors: MirrorPorts | None = None,
) -> Parallel:
    """``count`` sockets on one interface in a PACKET_FANOUT group, each for an engine
    process of its own: the kernel deals each packet to one of them by its client's address
    (:func:`smtptop.bpf.fanout_program`), so every engine has whole hosts.  ``write`` (one
    socket only) is written by the process that reads it."""
    options = {"ports": ports, "promisc": promisc, "expression": expression, "write": write,
               "owner": owner, "mirrors": mirrors}  # fmt: skip
    sockets = fanout_sockets(iface, count, **options)
    first = sockets[0]
    engines = f" · {count} engines" if count > 1 else ""
    return Parallel(sockets, label=first.label + engines, waiting=first.waiting)


def fanout_sockets(iface: str, count: int, **options: Any) -> list[LiveSource]:
    """``count`` sockets on ``iface`` (``options`` are :class:`LiveSource`'s) in a new
    PACKET_FANOUT group dealt by :func:`smtptop.bpf.fanout_program`, in the order they
    joined it, which is the order of the kernel's deal (one socket joins none)."""
    program = bpf.fanout_program(options["ports"])
    sockets: list[LiveSource] = []
    group: int | None = None
    try:
        for _ in range(count):
            sockets.append(LiveSource(iface, **options))
            if count > 1:
                group = sockets[-1].join_fanout(group, program)
        for socket_ in sockets:  # the deal changed with every join: start from here
            socket_.drain()
    except BaseException:
        for socket_ in sockets:
            socket_.close()
        raise
    return sockets


class Interfaces(Source):
    """Several interfaces read in one process (``-i eth1 -i eth2``): their sockets are
    polled together and each ready one gives what it holds, so that a busy interface never
    waits on a quiet one.  Their drops are counted, and shown, each on its own."""

    lossy = True

    def __init__(self, parts: Sequence[LiveSource]) -> None:
        self.parts = list(parts)
        first = self.parts[0]
        names = ", ".join(part.iface for part in self.parts)
        self.label = f"interfaces {names}{first.not_promiscuous}"
        self.waiting = f"Waiting for SMTP on {names} (filter: {first.filter_shown}) …"

    def frames(self, stop: StopFlag) -> Iterator[Frame | None]:
        """What each ready socket holds, merged by the kernel's timestamps: a session's two
        directions may take two interfaces (asymmetric routing), and a reply read before
        its command would be paired with the wrong one."""
        parts = self.parts
        while not stop.is_set():
            ready, _, _ = select.select(parts, [], [], POLL_SECONDS)
            if not ready:
                yield None
            elif len(ready) == 1:
                yield from ready[0].burst()
            else:
                yield from by_time([list(part.burst()) for part in ready])

    def kernel_drops(self) -> int:
        return sum(part.kernel_drops() for part in self.parts)

    def drops(self) -> list[tuple[str, int]]:
        return [entry for part in self.parts for entry in part.drops()]

    def close(self) -> None:
        for part in self.parts:
            part.close()


def open_interfaces(ifaces: Sequence[str], workers: int, **options: Any) -> Source:
    """The sockets of a live capture on ``ifaces``: read in this process (``workers`` 0) or
    by that many engine processes.  With several interfaces, each has a PACKET_FANOUT group
    of ``workers`` sockets, all dealt by the same program (:func:`smtptop.bpf.fanout_program`,
    a function of the client's address alone), and engine k reads socket k of every group:
    the kernel gives a client's packets, on whichever interface they come, to one engine, so
    that its counts are whole.  ``options`` are :class:`LiveSource`'s."""
    if len(ifaces) == 1:
        iface = ifaces[0]
        return open_group(iface, workers, **options) if workers else LiveSource(iface, **options)
    groups: list[list[LiveSource]] = []  # one socket per interface, or a group each
    try:
        for iface in ifaces:
            groups.append(fanout_sockets(iface, workers, **options) if workers
                          else [LiveSource(iface, **options)])  # fmt: skip
    except BaseException:
        for group in groups:
            for socket_ in group:
                socket_.close()
        raise
    if not workers:
        return Interfaces([socket_ for [socket_] in groups])
    parts = [Interfaces([group[k] for group in groups]) for k in range(workers)]
    engines = f" · {workers} engines" if workers > 1 else ""
    return Parallel(parts, label=parts[0].label + engines, waiting=parts[0].waiting)


def run_as(user: str | None) -> pwd.struct_passwd | None:
    """Who smtptop becomes once the socket is open: ``user``, else the sudo caller, else
    nobody; None when it is not root (it stays who it is, without capabilities)."""
    if os.geteuid() != 0:
        return None
    name = user or os.environ.get("SUDO_USER") or "nobody"
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise CaptureSetupError(f"no user {name!r} to run as (see --user)") from None


@contextlib.contextmanager
def acting_as(entry: pwd.struct_passwd | None) -> Iterator[None]:
    """Root, for a moment, with the effective ids of the user it will become, so that
    ``os.access(..., effective_ids=True)`` answers for that user before the capture starts."""
    if entry is None:
        yield
        return
    groups, gid = os.getgroups(), os.getegid()
    os.setgroups(os.getgrouplist(entry.pw_name, entry.pw_gid))
    os.setegid(entry.pw_gid)
    os.seteuid(entry.pw_uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(gid)
        os.setgroups(groups)


def drop_privileges(entry: pwd.struct_passwd | None) -> None:
    """Give up root (to ``entry``, see `run_as`) and every capability, once the socket is
    open: from then on a bug in a parser is a bug in an unprivileged process.  no_new_privs
    comes first, so that no moment runs as the user without it."""
    libc = _libc()
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise CaptureSetupError(f"cannot set no_new_privs: {os.strerror(ctypes.get_errno())}")
    if entry is not None:
        _drop_bounding_set()  # needs CAP_SETPCAP: before root goes
        os.initgroups(entry.pw_name, entry.pw_gid)
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
        os.environ.update(HOME=entry.pw_dir, USER=entry.pw_name, LOGNAME=entry.pw_name)
        os.environ.pop("XDG_STATE_HOME", None)  # root's, not the new user's
    drop_capabilities()
    if entry is None:
        return
    unreadable = [p for p in _own_files() if not os.access(p, os.R_OK | os.X_OK)]
    if unreadable:
        raise CaptureSetupError(
            f"running as {entry.pw_name}, Python cannot read {unreadable[0]}: choose a user "
            "who can with --user, or install smtptop where every user can read it"
        )


PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522
CAPABILITY_SETS = ("CapInh", "CapPrm", "CapEff", "CapAmb")


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _drop_bounding_set() -> None:
    """No capability can come back through an exec (a setcap'd or setuid program)."""
    with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as last:
        count = int(last.read()) + 1
    prctl = _libc().prctl
    for capability in range(count):
        prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)  # EPERM without CAP_SETPCAP: kept


def drop_capabilities() -> None:
    """Empty the effective, permitted, inheritable and ambient sets: root's setuid clears
    most of them, but a setcap'd interpreter run by a user keeps cap_net_raw and
    cap_net_admin for its whole life unless it gives them up.  Checked in
    /proc/self/status afterwards: a capture that could not drop them does not start."""
    libc = _libc()
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)  # EINVAL before Linux 4.3
    header = ctypes.create_string_buffer(struct.pack("Ii", CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(24)  # two all-zero __user_cap_data_struct
    if libc.capset(header, data) != 0:
        raise CaptureSetupError(f"cannot drop capabilities: {os.strerror(ctypes.get_errno())}")
    left = {name: value for name, value in capabilities().items() if value}
    if left:
        raise CaptureSetupError(f"capabilities still held after dropping them: {left}")


def capabilities() -> dict[str, int]:
    """This process's capability sets, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {name: int(fields[name], 16) for name in CAPABILITY_SETS if name in fields}


def _own_files() -> list[str]:
    """Where the rest of smtptop and its libraries will be imported from."""
    import textual

    return [os.path.dirname(os.__file__), os.path.dirname(textual.__file__)]
