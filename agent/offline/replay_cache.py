"""A file of replay results for `analyze --growth --growth-cache FILE`, keyed by everything a replay reads.

An owner tries other prices, discount rates or horizons many times over the same loads; none of
them changes a replay, and the replays are the run's time. Each result is stored under a SHA-256
of the replay's inputs (the sized site, the tariff, the trace's samples, the start SoC, the cycle,
the economics settings the annual estimate reads) and of the code that computes it (every source
or compiled file of the agent, simulators, drivers and common packages): a change to any of them
is a new key, so a stale result is never reused, only left unused. A file that cannot be read or
does not hold results is reported and replaced, never trusted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

import agent
from agent.atomic_file import replace_text

FORMAT = 1
PACKAGES = ("agent", "simulators", "drivers", "common")
FIELDS = ("annual_savings", "basis", "peak_kw", "cycles_per_year", "wall_s", "steps")


def _canon(x: Any) -> str:
    """A text that is the same for equal inputs in every process (no ids, no hash-ordered sets)."""
    if isinstance(x, np.ndarray):
        return f"array({x.dtype},{x.shape},{hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()})"
    if isinstance(x, dict):
        return "{" + ",".join(sorted(f"{_canon(k)}:{_canon(v)}" for k, v in x.items())) + "}"
    if isinstance(x, (set, frozenset)):
        return "set(" + ",".join(sorted(_canon(v) for v in x)) + ")"
    if isinstance(x, (list, tuple)):
        return "[" + ",".join(_canon(v) for v in x) + "]"
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        inner = ",".join(f"{f.name}={_canon(getattr(x, f.name))}" for f in dataclasses.fields(x))
        return f"{type(x).__name__}({inner})"
    if hasattr(x, "__dict__") and not isinstance(x, type):
        # a plain object (the Tariff): its public attributes; the private ones are memos that
        # fill as it is used (Tariff._day_row) or derived from the public ones
        public = {k: v for k, v in vars(x).items() if not k.startswith("_")}
        return f"{type(x).__name__}{_canon(public)}"
    return repr(x)


def key(*parts: Any) -> str:
    return hashlib.sha256("\n".join(_canon(p) for p in parts).encode()).hexdigest()


def code_digest(roots: Iterable[Path] | None = None) -> str:
    """SHA-256 over the packages' .py and compiled files (paths and contents), in path order."""
    if roots is None:
        base = Path(agent.__file__).resolve().parent.parent
        roots = [base / p for p in PACKAGES]
    h = hashlib.sha256()
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.suffix in (".py", ".so", ".pyd") and p.is_file())
        for p in files:
            h.update(str(p.relative_to(root.parent)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _cell(v: Any) -> dict[str, Any] | None:
    if not isinstance(v, dict) or set(v) != set(FIELDS) or not isinstance(v["basis"], str):
        return None
    nums = [v[f] for f in FIELDS if f != "basis"]
    if not all(isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) for n in nums):
        return None
    return v


def load(path: Path) -> tuple[dict[str, dict[str, Any]], str | None]:
    """(results by key, a warning naming the file when it was unusable); a missing file is empty."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        return {}, f"{path}: unreadable ({e}); replaying everything, the file will be rewritten"
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("cells"), dict):
        return {}, f"{path}: not a replay cache of format {FORMAT}; replaying everything, the file will be rewritten"
    cells = {k: c for k, v in data["cells"].items() if isinstance(k, str) and (c := _cell(v)) is not None}
    bad = len(data["cells"]) - len(cells)
    return cells, (f"{path}: {bad} malformed entries ignored" if bad else None)


def save(path: Path, cells: dict[str, dict[str, Any]]) -> None:
    """Write atomically (a temporary file renamed over it): an interrupted run leaves the old file."""
    replace_text(path, json.dumps({"format": FORMAT, "cells": cells}, indent=1, allow_nan=False))
