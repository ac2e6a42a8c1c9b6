"""A durable, bounded, first-in-first-out spool of line-protocol batches (SQLite in WAL mode).

The InfluxDB writer puts a batch here whenever it cannot deliver it (database down, timeout,
server error) and, from then on, every newer batch too, so replay keeps the original order.
Batches are zlib-compressed. The spool holds at most `max_bytes` of (compressed) batches: when
a new batch does not fit, the oldest batches are evicted and counted, and `on_drop` is told.
Everything survives a restart (rows and the dropped counter), so replay resumes where it
stopped. One thread uses it (the writer); the counters are safe to read from any thread.
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SpoolBatch:
    id: int
    points: int
    body: bytes  # uncompressed line protocol


@dataclass(frozen=True, slots=True)
class SpoolStats:
    batches: int
    points: int
    bytes: int
    dropped_points: int
    dropped_batches: int


class Spool:
    def __init__(
        self,
        path: Path,
        max_bytes: int,
        on_drop: Callable[[int, int], None] | None = None,
    ) -> None:
        """`on_drop(points_dropped_now, points_dropped_total)` runs after an eviction."""
        if max_bytes <= 0:
            raise ValueError(f"spool {path}: max_bytes must be > 0, got {max_bytes}")
        self.path = path
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a batch acknowledged as spooled survives power loss
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS batch (id INTEGER PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL,"
            " size INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
        self._lock = threading.Lock()
        row = self._db.execute("SELECT count(*), coalesce(sum(n), 0), coalesce(sum(size), 0) FROM batch").fetchone()
        self._batches, self._points, self._bytes = int(row[0]), int(row[1]), int(row[2])
        self._dropped_points = self._meta("dropped_points")
        self._dropped_batches = self._meta("dropped_batches")

    def _meta(self, k: str) -> int:
        row = self._db.execute("SELECT v FROM meta WHERE k = ?", (k,)).fetchone()
        return int(row[0]) if row else 0

    def stats(self) -> SpoolStats:
        with self._lock:
            return SpoolStats(self._batches, self._points, self._bytes, self._dropped_points, self._dropped_batches)

    @property
    def empty(self) -> bool:
        return self._batches == 0

    def put(self, body: bytes, points: int) -> int:
        """Append one batch; evict the oldest to make room. Returns the points dropped now."""
        blob = zlib.compress(body, 1)
        size = len(blob)
        rm_batches = rm_points = rm_bytes = 0  # rows evicted from the table
        add_batches, add_points, add_bytes = 1, points, size
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if size > self.max_bytes:
                # Larger than the whole spool: it can never be kept, so it is the one dropped.
                add_batches = add_points = add_bytes = 0
            else:
                cur = db.execute("SELECT id, n, size FROM batch ORDER BY id")
                last_id = None
                while self._bytes - rm_bytes + size > self.max_bytes:
                    r = cur.fetchone()
                    if r is None:  # pragma: no cover - the byte count matches the rows by construction
                        break
                    last_id = r[0]
                    rm_batches, rm_points, rm_bytes = rm_batches + 1, rm_points + r[1], rm_bytes + r[2]
                cur.close()
                if last_id is not None:
                    db.execute("DELETE FROM batch WHERE id <= ?", (last_id,))
                db.execute("INSERT INTO batch (n, size, body) VALUES (?, ?, ?)", (points, size, blob))
            drop_points = rm_points + (points - add_points)
            drop_batches = rm_batches + (1 - add_batches)
            if drop_batches:
                for k, v in (("dropped_points", drop_points), ("dropped_batches", drop_batches)):
                    db.execute(
                        "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = v + excluded.v",
                        (k, v),
                    )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        with self._lock:
            self._batches += add_batches - rm_batches
            self._points += add_points - rm_points
            self._bytes += add_bytes - rm_bytes
            self._dropped_points += drop_points
            self._dropped_batches += drop_batches
            total_dropped = self._dropped_points
        if drop_points and self.on_drop is not None:
            self.on_drop(drop_points, total_dropped)
        return drop_points

    def peek(self, max_points: int) -> list[SpoolBatch]:
        """The oldest batches, up to `max_points` points (always at least one batch if any)."""
        out: list[SpoolBatch] = []
        total = 0
        for bid, n, blob in self._db.execute("SELECT id, n, body FROM batch ORDER BY id LIMIT 256"):
            if out and total + n > max_points:
                break
            out.append(SpoolBatch(int(bid), int(n), zlib.decompress(blob)))
            total += n
        return out

    def ack(self, last_id: int) -> None:
        """Forget every batch up to and including `last_id` (it was delivered)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        row = db.execute(
            "SELECT count(*), coalesce(sum(n), 0), coalesce(sum(size), 0) FROM batch WHERE id <= ?",
            (last_id,),
        ).fetchone()
        db.execute("DELETE FROM batch WHERE id <= ?", (last_id,))
        db.execute("COMMIT")
        with self._lock:
            self._batches -= int(row[0])
            self._points -= int(row[1])
            self._bytes -= int(row[2])

    def file_bytes(self) -> int:
        """Bytes on disk (database + WAL)."""
        total = 0
        for p in (self.path, self.path.with_name(self.path.name + "-wal")):
            if p.exists():
                total += p.stat().st_size
        return total

    def close(self) -> None:
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
