"""Measured cell aging replayed into the live health module, day by day (pure, seeded).

One aging record (a cell or a cluster: capacity per cycle, optionally resistance and
temperature) becomes one cluster of the site:

- capacity: % of the record's first capacity (median of its first `FIRST_N` cycles, so an
  outlier first cycle does not set the scale), i.e. the cluster's nameplate; 80 % is the
  end-of-life limit either way;
- resistance: the cluster's nominal pack resistance times the record's resistance relative to
  its own start (cells of another chemistry and size keep their relative rise);
- `cycles_per_day` cycles make one day (the median of the day's cycles), one by default;
- the daily estimates then get the scatter of the module's own estimators (seeded Gaussian
  noise: `capacity_noise_pct`, `resistance_noise_pct`), as a BMS-fed site would see them.

`replay` feeds the rows to a HealthTracker one day at a time through the same `add_day` the
live loop uses, so what the module says on day d depends on days <= d only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.health.assess import Recommendation
from agent.health.indicators import DailyIndicators
from agent.health.tracker import HealthTracker

FIRST_N = 5  # cycles whose median is the record's first capacity / resistance
NOMINAL_RESISTANCE_MOHM = 90.0  # the cluster datasheet's pack resistance (assess.RULES limit: 150)
# The module's own estimators' day-to-day scatter, measured by `ems-agent health-replay
# --sim-days` on the simulator (counted capacity 0.13-0.16 % points, dV/dI resistance 0.34 %
# of value, 1 sigma: see BENCHMARKS.md), doubled: a real site's days are less regular than
# the simulated ones (fewer full swings, temperature), and the replay should not flatter it.
CAPACITY_NOISE_PCT = 0.3
RESISTANCE_NOISE_PCT = 0.7


@dataclass(frozen=True, slots=True)
class AgingRecord:
    """One cell's (or cluster's) measured aging, in the record's own units, oldest first."""

    source_id: str
    cycle: tuple[float, ...]
    capacity: tuple[float, ...]
    resistance: tuple[float, ...] = ()  # empty: not measured
    temperature_c: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplayConfig:
    cycles_per_day: float = 1.0
    capacity_noise_pct: float = CAPACITY_NOISE_PCT
    resistance_noise_pct: float = RESISTANCE_NOISE_PCT
    nominal_resistance_mohm: float = NOMINAL_RESISTANCE_MOHM
    seed: int = 0


@dataclass(frozen=True, slots=True)
class ClusterSeries:
    """One record mapped onto one cluster: daily values, without and with estimator noise."""

    cluster_id: str
    source_id: str
    nameplate_wh: float
    day: np.ndarray  # day index from the record's start
    capacity_pct: np.ndarray  # true (as measured by the lab), % of first capacity
    resistance_mohm: np.ndarray  # true, NaN if not measured
    temperature_c: np.ndarray  # NaN if not measured
    seen_capacity_pct: np.ndarray  # what the module's estimators report
    seen_resistance_mohm: np.ndarray


def map_records(
    records: Sequence[AgingRecord], clusters: Sequence[tuple[str, float]], cfg: ReplayConfig
) -> list[ClusterSeries]:
    """Map record i onto cluster i ((id, nameplate Wh)); zip stops at the shorter list."""
    rng = random.Random(f"health-replay:{cfg.seed}")
    out = []
    for rec, (cid, nameplate) in zip(records, clusters, strict=False):
        cyc = np.asarray(rec.cycle, dtype=float)
        day = np.floor((cyc - cyc[0]) / cfg.cycles_per_day).astype(int)
        days = np.unique(day)
        cap = _daily(day, days, np.asarray(rec.capacity, dtype=float))
        cap_pct = 100.0 * cap / _first(cap)
        if rec.resistance:
            r = _daily(day, days, np.asarray(rec.resistance, dtype=float))
            r_mohm = cfg.nominal_resistance_mohm * r / _first(r)
        else:
            r_mohm = np.full(len(days), math.nan)
        temp = _daily(day, days, np.asarray(rec.temperature_c, dtype=float)) if rec.temperature_c else None
        noise_c = np.array([rng.gauss(0.0, cfg.capacity_noise_pct) for _ in days])
        noise_r = np.array([rng.gauss(0.0, cfg.resistance_noise_pct / 100.0) for _ in days])
        out.append(
            ClusterSeries(
                cid, rec.source_id, nameplate, days, cap_pct, r_mohm,
                temp if temp is not None else np.full(len(days), math.nan),
                cap_pct + noise_c, r_mohm * (1.0 + noise_r),
            )
        )  # fmt: skip
    return out


