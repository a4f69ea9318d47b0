"""What an admin does next about a flagged host: firewall rules that contain it, and the
commands that find the program on the PC.

Spamhaus' advice for an XBL listing is to close outbound port 25 except to the office's own
mail servers: a PC submits mail through the smarthost (or on 587/465 with AUTH), and only a
spambot, or a misconfigured server, speaks port 25 to the world.  :func:`rules` writes that
as ready-to-paste rules for the gateway, in nftables, iptables and MikroTik RouterOS, each
with a comment saying why and how to remove it.  :func:`process_commands` gives, for the
operating systems the host's traffic suggests first, the commands that show which program
holds its SMTP connections, with the source ports and servers smtptop saw most recently so
that the admin can match them.

Addresses here come from the capture, so each is checked to be an IP address before it is
written into a rule: a rule file is pasted into a root shell.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from smtptop.model import Session

SMTP_PORT = 25
RECENT_CONNECTIONS = 8  # connections listed for matching against the PC's own view


@dataclass(frozen=True, slots=True)
class Containment:
    """Outbound TCP port 25 from ``host`` allowed only to ``allowed`` (the smarthost and the
    LAN's mail servers); ``seen`` says when the rules were made and from what."""

    host: str
    allowed: tuple[str, ...]
    seen: str

    def __post_init__(self) -> None:
        for address in (self.host, *self.allowed):
            ipaddress.ip_address(address)  # ValueError: never written into a rule

    @property
    def family(self) -> str:
        return "ip6" if ":" in self.host else "ip"

    @property
    def reachable(self) -> tuple[str, ...]:
        """The allowed servers of the host's own address family (a rule cannot mix them)."""
        v6 = ":" in self.host
        return tuple(a for a in self.allowed if (":" in a) == v6)

    @property
    def tag(self) -> str:
        return f"smtptop: contain {self.host}"

    def header(self, comment: str, remove: str) -> list[str]:
        allowed = ", ".join(self.reachable) or "nothing (no smarthost known; see --smarthost)"
        return [
            f"{comment} {self.tag}: it sent SMTP straight to mail servers on the Internet",
            f"{comment} ({self.seen}). Spamhaus' advice for a listed network: close outbound",
            f"{comment} port 25 except to the office's own mail servers. Port 25 from this host",
            f"{comment} is allowed only to: {allowed}; everything else is refused (TCP reset).",
            f"{comment} Remove: {remove}",
        ]


def table_name(host: str) -> str:
    return "smtptop_contain_" + "".join(c if c.isalnum() else "_" for c in host)


def nftables(plan: Containment) -> str:
    """An nftables table of its own (``nft -f FILE`` on the gateway), in the forward hook
    ahead of the usual filter, so that removing it is one command."""
    table = table_name(plan.host)
    lines = plan.header("#", f"nft delete table inet {table}")
    lines += [
        f"table inet {table} {{",
        "    chain forward {",
        "        type filter hook forward priority filter - 10; policy accept;",
    ]
    match = f"{plan.family} saddr {plan.host} tcp dport {SMTP_PORT}"
    if plan.reachable:
        servers = ", ".join(plan.reachable)
        lines.append(f"        {match} {plan.family} daddr {{ {servers} }} accept")
    lines += [
        f'        {match} counter reject with tcp reset comment "{plan.tag}"',
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def iptables(plan: Containment) -> str:
    """iptables (ip6tables for IPv6) commands for the gateway's FORWARD chain, inserted at
    its top: the refusal first, then each allowed server above it."""
    command = "ip6tables" if ":" in plan.host else "iptables"
    match = f"-s {plan.host} -p tcp --dport {SMTP_PORT}"
    comment = f'-m comment --comment "{plan.tag}"'
    reject = f"FORWARD {match} {comment} -j REJECT --reject-with tcp-reset"
    accepts = [f"FORWARD {match} -d {server} {comment} -j ACCEPT" for server in plan.reachable]
    removal = f"run each command again with -D instead of -I ({command}-save lists them)"
    lines = plan.header("#", removal)
    lines += [f"{command} -I {reject}", *(f"{command} -I {rule}" for rule in accepts)]
    return "\n".join(lines) + "\n"


def routeros(plan: Containment) -> str:
    """MikroTik RouterOS filter rules, placed at the top of the forward chain."""
    where = "/ipv6 firewall filter" if ":" in plan.host else "/ip firewall filter"
    match = f"chain=forward protocol=tcp src-address={plan.host} dst-port={SMTP_PORT}"
    remove = f'{where} remove [find comment="{plan.tag}"]'
    lines = plan.header("#", remove)
    lines += [
        where,
        f'add {match} action=reject reject-with=tcp-reset comment="{plan.tag}" place-before=0',
    ]
    for server in plan.reachable:
        lines.append(
            f'add {match} dst-address={server} action=accept comment="{plan.tag}" place-before=0'
        )
    return "\n".join(lines) + "\n"


WRITERS = {"nftables": nftables, "iptables": iptables, "routeros": routeros}
FILE_NAMES = {"nftables": "nftables.nft", "iptables": "iptables.sh", "routeros": "routeros.rsc"}


def rules(plan: Containment) -> dict[str, str]:
    """Every syntax's rules, by the file name the evidence bundle gives them."""
    return {FILE_NAMES[syntax]: write(plan) for syntax, write in WRITERS.items()}


def made_when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


# -- finding the program on the PC ------------------------------------------------------------

WINDOWS_HINTS = ("desktop-", "laptop-", "win-", "-pc", "windows", "msft")
MAC_HINTS = ("macbook", "imac", "mac-mini", "macmini", "apple")


def likely_systems(names: list[str]) -> list[str]:
    """The operating systems to show, the likeliest first, from the names the host used
    (DHCP, NetBIOS, HELO): a NetBIOS name or DESKTOP-XXXX says Windows, a MacBook says
    macOS; without a hint Windows comes first, since most office PCs, and spambots, run it."""
    text = " ".join(names).lower()
    if any(hint in text for hint in MAC_HINTS):
        return ["macOS", "Windows", "Linux"]
    if any(hint in text for hint in WINDOWS_HINTS) or not text:
        return ["Windows", "macOS", "Linux"]
    return ["Windows", "Linux", "macOS"]


COMMANDS = {
    "Windows": [
        "# PowerShell as administrator: the program behind each SMTP connection",
        "Get-NetTCPConnection -RemotePort 25 -State Established |",
        "  Select-Object LocalPort, RemoteAddress, OwningProcess,",
        "    @{n='Program'; e={(Get-Process -Id $_.OwningProcess).Path}}",
        "# or, in an administrator's cmd: every connection with its program and process id",
        'netstat -abno | findstr ":25 "',
    ],
    "macOS": ["sudo lsof -nP -iTCP:25"],
    "Linux": ["sudo ss -tnp 'dport = :25'"],
}


def process_commands(host: str, sessions: list[Session], names: list[str]) -> str:
    """The commands, per operating system, that show which program on ``host`` holds its
    SMTP connections; then the connections smtptop saw last, to match what they print."""
    lines = [f"Find the program on {host} that talks SMTP (run these on that PC):", ""]
    for system in likely_systems(names):
        lines += [f"{system}:", *(f"    {line}" for line in COMMANDS[system]), ""]
    recent = sorted(sessions, key=lambda s: s.start)[-RECENT_CONNECTIONS:]
    if recent:
        lines.append("Its latest SMTP connections seen (local port -> server), to match:")
        lines += [
            f"    {made_when(s.start)}  {s.client_port} -> {s.server}" for s in reversed(recent)
        ]
    return "\n".join(lines) + "\n"
