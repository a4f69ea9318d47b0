"""What `pip install .` ships: every package and the demo capture (an editable install, as
the test run uses, would hide a package left out)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_has_every_module_and_the_sample(tmp_path: Path) -> None:
    # Built from a clean copy: a stale build/ folder in the checkout would fill the gaps.
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(
        ROOT / "smtptop", source / "smtptop", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("smtptop-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "smtptop").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    assert "smtptop/data/office.pcap" in names
