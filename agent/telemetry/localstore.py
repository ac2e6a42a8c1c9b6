"""The embedded history store used when no database is configured (SQLite, bounded retention).

Schema: one row per series (measurement, tags, field) and one row per (series, t, value) in a
WITHOUT ROWID table keyed by (series, t), so a rewrite of the same point replaces it. The
writer keeps one cycle per `interval_s` (downsampling on write keeps a 128-cluster site small)
and deletes rows older than the retention. `series()` reads one measurement/field over a time
range, averaged into `step_s` buckets, for the API and dashboard.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.live.hub import CycleRecord
from agent.logs import kv
from agent.telemetry.background import BackgroundSink
from agent.telemetry.config import TelemetryConfig
from agent.telemetry.feed import Feed
from agent.telemetry.schema import Point, t_ns

log = logging.getLogger("ems.telemetry")
PRUNE_EVERY_S = 60.0
MAX_BUCKETS = 10_000
HOLD_VALUES = 50_000  # values kept in memory while the store cannot be written (~ minutes of a big site)


def disk_full(e: BaseException) -> bool:
    """SQLite's "database or disk is full", or ENOSPC / EDQUOT from the file system."""
    if isinstance(e, sqlite3.Error):
        return getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True, slots=True)
class Series:
    measurement: str
    field: str
    tags: dict[str, str]
    t: list[datetime]  # bucket start, UTC
    v: list[float]  # bucket mean