def _daily(day: np.ndarray, days: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Median of each day's cycles (NaN where a day has no finite value)."""
    out = np.full(len(days), math.nan)
    for k, d in enumerate(days):
        w = v[day == d]
        w = w[np.isfinite(w)]
        if len(w):
            out[k] = float(np.median(w))
    return out


def _first(v: np.ndarray) -> float:
    w = v[np.isfinite(v)][:FIRST_N]
    return float(np.median(w)) if len(w) else math.nan


def daily_row(s: ClusterSeries, k: int, cycles_per_day: float) -> DailyIndicators:
    """The DailyIndicators row the module would have closed for day index k of `s`.

    Indicators the record does not carry are NaN (no rest spread, no SoH register: the counted
    capacity is the module's own estimate) or nominal (no alarms, no comm errors)."""
    cap = float(s.seen_capacity_pct[k])
    return DailyIndicators(
        cluster_id=s.cluster_id,
        day=int(s.day[k]),
        cell_spread_mv=math.nan,
        temp_max_c=float(s.temperature_c[k]),
        temp_spread_c=math.nan,
        soh_pct=math.nan,
        capacity_pct=cap,
        resistance_mohm=float(s.seen_resistance_mohm[k]),
        alarm_rate=0.0,
        comm_error_rate=0.0,
        throughput_kwh=2.0 * cycles_per_day * s.nameplate_wh * cap / 100.0 / 1000.0,
        efc=cycles_per_day * cap / 100.0,
        samples=1,
    )


@dataclass
class ReplayOutcome:
    """What the module said, day by day."""

    days: int
    # cluster -> first day with a wear recommendation (peer drift or end of life: what replacement
    # planning and the ranking go by), and that recommendation
    first_rec: dict[str, int] = field(default_factory=dict)
    first: dict[str, Recommendation] = field(default_factory=dict)
    peer_alarms: list[tuple[int, Recommendation]] = field(default_factory=list)  # basis "peers", first per pair
    # basis "connection" (a resistance rise its capacity does not echo), first per cluster
    connection: list[tuple[int, Recommendation]] = field(default_factory=list)
    last: dict[str, list[Recommendation]] = field(default_factory=dict)  # cluster -> its recs on its last day
    by_day: dict[int, list[Recommendation]] = field(default_factory=dict)  # every day's recommendations


def replay(series: Sequence[ClusterSeries], cycles_per_day: float = 1.0, until: int | None = None) -> ReplayOutcome:
    """Run the live tracker over every day (up to `until`, inclusive), one day at a time."""
    tracker = HealthTracker(group_of={s.cluster_id: f"{s.nameplate_wh:g}Wh" for s in series})
    index: dict[int, list[tuple[ClusterSeries, int]]] = {}
    for s in series:
        for k, d in enumerate(s.day):
            index.setdefault(int(d), []).append((s, k))
    last_day = {s.cluster_id: int(s.day[-1]) for s in series}
    out = ReplayOutcome(days=0)
    seen_peer: set[tuple[str, str]] = set()
    for day in sorted(index):
        if until is not None and day > until:
            break
        rows = [daily_row(s, k, cycles_per_day) for s, k in index[day]]
        rows.sort(key=lambda r: r.cluster_id)
        recs = tracker.add_day(rows, day)
        out.days = day + 1
        out.by_day[day] = recs
        for r in recs:
            if r.basis == "connection":
                if r.cluster_id not in {c.cluster_id for _, c in out.connection}:
                    out.connection.append((day, r))
                continue
            if r.cluster_id not in out.first_rec:
                out.first_rec[r.cluster_id] = day
                out.first[r.cluster_id] = r
            if r.basis == "peers" and (r.cluster_id, r.indicator) not in seen_peer:
                seen_peer.add((r.cluster_id, r.indicator))
                out.peer_alarms.append((day, r))
        for cid, ld in last_day.items():
            if ld == day:
                out.last[cid] = [r for r in recs if r.cluster_id == cid]
    return out


def history_of(series: Sequence[ClusterSeries], cycles_per_day: float = 1.0) -> Mapping[str, list[DailyIndicators]]:
    """Every cluster's rows (for plots)."""
    return {s.cluster_id: [daily_row(s, k, cycles_per_day) for k in range(len(s.day))] for s in series}
