"""What `pip install .` ships: every package, its data files and the licence, and not the
tests' capture builders (an editable install, as the test run uses, would hide a file left
out); and the one version number, as `smtptop --version` and the package metadata give it."""

from __future__ import annotations

import email
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from helpers import smtptop

import smtptop as package

ROOT = Path(__file__).resolve().parent.parent
# What package-data ships besides the modules: the demo capture, the TUI's stylesheets and
# the HELO name list.
DATA = ("data/*.pcap", "tui/*.tcss", "data/helo*")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    # Built from a clean copy: a stale build/ folder in the checkout would fill the gaps.
    tmp_path = tmp_path_factory.mktemp("wheel")
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(
        ROOT / "smtptop", source / "smtptop", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = tmp_path.glob("smtptop-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_has_every_module_and_data_file(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    package_dir = ROOT / "smtptop"
    sources = {p.relative_to(ROOT).as_posix() for p in package_dir.rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    for pattern in DATA:
        files = {p.relative_to(ROOT).as_posix() for p in package_dir.glob(pattern)}
        assert files, f"no smtptop/{pattern} in the checkout"
        assert files <= names, sorted(files - names)
    assert "smtptop/data/office.pcap" in names


def test_the_wheel_leaves_the_capture_builders_to_the_tests(wheel: zipfile.ZipFile) -> None:
    builders = [n for n in wheel.namelist() if Path(n).name in ("synth.py", "sample.py")]
    assert builders == []


def test_the_wheel_carries_the_licence_and_the_version(wheel: zipfile.ZipFile) -> None:
    (info,) = {Path(n).parts[0] for n in wheel.namelist() if ".dist-info/" in n}
    assert wheel.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    fields = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
    assert fields["License-Expression"] == "MIT"
    assert fields["Version"] == package.__version__


def test_version_is_the_installed_distributions() -> None:
    assert smtptop("--version").stdout == f"smtptop {metadata.version('smtptop')}\n"
