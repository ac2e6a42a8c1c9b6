"""What the API remembers between requests, fed by the Mirror once per new cycle.

`submit` only appends to bounded buffers (O(1)), so it never delays the loop. Read-outs that
need more than the latest cycle live here: the rolling chart's history, demand this interval
as seen since start-up (when no billing provider is registered), ramp statistics, and the
per-cycle JSON the SSE stream sends (serialized once per cycle, not once per client). If the
API process falls behind, the mirror skips cycles and these read-outs have gaps: the control
loop never waits for them.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from agent.live.hub import CycleRecord
from agent.model.interval import interval_bounds
from agent.model.ramp_metrics import grid_ramps, ramp_stats
from agent.model.soc import site_soc

from .mirror import Mirror
from .models import DemandOut, HistoryOut, LiveOut, RampOut
from .views import alarm_out, clusters_out, fin, operator_out, pcs_list_out, site_out, val

HISTORY_LEN = 900  # cycles kept for the chart (15 min at 1 s)
RAMP_LEN = 300  # cycles analysed for ramp statistics
SHAVING_SOURCES = ("peak", "demand")  # bound sources whose reason explains the demand target


@dataclass
class _Interval:
    start: float  # Unix time
    total: float = 0.0
    n: int = 0

    @property
    def avg(self) -> float:
        return self.total / self.n


class DemandWindow:
    """Average grid import per demand interval and the month's highest, from observed cycles.

    Import only (export counts as 0 W), intervals aligned as billing and control align them
    (agent.model.interval).
    """

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.since: datetime | None = None
        self.cur: _Interval | None = None
        self.month: tuple[int, int] | None = None
        self.peak_w: float | None = None
        self.peak_at: float | None = None

    def add(self, t_wall: datetime, grid_w: float | None) -> None:
        if self.since is None:
            self.since = t_wall
        ts = t_wall.timestamp()
        start = interval_bounds(ts, t_wall.tzinfo or UTC, self.interval_s)[0]
        month = (t_wall.year, t_wall.month)
        if self.cur is not None and self.cur.start != start:
            self._close(self.cur)
            self.cur = None
        if month != self.month:
            self.month, self.peak_w, self.peak_at = month, None, None
        if self.cur is None:
            self.cur = _Interval(start)
        if grid_w is not None:
            self.cur.total += max(0.0, grid_w)
            self.cur.n += 1

    def _close(self, iv: _Interval) -> None:
        if iv.n and (self.peak_w is None or iv.avg > self.peak_w):
            self.peak_w, self.peak_at = iv.avg, iv.start

    def peak(self) -> tuple[float | None, float | None]:
        """Month peak including the running interval (it counts once it is billed, so show it)."""
        p, at = self.peak_w, self.peak_at
        if self.cur is not None and self.cur.n and (p is None or self.cur.avg > p):
            p, at = self.cur.avg, self.cur.start
        return p, at


class Observer:
    def __init__(self, hub: Mirror) -> None:
        self.hub = hub
        self.t: deque[float] = deque(maxlen=HISTORY_LEN)
        self.rows: deque[tuple[float | None, ...]] = deque(maxlen=HISTORY_LEN)
        self.ramp: deque[tuple[float, float | None, float | None]] = deque(maxlen=RAMP_LEN)
        self.demand = DemandWindow(hub.site.control.demand_interval_s)
        self.sse_clients = 0
        self.sse_dropped = 0
        self._live: tuple[int, object, int, str] | None = None

    # --- sink of the Mirror ------------------------------------------------------------------
    def submit(self, rec: CycleRecord) -> None:
        s = rec.snapshot
        grid, load = val(s.grid_w), val(s.load_w)
        self.t.append(s.t_wall.timestamp())
        self.rows.append((load, grid, fin(s.battery_w), val(s.pv_w), site_soc(s.clusters).soc_pct))
        self.ramp.append((s.t_mono, load, grid))
        self.demand.add(s.t_wall, grid)

    # --- read-outs ---------------------------------------------------------------------------
    def history(self, seconds: float) -> HistoryOut:
        if not self.t:
            return HistoryOut(t=[], load_w=[], grid_w=[], battery_w=[], pv_w=[], soc_pct=[])
        cut = self.t[-1] - seconds
        i = bisect.bisect_right(list(self.t), cut)
        rows = list(self.rows)[i:]
        cols = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
        return HistoryOut(
            t=list(self.t)[i:],
            load_w=list(cols[0]),
            grid_w=list(cols[1]),
            battery_w=list(cols[2]),
            pv_w=list(cols[3]),
            soc_pct=list(cols[4]),
        )

    def demand_out(self) -> DemandOut:
        site = self.hub.site
        reason = None
        if self.hub.latest is not None:
            for b in self.hub.latest.plan.bounds:
                if any(k in b.source for k in SHAVING_SOURCES):
                    reason = b.reason
        prov = self.hub.read("demand")
        if prov is not None:
            # The billing ledger owns the month's record; pass it through as it is.
            return DemandOut(**{"source": "provider", "since": None, "target_reason": reason, **prov})
        d = self.demand
        peak, peak_at = d.peak()
        tz = site.timezone
        cur = d.cur
        last_t = self.t[-1] if self.t else None
        target = site.control.demand_target_w or None
        return DemandOut(
            source="observed",
            since=d.since,
            interval_s=d.interval_s,
            interval_start=datetime.fromtimestamp(cur.start, tz) if cur is not None else None,
            interval_elapsed_s=last_t - cur.start if cur is not None and last_t is not None else None,
            interval_avg_w=cur.avg if cur is not None and cur.n else None,
            month_peak_w=peak,
            month_peak_at=datetime.fromtimestamp(peak_at, tz) if peak_at is not None else None,
            target_w=target,
            target_source="config" if target is not None else None,
            target_reason=reason,
        )

    def ramp_out(self) -> RampOut:
        pts = list(self.ramp)
        t = np.array([p[0] for p in pts], dtype=np.float64)
        load = np.array([np.nan if p[1] is None else p[1] for p in pts], dtype=np.float64)
        grid = np.array([np.nan if p[2] is None else p[2] for p in pts], dtype=np.float64)
        limit = self.hub.site.control.ramp_limit_w_per_s
        lr, gr = grid_ramps(t, load)[0], grid_ramps(t, grid)[0]
        g = ramp_stats(t, grid, limit)
        total_load = float(np.sum(lr))
        return RampOut(
            window_s=pts[-1][0] - pts[0][0] if len(pts) > 1 else 0.0,
            samples=g.samples,
            limit_w_per_s=limit,
            load_max_w_per_s=float(lr.max()) if len(lr) else None,
            grid_max_w_per_s=g.max_w_per_s if g.samples else None,
            load_p99_w_per_s=float(np.percentile(lr, 99)) if len(lr) else None,
            grid_p99_w_per_s=g.p99_w_per_s if g.samples else None,
            smoothing_pct=100.0 * (1.0 - float(np.sum(gr)) / total_load) if total_load > 0 else None,
            grid_over_limit=g.over_limit_n,
        )

    def live(self, rec: CycleRecord) -> LiveOut:
        hub = self.hub
        active = hub.alarms.active()
        return LiveOut(
            site=site_out(rec, hub.operator, active),
            clusters=clusters_out(rec, hub.operator),
            pcs=pcs_list_out(rec),
            demand=self.demand_out(),
            operator=operator_out(hub.operator, hub.site, hub.clock()),
            alarms=[alarm_out(a) for a in active],
            cycle_ms=rec.cycle_ms,
        )

    def live_json(self, rec: CycleRecord) -> str:
        """The cycle's JSON, built once per (cycle, operator state, active alarm set)."""
        key = (rec.snapshot.seq, self.hub.operator, hash(tuple(a.id for a in self.hub.alarms.active())))
        if self._live is not None and self._live[:3] == key:
            return self._live[3]
        text = self.live(rec).model_dump_json()
        self._live = (*key, text)
        return text

    def stats(self) -> dict[str, Any]:
        return {"sse_clients": self.sse_clients, "sse_dropped": self.sse_dropped}
