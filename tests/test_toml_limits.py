"""TOML bombs (issue 15, item 3): every TOML the agent reads goes through one reader with a byte
limit and a lexical pre-scan (nesting depth, dotted-key parts, key count) run before tomllib.

Before: `a = [[[[...` 100,000 deep raised RecursionError (traceback, exit 1); a 40 KB dotted key
took 3.7 s and 1.6 GB inside tomllib. Now each is a ConfigError naming the file and the limit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.api.auth import TokenStore
from agent.economics.tariff import load_tariff
from agent.model.config import load_site
from common.tomlcheck import MAX_BYTES, MAX_DEPTH, MAX_KEY_PARTS, MAX_KEYS, ConfigError, load_toml, prescan
from drivers.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]

DEEP = "[x]\na = " + "[" * 100_000 + "]" * 100_000 + "\n"  # the case
DOTTED = ".".join(["a"] * 20_000) + " = 1\n"  # 40 KB, 20,000 parts: the case


def _write(tmp_path: Path, text: str, name: str = "f.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


BOMBS = {
    "deep": (DEEP, f"nesting deeper than {MAX_DEPTH} levels (limit)"),
    "deep_inline_tables": ("a = " + "{b = " * 1000 + "1" + "}" * 1000 + "\n", f"nesting deeper than {MAX_DEPTH}"),
    "dotted": (DOTTED, f"a dotted key has more than {MAX_KEY_PARTS} parts (limit)"),
    "dotted_header": ("[" + ".".join(["a"] * 5000) + "]\n", f"more than {MAX_KEY_PARTS} parts"),
    "quoted_dotted": (".".join(['"a"'] * 5000) + " = 1\n", f"more than {MAX_KEY_PARTS} parts"),
    "keys": ("".join(f"k{i}=1\n" for i in range(MAX_KEYS + 1)), f"more than {MAX_KEYS} keys (limit)"),
    "size": ("a = '" + "x" * MAX_BYTES + "'\n", f"larger than {MAX_BYTES} bytes (limit)"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_bomb_is_refused_before_parsing_naming_the_file_and_the_limit(tmp_path: Path, name: str) -> None:
    text, msg = BOMBS[name]
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_toml(path)
    assert str(e.value).startswith(f"{path}: ")
    assert msg in str(e.value)


READERS: dict[str, Callable[[Path], object]] = {
    "site": load_site,
    "tariff": load_tariff,
    "profile": load_profile,
    "tokens": TokenStore.load,
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("bomb", ["deep", "dotted"])
def test_every_reader_of_a_toml_file_has_the_limits(tmp_path: Path, reader: str, bomb: str) -> None:
    path = _write(tmp_path, BOMBS[bomb][0], f"{reader}-{bomb}.toml")
    with pytest.raises(ConfigError, match=r"\(limit\)$"):
        READERS[reader](path)


@pytest.mark.parametrize("bomb", ["deep", "dotted"])
def test_ems_agent_run_exits_2_naming_the_file_and_the_limit(tmp_path: Path, bomb: str) -> None:
    site = _write(tmp_path, BOMBS[bomb][0], "site.toml")
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--site", str(site), "--state-dir", str(tmp_path / "state")],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip() == f"ems-agent: config error: {site}: {BOMBS[bomb][1]}"
    assert "Traceback" not in r.stderr


# Valid files within the limits pass, and parse to what tomllib alone gives: brackets, dots, `=`
# and `#` inside strings and comments are not structure.
TRICKY = (
    '# [[[[ a.b.c.d = 1 in a comment\n'
    "s = \"[[[ . . . ]]] = # \\\" still a string\"\n"
    "lit = 'C:\\path\\[x].{y}'\n"
    'ml = """\nline [[[\n a.b.c.d.e = 1 \\"""\n"" """\n'
    "mll = '''\n{{{ ''' \n"
    'q = """quotes at the end"""""\n'
    '"quoted.key.with.dots" = 1\n'
    "f = [1.5, 2.5, 3.5, 1979-05-27T07:32:00.999999-07:00]\n"
    "[t.\"u.v\".w] # header with a quoted part\n"
    "x = { a = [1, [2, [3]]], b.c = 'd' }\n"
)


def test_strings_comments_and_floats_are_not_mistaken_for_structure(tmp_path: Path) -> None:
    assert load_toml(_write(tmp_path, TRICKY)) == tomllib.loads(TRICKY)


def test_the_limits_themselves_are_accepted(tmp_path: Path) -> None:
    deep = "a = " + "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1) + "\n"  # + the header level: none here
    parts = ".".join(["a"] * MAX_KEY_PARTS) + " = 1\n"
    keys = "".join(f"k{i}=1\n" for i in range(MAX_KEYS))
    for text in (deep, parts, keys):
        assert load_toml(_write(tmp_path, text)) == tomllib.loads(text)
    assert prescan("a = " + "[" * MAX_DEPTH + "]" * MAX_DEPTH, "x") is None
    with pytest.raises(ConfigError):
        prescan("a = " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "x")


def test_every_shipped_toml_file_passes_the_prescan() -> None:
    files = [p for d in ("agent", "drivers", "deploy", "simulators") for p in (ROOT / d).rglob("*.toml")]
    assert len(files) >= 10
    for p in files:
        assert load_toml(p) == tomllib.loads(p.read_text()), p


# Random valid documents: keys and strings drawn from characters that look like structure.
_TEXT = st.text(alphabet="ab.[]{}=#,'\"\\ \n\t", max_size=12)
_SCALAR = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False), _TEXT,
                    st.booleans())  # fmt: skip


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string for these characters
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_value(x)}" for k, x in v.items()) + "}"
    return repr(v)


_VALUES = st.recursive(_SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
                       max_leaves=12)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_TEXT, _VALUES, max_size=6))
def test_random_valid_documents_within_the_limits_parse_as_tomllib_parses_them(doc: dict[str, Any]) -> None:
    text = "".join(f"{json.dumps(k)} = {_value(v)}\n" for k, v in doc.items())
    prescan(text, "x")
    assert tomllib.loads(text) == doc
