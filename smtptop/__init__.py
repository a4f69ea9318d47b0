"""smtptop: which LAN host talks SMTP to whom, and what the servers answered."""

from importlib.util import find_spec

__version__ = "0.1.0"

# The modules setup.py compiles with mypyc when it can (the same list, as module names).
CORE_MODULES = (
    "smtptop.capture",
    "smtptop.decode",
    "smtptop.tcp",
    "smtptop.smtp",
    "smtptop.analyzer",
    "smtptop.ring",
    "smtptop.wire",
    "smtptop.model",
    "smtptop.model.compact",
    "smtptop.model.records",
    "smtptop.model.store",
    "smtptop.model.fold",
    "smtptop.zeek",
)


def build() -> str:
    """Which build of the core Python will import: "compiled with mypyc", "pure Python",
    or "partly compiled" (a build left half done); said by ``--version`` and in reports
    of speed, which differ by build."""
    compiled = [
        not str(spec.origin).endswith(".py")
        for spec in map(find_spec, CORE_MODULES)
        if spec is not None
    ]
    if all(compiled):
        return "compiled with mypyc"
    return "partly compiled" if any(compiled) else "pure Python"
