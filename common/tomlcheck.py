"""Typed, strict reading of TOML tables with errors that name the file, the key and the problem.

Used by every config-like file (site, profiles, tariffs, API tokens): each reader takes what it
knows and then calls `done()`, which rejects unknown keys so a typo never passes silently.

`load_toml` is the one way such a file is read. Before tomllib sees the text it checks a byte
limit and a cheap lexical pre-scan (nesting depth, dotted-key length, key count): tomllib recurses
once per nested array and rebuilds nested tables once per key part, so `a = [[[[...` 100,000 deep
raised RecursionError and a 40 KB dotted key `a.a.a...` took 3.7 s and 1.6 GB. Those are refused
before any parsing, in time linear in the file size.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")
REQUIRED: Any = object()


class ConfigError(ValueError):
    """A config file is wrong. The message names the file, the key and the problem."""


# Limits on every TOML file the agent reads. The largest shipped file is ~5 KB with nesting 2 and
# 3-part keys; a site of 128 clusters is ~20 KB and ~1,000 keys. tomllib takes ~0.5 s for 256 KB
# of the worst kind (a long array), ~2 s for 1 MB, so the byte limit also bounds a (re)load.
MAX_BYTES = 256 << 10
MAX_DEPTH = 32  # arrays, inline tables and header brackets open at once
MAX_KEY_PARTS = 32  # parts of one dotted key (`a.b.c` = 3), in a header or before `=`
MAX_KEYS = 20_000  # `key = value` assignments, inline tables included

# What the pre-scan looks at: strings and comments (skipped whole: they may hold anything), the
# brackets, and the characters that end a key. A string's end is found with one regex match, so
# the scan is linear; an unterminated string ends it (tomllib then reports where).
_TOKENS = re.compile(r'"""|' + r"'''" + r'|["\'#\[\]{}=,.\n]')
_STRING_END = {
    '"""': re.compile(r'(?:[^"\\]|\\[\s\S]|"(?!""))*""""{0,2}'),
    "'''": re.compile(r"[\s\S]*?'''(?:'{0,2})"),
    '"': re.compile(r'(?:[^"\\\n]|\\.)*"'),
    "'": re.compile(r"[^'\n]*'"),
}


def prescan(text: str, where: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, a key of more than MAX_KEY_PARTS parts and more than
    MAX_KEYS keys, before a parser builds anything. Valid TOML within the limits always passes.

    Outside strings and comments a dot is a dotted-key separator or the one dot of a float or a
    time, so the dots between two structural characters bound the parts of a key.
    """
    depth = keys = dots = 0
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKENS.search(text, pos)
        if m is None:
            return
        tok, pos = m.group(), m.end()
        if tok in _STRING_END:
            end = _STRING_END[tok].match(text, pos)
            if end is None:
                return  # unterminated: tomllib says where
            pos = end.end()
        elif tok == "#":
            nl = text.find("\n", pos)
            pos = n if nl < 0 else nl
        elif tok == ".":
            dots += 1
            if dots >= MAX_KEY_PARTS:
                raise ConfigError(f"{where}: a dotted key has more than {MAX_KEY_PARTS} parts (limit)")
        else:
            dots = 0
            if tok in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(f"{where}: nesting deeper than {MAX_DEPTH} levels (limit)")
            elif tok in "]}":
                depth = max(0, depth - 1)
            elif tok == "=":
                keys += 1
                if keys > MAX_KEYS:
                    raise ConfigError(f"{where}: more than {MAX_KEYS} keys (limit)")


def load_toml(path: Path) -> dict[str, Any]:
    """Read and parse one TOML file within the limits above; ConfigError names the file."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_BYTES} bytes (limit)")
        text = raw.decode("utf-8")
        prescan(text, str(path))
        return tomllib.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:  # decoded whole before parsing
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


class Table:
    """A view of one TOML table that hands out typed values and remembers what it used."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: must be a table, got {type(data).__name__}")
        self.data: dict[str, Any] = data
        self.where = where
        self._used: set[str] = set()

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(f"{self.where}: key '{key}' {problem}")

    def has(self, key: str) -> bool:
        return key in self.data

    def _get(self, key: str, default: Any) -> Any:
        self._used.add(key)
        if key not in self.data:
            if default is REQUIRED:
                self.fail(key, "is required")
            return default
        return self.data[key]

    def text(self, key: str, default: Any = REQUIRED, choices: tuple[str, ...] = ()) -> Any:
        v = self._get(key, default)
        if v is default and key not in self.data:
            return v
        if not isinstance(v, str) or not v:
            self.fail(key, f"must be a non-empty string, got {v!r}")
        if choices and v not in choices:
            self.fail(key, f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def number(
        self,
        key: str,
        default: Any = REQUIRED,
        lo: float = -math.inf,
        hi: float = math.inf,
        lo_open: bool = False,
    ) -> Any:
        v = self._get(key, default)
        if v is default and key not in self.data:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(key, f"must be a number, got {v!r}")
        if v < lo or (lo_open and v == lo) or v > hi:
            lo_s = f"> {lo:g}" if lo_open else f">= {lo:g}"
            self.fail(key, f"must be {lo_s} and <= {hi:g}, got {v!r}")
        return float(v)

    def integer(self, key: str, default: Any = REQUIRED, lo: int = -(2**63), hi: int = 2**63) -> Any:
        v = self._get(key, default)
        if v is default and key not in self.data:
            return v
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, f"must be an integer, got {v!r}")
        if not lo <= v <= hi:
            self.fail(key, f"must be between {lo} and {hi}, got {v!r}")
        return v

    def flag(self, key: str, default: Any = REQUIRED) -> Any:
        v = self._get(key, default)
        if v is default and key not in self.data:
            return v
        if not isinstance(v, bool):
            self.fail(key, f"must be true or false, got {v!r}")
        return v

    def texts(self, key: str, default: Any = REQUIRED) -> Any:
        v = self._get(key, default)
        if v is default and key not in self.data:
            return v
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            self.fail(key, f"must be a list of non-empty strings, got {v!r}")
        return tuple(v)

    def table(self, key: str, required: bool = False) -> Table:
        v = self._get(key, REQUIRED if required else {})
        return Table(v, f"{self.where} [{key}]")

    def tables(self, key: str) -> list[Table]:
        v = self._get(key, [])
        if not isinstance(v, list):
            self.fail(key, "must be an array of tables ([[...]])")
        return [Table(x, f"{self.where} [[{key}]] #{i + 1}") for i, x in enumerate(v)]

    def raw(self, key: str, default: Any = None) -> Any:
        return self._get(key, default)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._used)
        if unknown:
            raise ConfigError(f"{self.where}: unknown key(s) {', '.join(repr(k) for k in unknown)}")
