"""Manufacturer names for MAC addresses, so a sighting reads "Dell Inc." rather than a number.

The registry is Wireshark's ``manuf`` file as scapy bundles it (``scapy.libs.manuf``, a
compressed string).  Only that module is imported, never ``scapy.all``, and only on the
first lookup: unpacking and indexing it takes about a quarter of a second, once.  Besides
the classic 24-bit OUIs the file holds 28- and 36-bit blocks (MA-M, MA-S) sold to small
vendors inside someone else's OUI; the longest matching prefix wins.
"""

from __future__ import annotations

import functools
import re

LOCALLY_ADMINISTERED = "(locally administered)"

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# "00:1B:C5:00:00/36<tab>ShortName<tab>Long Name": prefix, optional length, long name
_ENTRY = re.compile(r"^([0-9A-Fa-f:]+)(?:/(\d+))? *\t[^\t\n]*\t(.*)$", re.MULTILINE)


def vendor(mac: str) -> str:
    """Return the manufacturer for ``mac`` ("aa:bb:cc:dd:ee:ff"), or "" when unknown.

    Locally administered addresses (random MACs of phones and laptops, virtual interfaces)
    belong to nobody's OUI, whatever their first three octets say.
    """
    digits = mac.replace(":", "").replace("-", "")
    if len(digits) != 12 or not _HEX_DIGITS.issuperset(digits):
        return ""
    value = int(digits, 16)
    if value >> 40 & 0x02:
        return LOCALLY_ADMINISTERED
    for bits, names in _registry():
        name = names.get(value >> (48 - bits))
        if name:
            return name
    return ""


def preload() -> None:
    """Load the registry now (from a worker thread, say) so no later lookup stalls."""
    _registry()


@functools.cache
def _registry() -> tuple[tuple[int, dict[int, str]], ...]:
    """Prefix length → {prefix → long name}, longest prefixes first."""
    from scapy.libs.manuf import DATA

    tables: dict[int, dict[int, str]] = {}
    for prefix, bits_text, name in _ENTRY.findall(DATA):
        digits = prefix.replace(":", "")
        bits = int(bits_text) if bits_text else 24
        tables.setdefault(bits, {})[int(digits, 16) >> (len(digits) * 4 - bits)] = name
    return tuple(sorted(tables.items(), reverse=True))
