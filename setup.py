"""Build the engine's core with mypyc when a C compiler is at hand, as pure Python when not.

The compiled modules are built from the same source files that the pure-Python build runs,
so the two builds behave alike and the test suite runs on both.  ``SMTPTOP_PURE_PYTHON=1``
forces the pure build (and removes compiled modules an earlier in-place build left).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

# The modules a packet passes through, in the order it does: the file reader (with its
# prefilter), the decoder, reassembly, the SMTP parser, the flow table (analyzer) and the
# evidence ring it fills, the rows events travel as, and the model; and the Zeek log parser,
# which makes the same rows from logs.
CORE = (
    "smtptop/capture.py",
    "smtptop/decode.py",
    "smtptop/tcp.py",
    "smtptop/smtp.py",
    "smtptop/analyzer.py",
    "smtptop/ring.py",
    "smtptop/wire.py",
    "smtptop/model/__init__.py",
    "smtptop/model/compact.py",
    "smtptop/model/records.py",
    "smtptop/model/store.py",
    "smtptop/model/fold.py",
    "smtptop/zeek.py",
)
FORCE_PURE = "SMTPTOP_PURE_PYTHON"
HERE = Path(__file__).resolve().parent


def _warn(message: str) -> None:
    print(f"smtptop: {message}", file=sys.stderr)


def _remove_compiled() -> None:
    """An in-place build leaves extension modules beside the sources, and Python imports
    those before a ``.py``: a pure build must not find them."""
    for source in CORE:
        for built in (HERE / source).parent.glob(Path(source).stem + ".*.so"):
            built.unlink()
    for shared in HERE.glob("*__mypyc.*.so"):
        shared.unlink()


class OptionalBuildExt(build_ext):
    """Compile if possible; otherwise warn once and install the pure-Python build."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers, no linker: any of them
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            if self.inplace:
                _remove_compiled()
            self.extensions = []
            _warn(f"no compiled core ({type(exc).__name__}: {exc}); installing pure Python")


def _extensions() -> list[object]:
    if os.environ.get(FORCE_PURE, "") not in ("", "0"):
        _remove_compiled()
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _warn("mypyc is not installed; installing pure Python")
        return []
    return mypycify(list(CORE), opt_level="3")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