class LocalStore:
    def __init__(self, path: Path, retention_s: float) -> None:
        self.path = path
        self.retention_s = retention_s
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # history, not money: a lost last second is fine
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, m TEXT NOT NULL, tags TEXT NOT NULL,
                field TEXT NOT NULL, UNIQUE (m, field, tags));
            CREATE TABLE IF NOT EXISTS sample (series INTEGER NOT NULL, t INTEGER NOT NULL, v REAL NOT NULL,
                PRIMARY KEY (series, t)) WITHOUT ROWID;
            """
        )
        self._lock = threading.Lock()  # one connection, used by the writer thread and readers
        self._ids: dict[tuple[str, str, str], int] = {
            (m, f, tg): int(i) for i, m, tg, f in self._db.execute("SELECT id, m, tags, field FROM series")
        }

    def _series_id(self, m: str, tags: str, field: str) -> int:
        key = (m, field, tags)
        sid = self._ids.get(key)
        if sid is None:
            cur = self._db.execute("INSERT INTO series (m, tags, field) VALUES (?, ?, ?)", (m, tags, field))
            sid = int(cur.lastrowid or 0)
            self._ids[key] = sid
        return sid

    def write(self, points: list[Point]) -> int:
        """Store points (idempotent per series and timestamp). Returns the number of values.

        All or nothing: on an error (e.g. SQLITE_FULL) nothing of the batch is stored and the error
        raised is the cause, not a failed ROLLBACK (SQLite has often rolled back by itself)."""
        rows: list[tuple[int, int, float]] = []
        known = set(self._ids)
        with self._lock:
            self._db.execute("BEGIN")
            try:
                for p in points:
                    tags = json.dumps(dict(p.tags), separators=(",", ":"), sort_keys=True)
                    for f, v in p.fields.items():
                        rows.append((self._series_id(p.measurement, tags, f), p.t_ns, v))
                self._db.executemany("INSERT OR REPLACE INTO sample (series, t, v) VALUES (?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                # Series rows inserted in the failed transaction are gone: forget their ids, or a
                # later series would be given the same id and these samples filed under it.
                for key in set(self._ids) - known:
                    del self._ids[key]
                raise
        return len(rows)

    def prune(self, now: datetime) -> int:
        """Delete values older than the retention. Returns how many went."""
        cut = t_ns(now) - int(self.retention_s * 1e9)
        with self._lock:
            cur = self._db.execute("DELETE FROM sample WHERE t < ?", (cut,))
            return cur.rowcount

    def series(
        self,
        measurement: str,
        field: str,
        start: datetime,
        end: datetime,
        step_s: float,
        tags: Mapping[str, str] | None = None,
    ) -> list[Series]:
        """Every series of `measurement.field` whose tags include `tags`, in [start, end), averaged
        per `step_s` bucket (aligned to the epoch). Raises ValueError naming the bad argument."""
        if step_s <= 0:
            raise ValueError(f"step_s must be > 0, got {step_s}")
        if end <= start:
            raise ValueError(f"end ({end.isoformat()}) must be after start ({start.isoformat()})")
        if (end - start).total_seconds() / step_s > MAX_BUCKETS:
            raise ValueError(f"step_s {step_s:g} gives more than {MAX_BUCKETS} buckets for this range")
        want = dict(tags or {})
        step = int(step_s * 1e9)
        t0, t1 = t_ns(start), t_ns(end)
        out: list[Series] = []
        with self._lock:
            cands = [(sid, json.loads(tg)) for (m, f, tg), sid in self._ids.items() if m == measurement and f == field]
            for sid, tg in sorted(cands, key=lambda x: sorted(x[1].items())):
                if any(tg.get(k) != v for k, v in want.items()):
                    continue
                rows = self._db.execute(
                    "SELECT (t / ?) * ? AS b, avg(v) FROM sample WHERE series = ? AND t >= ? AND t < ?"
                    " GROUP BY b ORDER BY b",
                    (step, step, sid, t0, t1),
                ).fetchall()
                if rows:
                    out.append(
                        Series(
                            measurement,
                            field,
                            tg,
                            [datetime.fromtimestamp(b / 1e9, UTC) for b, _ in rows],
                            [float(v) for _, v in rows],
                        )
                    )
        return out

    def catalog(self) -> dict[str, list[str]]:
        """measurement -> its fields (what `series` can be asked for)."""
        with self._lock:
            cat: dict[str, set[str]] = {}
            for m, f, _ in self._ids:
                cat.setdefault(m, set()).add(f)
        return {m: sorted(fs) for m, fs in sorted(cat.items())}

    def close(self) -> None:
        with self._lock:
            self._db.close()


class LocalStoreSink(BackgroundSink):
    """The writer thread's side. A store that cannot be written (disk full, read-only, I/O
    error) raises one alarm (`state_disk_full`, or `telemetry_store_failed` for other causes)
    and logs one line when the cause starts or changes, never a traceback per flush; the points
    are held in memory (up to HOLD_VALUES values, oldest dropped and counted) and written with
    the next flush once the store takes writes again, and the alarm clears."""

    name = "localstore"

    def __init__(self, cfg: TelemetryConfig, feed: Feed) -> None:
        super().__init__(feed, cfg.queue_records, cfg.batch_points, cfg.flush_interval_s)
        self.cfg = cfg
        self.store = LocalStore(cfg.local_path, cfg.local_retention_s)
        self._last_kept = -float("inf")
        self._pruned_at = 0.0
        self.stored_values = 0
        self.dropped_values = 0  # held values dropped while the store could not be written
        self.failure: str | None = None  # why the store cannot be written now (None: it can)
        self._alarm: str | None = None  # the alarm code raised for it
        self._held: list[Point] = []

    def submit(self, rec: CycleRecord) -> None:
        # Downsampling on write: keep one cycle per interval (cheap check on the caller's side).
        t = rec.snapshot.t_mono
        # within a millisecond of the interval counts as it: cycles 5 s apart on a monotonic clock
        # can differ by 4.99999... after rounding, and one skipped cycle shifts every later sample
        if t - self._last_kept < self.cfg.local_interval_s - 1e-3:
            return
        self._last_kept = t
        super().submit(rec)

    def flush(self, points: list[Point]) -> None:
        batch = self._held + points
        try:
            n = self.store.write(batch)
        except (sqlite3.Error, OSError) as e:
            self._held = _newest(batch, HOLD_VALUES)
            self.dropped_values += sum(len(p.fields) for p in batch) - sum(len(p.fields) for p in self._held)
            self._failed(e)
            return
        self._held = []
        self.stored_values += n
        self._recovered()

    def idle(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            try:
                self.store.prune(datetime.now(UTC))
            except (sqlite3.Error, OSError) as e:
                self._failed(e)

    def _failed(self, e: BaseException) -> None:
        full = disk_full(e)
        why = f"local history store {self.store.path}: {e}"
        if why == self.failure:
            return
        self.failure = why
        code = "state_disk_full" if full else "telemetry_store_failed"
        if self._alarm is not None and self._alarm != code:
            self.feed.alarm(self._alarm, "", on=False)
        self._alarm = code
        detail = "disk full" if full else "cannot be written"
        log.warning(
            f"local history store {detail}; holding points in memory",
            extra=kv(path=str(self.store.path), error=str(e), hold_values=HOLD_VALUES),
        )
        self.feed.alarm(
            code,  # severity from the alarm catalogue (agent/model/alarms.py)
            f"{why}; history held in memory (up to {HOLD_VALUES} values) until it can be written",
        )

    def _recovered(self) -> None:
        if self.failure is None:
            return
        log.warning(
            "local history store writable again",
            extra=kv(path=str(self.store.path), dropped_values=self.dropped_values),
        )
        self.failure = None
        if self._alarm is not None:
            self.feed.alarm(self._alarm, "", on=False)
            self._alarm = None

    def closed(self) -> None:
        if self._held:
            log.warning(
                "local history store: held points not written at shutdown",
                extra=kv(path=str(self.store.path), values=sum(len(p.fields) for p in self._held)),
            )
        self.store.close()

    def status(self) -> dict[str, Any]:
        return {
            "backend": "local",
            "path": str(self.store.path),
            "stored_values": self.stored_values,
            "queue_depth": self.queue_depth,
            "queue_dropped": self.queue_dropped,
            "held_values": sum(len(p.fields) for p in self._held),
            "dropped_values": self.dropped_values,
            "error": self.failure,
        }


def _newest(points: list[Point], max_values: int) -> list[Point]:
    """The newest points of `points` holding at most `max_values` values in all."""
    kept = 0
    for i in range(len(points) - 1, -1, -1):
        kept += len(points[i].fields)
        if kept > max_values:
            return points[i + 1 :]
    return points
