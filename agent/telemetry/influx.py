"""InfluxDB 2 writer that cannot lose a point to an outage.

Why not the client's batching WriteApi: it drops a batch once its retries run out. Here the
client's SYNCHRONOUS API sends one request per batch from our own writer thread, and every
batch that is not acknowledged goes to the durable spool. Once anything is spooled, newer
batches are spooled behind it (never sent past it), and the spool is replayed oldest first, so
the database receives every batch exactly once and in order. A batch the database rejects as
malformed (HTTP 400/413/422) would be refused forever; it is parked in a second spool file
(`*.rejected.db`) with an alarm instead of blocking the replay.

Limits: points still in the in-memory queue (at most `flush_interval_s` worth) are lost if the
process is killed; a request that times out after the server stored it is sent again (InfluxDB
overwrites identical points, so that is harmless there).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from agent.logs import kv
from agent.telemetry.background import BackgroundSink
from agent.telemetry.config import InfluxConfig, TelemetryConfig
from agent.telemetry.feed import Feed
from agent.telemetry.schema import Point, encode
from agent.telemetry.spool import Spool

log = logging.getLogger("ems.telemetry")

REJECT_STATUS = frozenset({400, 413, 422})
REPLAY_BUDGET_S = 1.0  # replay at most this long before looking at new cycles again


class Rejected(Exception):
    """The database refused the data itself; sending it again cannot help."""


class Unavailable(Exception):
    """The database did not take the data now (down, timeout, 5xx, auth); try again later."""


class InfluxTarget:
    """One InfluxDB 2 bucket. `send` raises Rejected or Unavailable; the token is never logged."""

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self._client = InfluxDBClient(
            url=cfg.url, token=cfg.token, org=cfg.org, timeout=int(cfg.timeout_s * 1000), retries=False
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def send(self, body: bytes) -> None:
        try:
            self._api.write(bucket=self.cfg.bucket, org=self.cfg.org, record=body)  # precision: ns
        except ApiException as e:
            status = int(e.status or 0)
            msg = f"{self.cfg.url} bucket {self.cfg.bucket!r}: HTTP {status} {(e.reason or '').strip()}"
            if status in REJECT_STATUS:
                raise Rejected(msg) from None
            raise Unavailable(msg) from None
        except Exception as e:  # urllib3 connection/timeout errors of every kind
            raise Unavailable(f"{self.cfg.url}: {type(e).__name__}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


class InfluxSink(BackgroundSink):
    name = "influx"

    def __init__(self, cfg: TelemetryConfig, feed: Feed, target: InfluxTarget | None = None) -> None:
        super().__init__(feed, cfg.queue_records, cfg.batch_points, cfg.flush_interval_s)
        if cfg.influx is None:
            raise ValueError("InfluxSink needs [telemetry] url")
        self.cfg = cfg
        self.target = target or InfluxTarget(cfg.influx)
        self.spool = Spool(cfg.spool_path, cfg.spool_max_bytes, self._on_spool_drop)
        self.parked = Spool(cfg.spool_path.with_name(cfg.spool_path.stem + ".rejected.db"), cfg.spool_max_bytes, None)
        self.sent_points = 0
        self.spooled_points = 0
        self.replayed_points = 0
        self.rejected_points = 0
        self._retry_at = 0.0
        self._backoff = cfg.retry_min_s
        self._down = False

    # --- outcome bookkeeping -------------------------------------------------------------------
    def _on_spool_drop(self, now: int, total: int) -> None:
        log.warning("telemetry spool full: oldest points dropped", extra=kv(dropped=now, dropped_total=total))
        self.feed.alarm(
            "spool_dropped",
            f"telemetry spool full ({self.cfg.spool_max_bytes / 1e6:g} MB): {total} oldest points dropped",
        )

    def _failed(self, why: str) -> None:
        if not self._down:
            log.warning("telemetry database unavailable: spooling", extra=kv(error=why))
            self.feed.alarm("telemetry_down", f"telemetry database unavailable: {why}")
        self._down = True
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2.0, self.cfg.retry_max_s)

    def _ok(self) -> None:
        self._backoff = self.cfg.retry_min_s
        if self._down and self.spool.empty:
            self._down = False
            log.info("telemetry database back: spool replayed", extra=kv(replayed=self.replayed_points))
            self.feed.alarm("telemetry_down", "", on=False)

    def _park(self, body: bytes, n: int, why: str) -> None:
        self.parked.put(body, n)
        self.rejected_points += n
        log.error("telemetry batch rejected by the database: parked", extra=kv(points=n, error=why))
        self.feed.alarm(
            "telemetry_rejected",
            f"{self.rejected_points} points rejected by the database, kept in {self.parked.path}: {why}",
        )

    # --- writer thread -------------------------------------------------------------------------
    def agent_fields(self) -> dict[str, float]:
        st = self.spool.stats()
        f = super().agent_fields()
        f.update(
            spool_points=float(st.points),
            spool_bytes=float(st.bytes),
            spool_dropped=float(st.dropped_points),
            rejected_points=float(self.rejected_points),
        )
        return f

    def flush(self, points: list[Point]) -> None:
        body = encode(points)
        n = len(points)
        # behind what is already waiting (order is kept); and once closing has taken a write timeout,
        # to the spool at once, so close() returns within stop_wait_s with every point sent or spooled
        closing_late = self.stopping_for_s() > self.target.cfg.timeout_s
        if not self.spool.empty or time.monotonic() < self._retry_at or closing_late:
            self.spool.put(body, n)
            self.spooled_points += n
            return
        try:
            self.target.send(body)
        except Unavailable as e:
            self.spool.put(body, n)
            self.spooled_points += n
            self._failed(str(e))
            return
        except Rejected as e:
            self._park(body, n, str(e))
            return
        self.sent_points += n
        self._ok()

    def stop_wait_s(self) -> float:
        """A send in flight when close() is called, and one begun just before the flushes turn to the
        spool, each bounded by the client's timeout; then local writes only."""
        return 2.0 * self.target.cfg.timeout_s + super().stop_wait_s()

    def idle_wait_s(self) -> float:
        if self.spool.empty:
            return self.flush_interval_s
        return max(0.0, min(self.flush_interval_s, self._retry_at - time.monotonic()))

    def idle(self) -> None:
        deadline = time.monotonic() + REPLAY_BUDGET_S
        while not self.spool.empty and time.monotonic() >= self._retry_at and time.monotonic() < deadline:
            batches = self.spool.peek(self.batch_points * 4)
            body = b"\n".join(b.body for b in batches)
            n = sum(b.points for b in batches)
            try:
                self.target.send(body)
            except Unavailable as e:
                self._failed(str(e))
                return
            except Rejected:
                self._replay_one_by_one()
                continue
            self.spool.ack(batches[-1].id)
            self.replayed_points += n
            self._ok()

    def _replay_one_by_one(self) -> None:
        """A combined replay was rejected: find the bad batch (park it), deliver the good ones."""
        for b in self.spool.peek(self.batch_points * 4):
            try:
                self.target.send(b.body)
            except Unavailable as e:
                self._failed(str(e))
                return
            except Rejected as e:
                self._park(b.body, b.points, str(e))
            else:
                self.replayed_points += b.points
            self.spool.ack(b.id)

    def closed(self) -> None:
        self.spool.close()
        self.parked.close()
        self.target.close()

    def status(self) -> dict[str, Any]:
        st = self.spool.stats()
        return {
            "backend": "influxdb",
            "url": self.cfg.influx.url if self.cfg.influx else None,
            "connected": not self._down,
            "sent_points": self.sent_points,
            "spooled_points": self.spooled_points,
            "replayed_points": self.replayed_points,
            "spool_points": st.points,
            "spool_bytes": st.bytes,
            "spool_dropped_points": st.dropped_points,
            "rejected_points": self.rejected_points,
            "queue_depth": self.queue_depth,
            "queue_dropped": self.queue_dropped,
        }
