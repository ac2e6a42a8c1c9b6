"""Daily health history on disk (SQLite in the state directory), so a restart keeps the trends.

One row per (cluster, day) holding the DailyIndicators as JSON (NaN stored as null), and the day
each (cluster, indicator) recommendation was first raised. Writes are idempotent: a day written
twice (a restart that closes the same day again) replaces the earlier row, never duplicates it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import asdict, fields
from pathlib import Path

from agent.health.indicators import DailyIndicators

_FLOATS = {f.name for f in fields(DailyIndicators) if f.type in ("float", float)}


class HealthStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written from the health worker thread only; the API reads the in-memory summary.
        self.db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS daily (cluster_id TEXT, day INTEGER, row TEXT, PRIMARY KEY (cluster_id, day))"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS since (cluster_id TEXT, indicator TEXT, day INTEGER, "
            "PRIMARY KEY (cluster_id, indicator))"
        )

    def save(self, rows: list[DailyIndicators], since: dict[tuple[str, str], int]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO daily VALUES (?, ?, ?)",
                [(r.cluster_id, r.day, json.dumps(_encode(r), allow_nan=False)) for r in rows],
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO since VALUES (?, ?, ?)", [(c, i, d) for (c, i), d in since.items()]
            )

    def load(self) -> tuple[list[DailyIndicators], dict[tuple[str, str], int]]:
        rows = [_decode(json.loads(r)) for (r,) in self.db.execute("SELECT row FROM daily ORDER BY day, cluster_id")]
        since = {(c, i): d for c, i, d in self.db.execute("SELECT cluster_id, indicator, day FROM since")}
        return rows, since

    def close(self) -> None:
        self.db.close()


def _encode(r: DailyIndicators) -> dict[str, object]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(r).items()}


def _decode(d: dict[str, object]) -> DailyIndicators:
    known = {f.name for f in fields(DailyIndicators)}
    vals = {k: (math.nan if v is None and k in _FLOATS else v) for k, v in d.items() if k in known}
    for k in _FLOATS - vals.keys():  # a row written before an indicator existed
        vals[k] = math.nan
    return DailyIndicators(**vals)  # type: ignore[arg-type]
