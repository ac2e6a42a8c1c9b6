"""Accelerated-time fleet run: a BatteryPlant aged through whole simulated days (pure, seeded).

`AgingRun` drives the plant with a realistic daily cycle (night and midday charging, morning
and evening discharge blocks, GPU-driven load steps and pauses) on the physics fast path, and
turns it into the SiteSnapshots the agent would have seen at its cycle boundaries: right after
each setpoint change and at the end of each constant-setpoint segment. Degradation
(simulators.degradation) is applied as the simulated day advances. From the true physics state
it records the day each degrading cluster actually reaches its BMS limit, so detection lead
time can be measured. 90 days of 12 clusters take a few seconds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agent.health.tracker import HealthTracker
from agent.model.build import cluster_record, pcs_record
from agent.model.snapshot import Measured, SiteSnapshot
from drivers import keys as K
from simulators.degradation import Degradation, effects
from simulators.physics import ALARM_OVER_TEMP_WARN, ALARM_VOLT_IMBALANCE_WARN, BatteryPlant, Cluster

# The limits at which the simulated BMS (or the warranty) says the cluster is done for. They are
# what the lead time counts toward; the agent's default rules (agent/health/assess.py) use the
# same datasheet figures without ever seeing the true physics state.
LIMIT_RESISTANCE_OHM = 0.150  # pack DC resistance end-of-life (about 1.7x nominal)
LIMIT_SOH_PCT = 80.0  # capacity end-of-life
# cell_drift: the BMS raises ALARM_VOLT_IMBALANCE_WARN (spread > 100 mV);
# cooling: the BMS raises ALARM_OVER_TEMP_WARN (module at 45 degC).


def limit_reached(c: Cluster, kind: str) -> bool:
    """Has the true physics state of `c` crossed the BMS limit that `kind` of fault leads to?"""
    if kind == "resistance":
        return c.pack_resistance_ohm >= LIMIT_RESISTANCE_OHM
    if kind == "capacity_fade":
        return 100.0 * c.capacity_wh / c.p.capacity_wh < LIMIT_SOH_PCT
    if kind == "cell_drift":
        return bool(c.alarms() & ALARM_VOLT_IMBALANCE_WARN)
    return bool(c.alarms() & ALARM_OVER_TEMP_WARN)


# --- accelerated fleet run ------------------------------------------------------------------------

# One day of operation: (start hour, end hour, direction, SoC target range). +1 discharges, -1
# charges, 0 rests. Targets vary day to day so no two days are alike.
DAY_BLOCKS: tuple[tuple[float, float, int, tuple[float, float]], ...] = (
    (0.0, 1.0, 0, (0.0, 0.0)),
    (1.0, 6.0, -1, (85.0, 90.0)),
    (6.0, 8.0, 0, (0.0, 0.0)),
    (8.0, 11.0, +1, (40.0, 55.0)),
    (11.0, 13.0, 0, (0.0, 0.0)),
    (13.0, 16.0, -1, (65.0, 80.0)),
    (16.0, 18.0, 0, (0.0, 0.0)),
    (18.0, 21.0, +1, (12.0, 20.0)),
    (21.0, 24.0, 0, (0.0, 0.0)),
)
LEVELS_C = (0.0, 0.1, 0.2, 0.3, 0.4)  # per-cluster C-rate of a segment (0: the GPU job pauses)
SEGMENT_S = (1200.0, 3600.0)  # constant-setpoint segment length range (the agent samples both ends)
MAX_STEP_S = 600.0  # physics step inside a segment (thermal tau is >= 40 min, so this is fine)
STEP_AFTER_S = 1.0  # the agent's next cycle after a setpoint change samples the new steady state


@dataclass
class AgingRun:
    """A fleet of `n_clusters` (behind PCS units of `per_pcs` each) aged through simulated days."""

    n_clusters: int = 12
    degradations: tuple[Degradation, ...] = ()
    seed: int = 0
    per_pcs: int = 4
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    soc_quantum_pct: float = 0.1  # BMS SoC register resolution
    current_noise_a: float = 0.2  # BMS current sensor noise (1 sigma)
    # 0: a reading at the agent's cycle boundaries only (fast: the estimators need no more); > 0: a
    # reading every sample_s through each segment, as the live loop reads the fleet (1.0: its 1 s)
    sample_s: float = 0.0
    plant: BatteryPlant = field(init=False)
    limit_day: dict[tuple[str, str], int] = field(init=False, default_factory=dict)
    _rng: random.Random = field(init=False)
    _seq: int = field(init=False, default=0)
    _pcs_of: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_clusters < 1 or self.per_pcs < 1:
            raise ValueError("n_clusters and per_pcs must be >= 1")
        if not (self.sample_s >= 0.0 and math.isfinite(self.sample_s)):
            raise ValueError(f"sample_s must be a number >= 0 s, got {self.sample_s!r}")
        ids = [f"c{i + 1:02d}" for i in range(self.n_clusters)]
        unknown = {d.cluster_id for d in self.degradations} - set(ids)
        if unknown:
            raise ValueError(f"degradation names unknown clusters: {', '.join(sorted(unknown))}")
        wiring: dict[str, tuple[float, list[str]]] = {}
        for k in range(0, self.n_clusters, self.per_pcs):
            members = ids[k : k + self.per_pcs]
            wiring[f"pcs{k // self.per_pcs + 1}"] = (len(members) * 250e3, members)
        self.plant = BatteryPlant.build(wiring, soc_pct=50.0, revert_s=0.0, seed=self.seed)
        self._rng = random.Random(f"aging:{self.seed}")
        self._pcs_of = {c.id: p.id for p in self.plant.pcs.values() for c in p.clusters}

    @property
    def cluster_ids(self) -> list[str]:
        return list(self.plant.clusters)

    def days(self, n: int, first: int = 0) -> Iterator[SiteSnapshot]:
        for d in range(first, first + n):
            yield from self.day(d)

    def day(self, d: int) -> Iterator[SiteSnapshot]:
        """Every snapshot the agent would see at its cycle boundaries on day `d` (0-based)."""
        rng = self._rng
        for h0, h1, direction, (lo, hi) in DAY_BLOCKS:
            t, end = h0 * 3600.0, h1 * 3600.0
            target = rng.uniform(lo, hi)
            while t < end - 1.0:
                seg = min(rng.uniform(*SEGMENT_S), end - t)
                self._apply_effects(d + t / 86400.0)
                level = rng.choice(LEVELS_C) if direction else 0.0
                # like a site controller aiming at its SoC target: never overshoot it in one segment
                level = min(level, self._room(direction, target) / 100.0 / (seg / 3600.0))
                self._set(direction * level)
                # the step itself: sample once right after it settles, then at the segment's end
                self.plant.step(None, STEP_AFTER_S)
                yield self._snapshot(d, t + STEP_AFTER_S)
                left = seg - STEP_AFTER_S
                every = self.sample_s if self.sample_s > 0.0 else MAX_STEP_S
                while left > 1e-6:
                    dt = min(every, left)
                    self.plant.step(None, dt)
                    left -= dt
                    if self.sample_s > 0.0 and left > 1e-6:
                        yield self._snapshot(d, t + seg - left)
                t += seg
                yield self._snapshot(d, t)
                self._check_limits(d)

    # --- internals ------------------------------------------------------------------------------
    def _apply_effects(self, day: float) -> None:
        if not self.degradations:
            return
        for cid, c in self.plant.clusters.items():
            c.set_effects(effects(self.degradations, cid, day))

    def _room(self, direction: int, target: float) -> float:
        """SoC (%) left before the fleet's median cluster reaches `target` in `direction` (a site
        controller steers the fleet; a cluster that runs ahead is held by its own BMS limits)."""
        socs = sorted(c.soc_pct for c in self.plant.clusters.values())
        mid = socs[len(socs) // 2]
        room = mid - target if direction > 0 else target - mid if direction < 0 else 0.0
        return max(0.0, room)

    def _set(self, c_rate: float) -> None:
        for pid, p in self.plant.pcs.items():
            w = c_rate * sum(c.p.capacity_wh for c in p.clusters)
            self.plant.pcs[pid].write_setpoint(w, self.plant.t)

    def _check_limits(self, d: int) -> None:
        for deg in self.degradations:
            key = (deg.cluster_id, deg.kind)
            if key not in self.limit_day and limit_reached(self.plant.clusters[deg.cluster_id], deg.kind):
                self.limit_day[key] = d

    def _snapshot(self, d: int, t_day_s: float) -> SiteSnapshot:
        self._seq += 1
        rng = self._rng
        q = self.soc_quantum_pct
        clusters = []
        for c in self.plant.clusters.values():
            m = c.measure()
            soc = float(m[K.SOC_PCT])
            state = K.STATE_OFF if c.removed else K.STATE_FAULT if c.faulted else K.STATE_ONLINE
            clusters.append(
                cluster_record(
                    c.id,
                    self._pcs_of[c.id],
                    c.p.capacity_wh,
                    state,
                    Measured(round(soc / q) * q if q > 0 else soc),
                    Measured(c.max_charge_w),
                    Measured(c.max_discharge_w),
                    power_w=Measured(c.power_w),
                    soh_pct=Measured(round(float(m[K.SOH_PCT]), 1)),
                    voltage_v=Measured(float(m[K.VOLTAGE_V])),
                    current_a=Measured(c.current_a + rng.gauss(0.0, self.current_noise_a)),
                    cell_v_max=Measured(float(m[K.CELL_V_MAX])),
                    cell_v_min=Measured(float(m[K.CELL_V_MIN])),
                    temp_max_c=Measured(float(m[K.TEMP_MAX_C])),
                    temp_min_c=Measured(float(m[K.TEMP_MIN_C])),
                    cycles=Measured(c.cycles),
                    alarms=int(m[K.ALARMS]),
                )
            )
        pcs = tuple(
            pcs_record(p.id, tuple(c.id for c in p.clusters), p.params.rated_w, K.STATE_ONLINE, Measured(p.power_w))
            for p in self.plant.pcs.values()
        )
        zero = Measured(0.0)
        return SiteSnapshot(
            seq=self._seq,
            t_mono=self.plant.t,
            t_wall=self.start + timedelta(days=d, seconds=t_day_s),
            grid_w=zero,
            load_w=zero,
            pv_w=zero,
            grid_up=True,
            clusters=tuple(clusters),
            pcs=pcs,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an accelerated run showed the health tracker, in days since the run started."""

    first_rec: dict[tuple[str, str], int]  # (cluster, indicator) -> day its first recommendation closed
    limit_day: dict[tuple[str, str], int]  # (cluster, kind) -> day the true BMS limit was reached
    days: int


def run_tracker(run: AgingRun, tracker: HealthTracker, days: int, stop_after_limits: int | None = None) -> Outcome:
    """Feed `days` simulated days to `tracker` (stopping `stop_after_limits` days after the
    last degradation reached its limit, when given). Day indices are the tracker's
    (calendar ordinals of t_wall) minus the run's first day."""
    day0 = run.start.toordinal()
    done = 0
    for d in range(days):
        for s in run.day(d):
            tracker.add(s)
        done = d + 1
        all_in = len(run.limit_day) == len(run.degradations) and run.degradations
        if stop_after_limits is not None and all_in and d >= max(run.limit_day.values()) + stop_after_limits:
            break
    # No close_day() here: the last sample of day d is stamped 00:00 of day d + 1, which has
    # already closed day d; what remains is a one-sample day that is not a day's worth.
    first = {k: v - day0 for k, v in tracker.since.items()}
    return Outcome(first, dict(run.limit_day), done)
