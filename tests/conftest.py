"""What the test modules share: the import path of their helpers, and fixtures."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# The test modules import their helpers (synth, sample, fuzz_engine, ...) as top-level
# modules from this folder. Said here rather than left to pytest's rootdir insertion, which
# depends on the import mode and on tests/ having no __init__.py.
TESTS = str(Path(__file__).resolve().parent)
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)


@pytest.fixture
def utc() -> Iterator[None]:
    """Capture times shown in UTC, so that screens read the same on every machine."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()
