"""Typed, strict reading of TOML tables with errors that name the file, the key and the problem.

Used by every config-like file (site, profiles, tariffs): each reader takes what it knows
and then calls `done()`, which rejects unknown keys so a typo never passes silently.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")
REQUIRED: Any = object()


class ConfigError(ValueError):
    """A config file is wrong. The message names the file, the key and the problem."""


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:  # tomllib decodes the whole file first
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
