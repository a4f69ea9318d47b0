"""The package type-checks under the project's mypy configuration (strict for the modules
mypyc compiles), every ``# type: ignore`` says which error it silences and why, and every
struct typed as a ``Layout`` unpacks to the fields its annotation names."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "smtptop"
SOURCES = sorted(PACKAGE.rglob("*.py"))

# `# type: ignore[code, ...]  # why`: mypy reads the pragma only at the start of a comment.
IGNORE = re.compile(r"#\s*type:\s*ignore\b")
EXPLAINED = re.compile(r"# type: ignore\[[a-z-]+(, [a-z-]+)*\]  # \S.*")
LAYOUT = re.compile(r"Layout\[tuple\[(.+)\]\]")


def test_mypy() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install '.[test]')")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        pytest.fail(result.stdout + result.stderr, pytrace=False)


def test_type_ignores_are_explained() -> None:
    unexplained = []
    for path in SOURCES:
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        for token in tokens:
            if token.type != tokenize.COMMENT or not IGNORE.search(token.string):
                continue
            if not EXPLAINED.fullmatch(token.string):
                where = f"{path.relative_to(ROOT)}:{token.start[0]}"
                unexplained.append(f"{where}: {token.string}")
    assert not unexplained, "a # type: ignore needs [codes] and a reason:\n" + "\n".join(
        unexplained
    )


def _layout_modules() -> list[str]:
    return [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in SOURCES
        if ": Layout[" in path.read_text()
    ]


@pytest.mark.parametrize("name", _layout_modules())
def test_layouts_match_their_formats(name: str) -> None:
    """mypy takes a Layout's fields on trust; here each struct unpacks to those types."""
    module = importlib.import_module(name)
    # Read from the source: a module compiled by mypyc keeps no __annotations__.
    source = ast.parse((ROOT / name.replace(".", "/")).with_suffix(".py").read_text())
    layouts = {
        node.target.id: match[1].split(", ")
        for node in source.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
        if (match := LAYOUT.fullmatch(ast.unparse(node.annotation)))
    }
    assert layouts
    for attribute, fields in layouts.items():
        layout = getattr(module, attribute)
        unpacked = layout.unpack(bytes(layout.size))
        assert [type(field).__name__ for field in unpacked] == fields, attribute
