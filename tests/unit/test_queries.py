"""Named SQL files: the loader's format, and every file against the code that uses it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import bisnesgpt
from bisnesgpt.db.queries import QUERY_FILE, load_queries, parse_queries

pytestmark = pytest.mark.unit

SRC = Path(bisnesgpt.__file__).parent
LOADED = re.compile(r'^(\w+) = load_queries\("([\w.]+)"\)', re.MULTILINE)


def test_blocks_are_split_on_headers_and_descriptions_left_out() -> None:
    text = """-- first --
-- What it does
-- (more words)
SELECT 1

-- second_one --
SELECT $1::int
  -- a comment inside the query stays
FROM t
"""
    assert parse_queries(text) == {"first": "SELECT 1\n",
                                   "second_one": "SELECT $1::int\n  -- a comment inside the query stays\nFROM t\n"}


@pytest.mark.parametrize(("text", "message"), [
    ("-- a --\nSELECT 1\n-- a --\nSELECT 2\n", "defined twice"),
    ("-- a --\n-- only a description\n", "is empty"),
    ("SELECT 1\n-- a --\nSELECT 2\n", "before the first"),
])
def test_malformed_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_queries(text)


def test_an_unknown_name_is_an_attribute_error_naming_the_file() -> None:
    queries = load_queries("bisnesgpt.coordination")
    with pytest.raises(AttributeError, match=r"bisnesgpt.coordination/queries.sql has no query named 'nope'"):
        _ = queries.nope


def _package_of(path: Path) -> str:
    return ".".join(("bisnesgpt", *path.parent.relative_to(SRC).parts))


@pytest.mark.parametrize("sql_file", sorted(SRC.rglob(QUERY_FILE)), ids=lambda p: str(p.relative_to(SRC)))
def test_every_query_is_used_and_every_use_exists(sql_file: Path) -> None:
    package = _package_of(sql_file)
    defined = set(load_queries(package))
    used: dict[str, set[str]] = {}
    for module in SRC.rglob("*.py"):
        text = module.read_text(encoding="utf-8")
        for variable, loaded in LOADED.findall(text):
            if loaded == package:
                names = set(re.findall(rf"\b{variable}\.([a-z][a-z0-9_]*)\b", text))
                used[str(module.relative_to(SRC))] = names
    assert used, f"{package}/{QUERY_FILE} is loaded by no module"
    everything = set().union(*used.values())
    assert not everything - defined, f"used but not in {package}/{QUERY_FILE}: {sorted(everything - defined)}"
    assert not defined - everything, f"in {package}/{QUERY_FILE} but never used: {sorted(defined - everything)}"


def test_loading_names_a_package_that_has_the_file() -> None:
    for module in SRC.rglob("*.py"):
        for _variable, package in LOADED.findall(module.read_text(encoding="utf-8")):
            assert (SRC.parent / package.replace(".", "/") / QUERY_FILE).is_file(), (module, package)
