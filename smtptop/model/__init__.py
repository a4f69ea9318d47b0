"""Sessions and per-host facts built from parser events: pure and bounded.

One job per module, each depending only on those above it:

* :mod:`~smtptop.model.compact`: compact containers and text costs, the budgets' units;
* :mod:`~smtptop.model.records`: the session, host, server and identity records;
* :mod:`~smtptop.model.store`: the store, its tables, budgets and eviction policy;
* :mod:`~smtptop.model.fold`: the fold, events applied to sessions and hosts (:class:`Model`).
"""

from smtptop.model.compact import AddressSet
from smtptop.model.fold import Model, apply, mailbox
from smtptop.model.records import (
    NAME_SOURCES,
    OUTCOMES,
    ClientStep,
    Host,
    Identity,
    Server,
    ServerStats,
    Session,
    SmtpReply,
    TranscriptLine,
    is_address,
    is_lan,
    rank,
)
from smtptop.model.store import ModelLimits, Store

__all__ = [
    "NAME_SOURCES",
    "OUTCOMES",
    "AddressSet",
    "ClientStep",
    "Host",
    "Identity",
    "Model",
    "ModelLimits",
    "Server",
    "ServerStats",
    "Session",
    "SmtpReply",
    "Store",
    "TranscriptLine",
    "apply",
    "is_address",
    "is_lan",
    "mailbox",
    "rank",
]
