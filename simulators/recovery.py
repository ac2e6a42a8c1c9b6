"""Measured aging injected into the simulated fleet: do the health module's estimators recover it?

A few days of a health replay (agent/health/replay.py) are run end to end: each record's true
capacity and resistance for those days are imposed on one simulated cluster (capacity and
resistance factors of simulators.degradation.Effects), the fleet is driven through whole days
of BMS-like readings (simulators/aging.py: SoC quantised, current with sensor noise) into a
HealthTracker, and the tracker's own daily estimates (energy-counted capacity, dV/dI
resistance) are compared with what was injected. The spread of that error is the estimator
noise a replay adds (agent.health.replay.CAPACITY_NOISE_PCT, RESISTANCE_NOISE_PCT).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.health.replay import ClusterSeries
from agent.health.score import true_eol
from agent.health.tracker import HealthTracker
from simulators.aging import AgingRun
from simulators.degradation import Effects


@dataclass
class InjectedRun(AgingRun):
    """AgingRun whose clusters follow measured series from day `first` on (cluster i: series i)."""

    series: Sequence[ClusterSeries] = ()
    first: int = 0
    nominal_mohm: float = 90.0
    _by_id: dict[str, ClusterSeries] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._by_id = dict(zip(self.cluster_ids, self.series, strict=False))

    def injected(self, cid: str, day: int) -> tuple[float, float]:
        """(capacity % of nameplate, resistance factor) imposed on cluster `cid` on run day `day`."""
        s = self._by_id[cid]
        k = min(self.first + day, len(s.day) - 1)
        cap = float(s.capacity_pct[k])
        r = float(s.resistance_mohm[k])
        return cap, r / self.nominal_mohm if math.isfinite(r) else 1.0

    def _apply_effects(self, day: float) -> None:
        for cid, c in self.plant.clusters.items():
            if cid in self._by_id:
                cap, rf = self.injected(cid, int(day))
                c.set_effects(Effects(resistance_factor=rf, capacity_factor=cap / 100.0))


@dataclass(frozen=True, slots=True)
class Recovery:
    days: int
    first: int
    sample_s: float  # 0: readings at the agent's cycle boundaries; > 0: every sample_s
    capacity_err_pct: tuple[float, ...]  # estimated - injected, % points, per cluster-day
    resistance_err_pct: tuple[float, ...]  # (estimated - injected) / injected, %, per cluster-day

    def lines(self) -> list[str]:
        reads = f"a reading every {self.sample_s:g} s" if self.sample_s > 0 else "readings at the cycle boundaries"
        out = [f"simulator check: {self.days} days from record day {self.first} ({reads}), estimators vs injected"]
        for name, e, unit in (
            ("capacity", self.capacity_err_pct, "% points"),
            ("resistance", self.resistance_err_pct, "% of value"),
        ):
            a = np.array(e)
            if len(a):
                out.append(
                    f"  {name}: {len(a)} cluster-days, bias {np.mean(a):+.2f}, scatter (1 sigma) {np.std(a):.2f}, "
                    f"median |error| {np.median(np.abs(a)):.2f}, max |error| {np.max(np.abs(a)):.2f} {unit}"
                )
            else:
                out.append(f"  {name}: no estimate (not in the record, or no usable day)")
        return out


def recover(series: Sequence[ClusterSeries], days: int, seed: int = 0, sample_s: float = 0.0) -> Recovery:
    """Run `days` simulated days: the last `days` before the first record ends or reaches its end
    of life (all clusters still in service, aged as far as the fleet gets together). `sample_s`
    > 0 reads the fleet that often, as the live loop does (AgingRun.sample_s)."""
    end = min(eol if (eol := true_eol(s)) is not None else len(s.day) - 1 for s in series)
    first = max(0, end - days + 1)
    run = InjectedRun(n_clusters=len(series), seed=seed, series=series, first=first, sample_s=sample_s)
    tracker = HealthTracker(day_of=lambda s: (s.t_wall - run.start).days)
    # the first sample of a day closes the one before; the last day closes with the next's first
    for d in range(days):
        for snap in run.day(d):
            tracker.add(snap)
    cap_err: list[float] = []
    res_err: list[float] = []
    true_r = {cid: c.resistance_ohm * 1000.0 for cid, c in run.plant.clusters.items()}
    for cid, rows in tracker.history.items():
        if cid not in run._by_id:
            continue
        for row in rows:
            if row.day >= days:  # the one-sample day the last snapshot opens
                continue
            cap, rf = run.injected(cid, row.day)
            if math.isfinite(row.capacity_pct):
                cap_err.append(row.capacity_pct - cap)
            if math.isfinite(row.resistance_mohm) and math.isfinite(float(run._by_id[cid].resistance_mohm[0])):
                inj = true_r[cid] * rf
                res_err.append(100.0 * (row.resistance_mohm - inj) / inj)
    return Recovery(days, first, sample_s, tuple(cap_err), tuple(res_err))
