"""What `pip install .` ships: every package, its data files and the licence, and not the
tests' capture builders (an editable install, as the test run uses, would hide a file left
out); the core compiled with mypyc when a C compiler works, pure Python with one warning
when not; and the one version number, as `smtptop --version` and the package metadata give
it, with the build."""

from __future__ import annotations

import ast
import email
import fnmatch
import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
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


def _build_wheel(into: Path, **env: str) -> tuple[zipfile.ZipFile, str]:
    """A wheel built from a clean copy (a stale build/ folder or compiled module in the
    checkout would fill the gaps), and what the build said."""
    source = into / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(
        ROOT / "smtptop", source / "smtptop", ignore=shutil.ignore_patterns("__pycache__", "*.so")
    )
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(into), str(source)],
        check=True, capture_output=True, text=True, timeout=600,
        env={**os.environ, **env},
    )  # fmt: skip
    (built,) = into.glob("smtptop-*.whl")
    return zipfile.ZipFile(built), result.stdout + result.stderr


@pytest.fixture(scope="module")
def built_without_compiler(tmp_path_factory: pytest.TempPathFactory) -> tuple[zipfile.ZipFile, str]:
    """Built where the C compiler fails, as on a machine without one."""
    return _build_wheel(tmp_path_factory.mktemp("wheel"), CC="false")


@pytest.fixture(scope="module")
def wheel(built_without_compiler: tuple[zipfile.ZipFile, str]) -> zipfile.ZipFile:
    return built_without_compiler[0]


def _compiled(wheel: zipfile.ZipFile) -> list[str]:
    return sorted(n for n in wheel.namelist() if n.endswith(".so"))


@pytest.mark.fresh_build
def test_without_a_compiler_the_build_is_pure_python_with_one_warning(
    built_without_compiler: tuple[zipfile.ZipFile, str],
) -> None:
    wheel, said = built_without_compiler
    assert _compiled(wheel) == []
    warnings = [line for line in said.splitlines() if "smtptop: no compiled core" in line]
    assert len(warnings) == 1, said[-3000:]
    assert "installing pure Python" in warnings[0]


@pytest.mark.fresh_build
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) on this machine")
def test_with_a_compiler_the_core_is_compiled_beside_its_source(tmp_path: Path) -> None:
    wheel, _ = _build_wheel(tmp_path)
    names = wheel.namelist()
    for module in package.CORE_MODULES:
        path = module.replace(".", "/")
        if path == "smtptop/model":
            path += "/__init__"
        assert any(n.startswith(path + ".") and n.endswith(".so") for n in names), module
        assert path + ".py" in names
    assert len(_compiled(wheel)) == len(package.CORE_MODULES) + 1  # and mypyc's shared library


@pytest.mark.fresh_build
def test_the_environment_variable_forces_pure_python(tmp_path: Path) -> None:
    wheel, said = _build_wheel(tmp_path, SMTPTOP_PURE_PYTHON="1")
    assert _compiled(wheel) == []
    assert "no compiled core" not in said


@pytest.mark.fresh_build
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


@pytest.mark.fresh_build
def test_the_wheel_leaves_the_capture_builders_to_the_tests(wheel: zipfile.ZipFile) -> None:
    builders = [n for n in wheel.namelist() if Path(n).name in ("synth.py", "sample.py")]
    assert builders == []


@pytest.mark.fresh_build
def test_the_wheel_carries_the_licence_and_the_version(wheel: zipfile.ZipFile) -> None:
    (info,) = {Path(n).parts[0] for n in wheel.namelist() if ".dist-info/" in n}
    assert wheel.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    fields = email.message_from_bytes(wheel.read(f"{info}/METADATA"))
    assert fields["License-Expression"] == "MIT"
    assert fields["Version"] == package.__version__


def test_version_is_the_installed_distributions() -> None:
    assert smtptop("--version").stdout == (
        f"smtptop {metadata.version('smtptop')} ({package.build()})\n"
    )


def test_no_compiled_module_is_older_than_its_source() -> None:
    """Python imports a compiled module before the source beside it: one built before the
    source last changed would run old code while the source reads new."""
    stale = []
    for module in package.CORE_MODULES:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None
        origin = Path(spec.origin)
        if origin.suffix != ".py":
            source = ROOT / (module.replace(".", "/") + ("/__init__" * (module == "smtptop.model")))
            if source.with_suffix(".py").stat().st_mtime > origin.stat().st_mtime:
                stale.append(module)
    assert not stale, f"rebuild with `pip install -e .`: {stale} changed since compiled"


def test_the_compiled_modules_are_listed_once_for_all() -> None:
    """setup.py compiles what smtptop.CORE_MODULES names (``--version`` reads those), and
    mypy holds each of them to the strict flags mypyc's compilation relies on."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    (core,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "CORE"
    ]
    named = [path.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for path in core]
    assert named == list(package.CORE_MODULES)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    strict = [o["module"] for o in config if o.get("disallow_untyped_defs")]
    patterns = [pattern for modules in strict for pattern in modules]
    for module in named:
        assert any(fnmatch.fnmatchcase(module, p) or module == p.removesuffix(".*")
                   for p in patterns), module  # fmt: skip
