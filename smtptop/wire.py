"""Engine events as rows of plain values: the form in which they cross from the engine's
process to the model's, and in which the model folds them.

A row is ``(session_id, tag, values)``.  The tag says which event; ``values`` are the
event's fields in its dataclass's order, IntEnum fields as ints, and a reply's request as a
nested ``(tag, values)`` or None.  :mod:`marshal` carries such rows several times faster than
pickle carries dataclasses, and the fold unpacks them where it would read attributes, so no
event object is built again on the model's side.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter
from typing import Any, Final

from smtptop.analyzer import FlowClosed, FlowEvent, FlowOpened
from smtptop.identity import DnsLookup, Sighting
from smtptop.smtp import (
    AuthResponse,
    Command,
    Gap,
    MessageEnd,
    Reply,
    TlsStarted,
    Violation,
)

Values = tuple[Any, ...]
Row = tuple[int, int, Values]

OPENED: Final = 0
CLOSED: Final = 1
COMMAND: Final = 2
AUTH_RESPONSE: Final = 3
MESSAGE_END: Final = 4
REPLY: Final = 5
TLS_STARTED: Final = 6
GAP: Final = 7
VIOLATION: Final = 8
SIGHTING: Final = 9
DNS_LOOKUP: Final = 10

# Each event's tag and the fields its values hold, in order.  The fold unpacks values by
# position, so test_wire holds each list equal to its dataclass's fields: a field added or
# moved fails a test instead of being read as another.
LAYOUTS: Final[dict[type[FlowEvent], tuple[int, tuple[str, ...]]]] = {
    FlowOpened: (OPENED, ("ts", "client", "server", "midstream")),
    FlowClosed: (
        CLOSED,
        ("ts", "reason", "client_bytes", "server_bytes", "packets", "conflicts"),
    ),
    Command: (COMMAND, ("ts", "verb", "arg", "line", "truncated")),
    AuthResponse: (AUTH_RESPONSE, ("ts", "line")),
    MessageEnd: (MESSAGE_END, ("ts", "size", "headers", "complete")),
    Reply: (REPLY, ("ts", "code", "lines", "request", "greeting", "cut")),
    TlsStarted: (TLS_STARTED, ("ts", "implicit")),
    Gap: (GAP, ("ts", "side", "size")),
    Violation: (VIOLATION, ("ts", "side", "kind", "reason")),
    Sighting: (SIGHTING, ("ts", "ip", "mac", "name", "source")),
    DnsLookup: (DNS_LOOKUP, ("ts", "client", "qname", "qtype", "rcode")),
}
_ENUM_FIELDS: Final = ("side", "kind")
_REQUEST: Final = LAYOUTS[Reply][1].index("request")
# By event class: its tag, a getter of its values, and the positions of its IntEnum fields.
_ENCODERS: Final[dict[type, tuple[int, attrgetter[Any], tuple[int, ...]]]] = {
    cls: (
        tag,
        attrgetter(*names),
        tuple(at for at, name in enumerate(names) if name in _ENUM_FIELDS),
    )
    for cls, (tag, names) in LAYOUTS.items()
}


def encode(events: Iterable[tuple[int, FlowEvent]]) -> list[Row]:
    """The analyzer's events as rows."""
    rows: list[Row] = []
    for session_id, event in events:
        tag, getter, enums = _ENCODERS[type(event)]
        values: Values = getter(event)
        if tag == REPLY:
            request = values[_REQUEST]
            if request is not None:
                request_tag, request_getter, _ = _ENCODERS[type(request)]
                nested = (request_tag, request_getter(request))
                values = (*values[:_REQUEST], nested, *values[_REQUEST + 1 :])
        elif enums:
            changed = list(values)
            for at in enums:
                changed[at] = int(changed[at])
            values = tuple(changed)
        rows.append((session_id, tag, values))
    return rows
