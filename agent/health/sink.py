"""The live health subsystem: a Hub sink feeding a HealthTracker on its own worker thread.

    sink = start_health(site, hub, state_dir)   # appends to hub.sinks, registers hub.providers["health"]
    ...
    sink.stop()                                 # on shutdown (joins the worker)

`submit` only queues the cycle's snapshot (bounded; a stalled worker loses the oldest, never
the loop's time). The worker folds snapshots into the day, and when a day closes it assesses,
persists the daily rows (SQLite, `state_dir/health.db`), writes the daily report
(`state_dir/health/health-YYYY-MM-DD.{md,html}`) and publishes a fresh read-out. The provider
returns that prebuilt read-out, so reading it every cycle (MQTT, telemetry) costs nothing; its
`version` changes only when a day closes. A restart reloads the history; the samples of the
day in progress at shutdown are lost (the day is then computed from the rest of its samples).
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import date
from pathlib import Path
from typing import Any

from agent.health.assess import Recommendation
from agent.health.indicators import DailyIndicators
from agent.health.store import HealthStore
from agent.health.tracker import HealthTracker
from agent.live.hub import CycleRecord, Hub
from agent.model.config import SiteConfig
from agent.model.snapshot import SiteSnapshot

log = logging.getLogger("ems.health")

QUEUE_MAX = 600  # ten minutes of 1 s cycles


def peer_groups(site: SiteConfig) -> dict[str, str]:
    """Peers are clusters of the same model at this site: same BMS profile and nameplate."""
    return {c.id: f"{c.profile}:{c.capacity_wh:g}Wh" for c in site.clusters}


class HealthSink:
    def __init__(self, tracker: HealthTracker, store: HealthStore | None, report_dir: Path | None) -> None:
        self.tracker = tracker
        self.store = store
        self.report_dir = report_dir
        self._q: queue.Queue[SiteSnapshot | None] = queue.Queue(QUEUE_MAX)
        self.dropped = 0
        self.errors = 0
        self.version = 0
        self.last_report: str | None = None
        if store is not None:
            rows, since = store.load()
            tracker.load(rows, since)
        tracker.on_close.append(self._closed)
        self._readout = self._build()
        self._thread: threading.Thread | None = None

    # --- the Hub sink ---------------------------------------------------------------------------
    def submit(self, rec: CycleRecord) -> None:
        self._put(rec.snapshot)

    def _put(self, s: SiteSnapshot | None) -> None:
        while True:
            try:
                self._q.put_nowait(s)
                return
            except queue.Full:
                try:
                    self._q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def read(self) -> dict[str, Any]:
        """The hub provider: the read-out built at the last day close (never computed here)."""
        return self._readout

    # --- worker ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ems-health", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread is not None:
            self._put(None)
            self._thread.join(timeout_s)
            self._thread = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def _run(self) -> None:
        while True:
            s = self._q.get()
            if s is None:
                return
            self.feed(s)

    def feed(self, s: SiteSnapshot) -> None:
        """Fold one snapshot (the worker calls this; tests may call it directly)."""
        try:
            self.tracker.add(s)
        except Exception:  # a bad snapshot must not kill health tracking for good
            self.errors += 1
            log.exception("health: snapshot %s not folded", s.seq)

    def _closed(self, rows: list[DailyIndicators], recs: list[Recommendation]) -> None:
        day = rows[0].day if rows else None
        if self.store is not None:
            try:
                self.store.save(rows, self.tracker.since)
            except Exception:
                self.errors += 1
                log.exception("health: daily rows not persisted")
        if self.report_dir is not None and day is not None:
            stem = f"health-{_label(day)}"
            try:
                # imported when a report is due (matplotlib), not when the live agent starts
                from agent.health.report import write_report

                _, html_path = write_report(
                    self.report_dir, f"Cluster health {_label(day)}", stem, self.tracker.history, recs
                )
                self.last_report = str(html_path)
            except Exception:
                self.errors += 1
                log.exception("health: daily report not written")
        for r in recs:
            log.warning("health: %s", r.text)
        self.version += 1
        self._readout = self._build()

    def _build(self) -> dict[str, Any]:
        out = self.tracker.summary()
        out["version"] = self.version
        out["report"] = self.last_report
        return out


def _label(day: int) -> str:
    """Live day indices are calendar ordinals; anything smaller is a simulated day number."""
    return date.fromordinal(day).isoformat() if day > 366 else f"day-{day}"


def start_health(site: SiteConfig, hub: Hub, state_dir: Path) -> HealthSink:
    """Start cluster-health tracking: appends itself to `hub.sinks` and registers
    `hub.providers["health"]` (read by GET /api/health, MQTT and telemetry)."""
    tracker = HealthTracker(group_of=peer_groups(site))
    sink = HealthSink(tracker, HealthStore(state_dir / "health.db"), state_dir / "health")
    sink.start()
    hub.sinks.append(sink)
    hub.providers["health"] = sink.read
    return sink
