"""Live cluster-health tracking: fold each cycle into daily rows, keep history, assess.

Fed with every SiteSnapshot (live loop or accelerated simulation). A day closes when the
snapshot's day index changes (by default the site-local calendar day of `t_wall`, so the
injected clock decides, and an accelerated simulation just advances `t_wall` by days).
Clusters are compared only with peers of the same model: `group_of` maps a cluster id to its
peer-group key (the lead site wiring gives BMS profile and nameplate; by default the nameplate
energy seen in the snapshots).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, fields
from typing import Any

import numpy as np

from agent.health.assess import RULES, WINDOW_DAYS, Recommendation, assess, theil_sen
from agent.health.indicators import DailyIndicators, DayAccumulator
from agent.model.snapshot import SiteSnapshot

DayOf = Callable[[SiteSnapshot], int]
INDICATORS = tuple(f.name for f in fields(DailyIndicators) if f.name not in ("cluster_id", "day", "samples"))


def calendar_day(s: SiteSnapshot) -> int:
    return s.t_wall.toordinal()


class HealthTracker:
    def __init__(
        self,
        day_of: DayOf = calendar_day,
        keep_days: int = 400,
        group_of: Mapping[str, str] | None = None,
    ) -> None:
        self.day_of = day_of
        self.acc = DayAccumulator()
        self.history: dict[str, deque[DailyIndicators]] = {}
        self.keep_days = keep_days
        self.group_of: dict[str, str] = dict(group_of or {})
        self._day: int | None = None
        self._last_t: float | None = None
        self.recommendations: list[Recommendation] = []
        self.since: dict[tuple[str, str], int] = {}  # (cluster, indicator) -> first day recommended
        self.on_close: list[Callable[[list[DailyIndicators], list[Recommendation]], None]] = []

    def load(self, rows: Iterable[DailyIndicators], since: Mapping[tuple[str, str], int] | None = None) -> None:
        """Restore persisted daily rows (oldest first) and re-assess, e.g. after a restart."""
        for row in rows:
            self.history.setdefault(row.cluster_id, deque(maxlen=self.keep_days)).append(row)
        self.since.update(since or {})
        self.recommendations = self._assess()

    def add(self, s: SiteSnapshot) -> list[Recommendation] | None:
        """Fold one snapshot in. Returns the fresh recommendations when a day just closed."""
        day = self.day_of(s)
        closed = None
        if self._day is not None and day != self._day:
            closed = self.close_day()
        self._day = day
        dt = 0.0 if self._last_t is None else max(0.0, s.t_mono - self._last_t)
        self._last_t = s.t_mono
        for c in s.clusters:
            if c.id not in self.group_of:
                self.group_of[c.id] = f"{c.capacity_wh:g}Wh"
            self.acc.add(c, dt)
        return closed

    def close_day(self) -> list[Recommendation]:
        if self._day is None:
            return self.recommendations
        return self.add_day(self.acc.close(self._day), self._day)

    def add_day(self, rows: list[DailyIndicators], day: int) -> list[Recommendation]:
        """Append one closed day's rows (from the accumulator, or replayed from a record) and
        assess: what the module knows then depends on this day and the ones before only."""
        for row in rows:
            self.history.setdefault(row.cluster_id, deque(maxlen=self.keep_days)).append(row)
        self.recommendations = self._assess()
        for r in self.recommendations:
            self.since.setdefault((r.cluster_id, r.indicator), day)
        for fn in self.on_close:
            fn(rows, self.recommendations)
        return self.recommendations

    def _assess(self) -> list[Recommendation]:
        groups: dict[str, dict[str, list[DailyIndicators]]] = {}
        for cid, rows in self.history.items():
            groups.setdefault(self.group_of.get(cid, ""), {})[cid] = list(rows)
        recs = [r for g in groups.values() for r in assess(g, RULES)]
        recs.sort(key=lambda r: (r.days_to_limit, r.cluster_id, r.indicator))
        return recs

    def trend(self, cluster_id: str, indicator: str) -> float:
        """Theil-Sen slope per day of one indicator over the trailing window (NaN if unknown)."""
        rows = list(self.history.get(cluster_id, ()))[-WINDOW_DAYS:]
        d = np.array([r.day for r in rows], dtype=float)
        v = np.array([getattr(r, indicator) for r in rows], dtype=float)
        return theil_sen(d, v)

    def summary(self) -> dict[str, Any]:
        """JSON-ready read-out: per cluster the latest day, trends and totals; recommendations."""
        clusters: dict[str, Any] = {}
        for cid, rows in sorted(self.history.items()):
            if not rows:
                continue
            clusters[cid] = {
                "group": self.group_of.get(cid, ""),
                "latest": _clean(asdict(rows[-1])),
                "trend_per_day": {k: _num(self.trend(cid, k)) for k in (r.name for r in RULES)},
                "efc_total": _num(float(np.nansum([r.efc for r in rows]))),
                "throughput_kwh_total": _num(float(np.nansum([r.throughput_kwh for r in rows]))),
                "flagged": sorted({r.indicator for r in self.recommendations if r.cluster_id == cid}),
            }
        fleet: dict[str, float | None] = {}
        for name in INDICATORS:
            vals = [getattr(rows[-1], name) for rows in self.history.values() if rows]
            finite = [v for v in vals if math.isfinite(v)]
            fleet[name] = float(np.median(finite)) if finite else None
        recs = []
        for r in self.recommendations:
            d = _clean(asdict(r))
            d["since_day"] = self.since.get((r.cluster_id, r.indicator))
            recs.append(d)
        return {
            "days": max((len(v) for v in self.history.values()), default=0),
            "last_day": max((v[-1].day for v in self.history.values() if v), default=None),
            "clusters": clusters,
            "fleet_median": fleet,
            "recommendations": recs,
        }


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf -> None, so the read-out is strict JSON (API, MQTT)."""
    return {k: (_num(v) if isinstance(v, float) else _clean(v) if isinstance(v, dict) else v) for k, v in d.items()}
