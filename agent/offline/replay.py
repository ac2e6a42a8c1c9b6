"""Offline replay: a load trace through the live control policy against the simulator's battery physics.

Per step k of the trace (start ts[k], length dt_k = ts[k+1] - ts[k]):

1. the agent's view at ts[k]: load and PV of step k, the grid meter reading what the battery did
   in step k-1 (grid = load - pv - battery), the clusters' SoC and BMS limits as the plant
   reports them now;
2. `agent.control.decide` - the very function the live loop calls - turns it into a Plan;
3. the plan's PCS setpoints drive `simulators.physics.BatteryPlant` for dt_k (PCS lag, BMS limits
   and tapers, efficiencies, heat), which returns the battery's AC power over the step;
4. the grid import of step k is load - pv - battery.

No I/O and no clock inside the loop: wall time comes from an injected clock, and progress is
reported through a callback between chunks of steps.

A trace coarser than MAX_HOLD_S (5- or 15-min means from a billing meter) is replayed in
sub-steps (`substeps_for`): each trace step is cut into equal sub-steps of at most MAX_HOLD_S (or
the site's cycle, if longer), the load and PV held at the step's mean over them, and the policy
decides at every sub-step; the results are averaged back onto the trace's steps. Held, not
interpolated: a trace's value is the step's mean, so holding it keeps every step's energy and
every demand interval's mean (the baseline bill) exactly, where a line between two means would
move energy across steps and invent a ramp the meter never saw. Without sub-steps the 1 s policy's
decision at a step's start was held for the whole step: at 300 s a month's replay lost money
against no battery where the same load at 60 s saved 1.16 M CNY (BENCHMARKS.md, issue 16).

Speed (a month at 1 s is 2.6 M steps): cluster snapshots are rebuilt only when what a BMS
register would show changes. The BMS reports SoC in 0.1 % and its limits in whole kW (SunSpec
802 registers carry scale factors of that order), so between changes the replay hands decide()
the same immutable tuple of cluster snapshots, and the fleet built from it is reused (the
replay's FleetMemo, agent.control.fleet). The local wall time advances by adding the step and is
re-derived from the Unix time at every quarter hour, where every real zone changes its UTC offset.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from agent.control import Prices, decide, initial_state, reserve_floor_pct
from agent.control.commands import pcc_command
from agent.control.demand import MIN_COVERAGE
from agent.control.envelope import ENVELOPE_DAYS, ring_of
from agent.control.fast import FAST0, fast_step, max_age_s
from agent.control.fleet import FleetMemo
from agent.control.planner import ALARM as PLAN_ALARM
from agent.control.planner import PlanBattery
from agent.control.replan import Replanner, ReplanSettings, ReplanStats, forecast_accuracy
from agent.control.schedule import DispatchPlan
from agent.economics.annual import MonthFigures, estimate
from agent.economics.optimum import BatterySpec, OptimumResult, optimum, resample_mean
from agent.economics.roi import EconomicsConfig, roi
from agent.economics.tariff import FloatArray, Tariff
from agent.model.build import cluster_record, pcs_record
from agent.model.config import SiteConfig
from agent.model.interval import DAY_S, interval_starts, local_slot, slots_per_day
from agent.model.operator import OperatorState
from agent.model.plan import FastWindow, Plan
from agent.model.snapshot import ClusterSnapshot, Measured, SiteSnapshot
from agent.model.soc import site_soc
from agent.offline.connection import smallest_connection_w
from agent.offline.report import compare, ramp_shares
from drivers.keys import STATE_ONLINE
from simulators.physics import BatteryPlant, ClusterParams, PccCommand

SOC_RESOLUTION_PCT = 0.1  # what a BMS SoC register resolves
LIMIT_RESOLUTION_W = 1000.0  # what the BMS charge/discharge limits resolve (after A x V)
MIN_STEP_S = 0.1
MAX_STEP_S = 900.0
# The longest the replay holds one decision inside a coarser trace step (module doc). A minute:
# a decision held d s misplaces at most d / 900 of a demand interval's energy; on the expansion
# bench's 300 s months, 30 s sub-steps moved the annual savings by -1.2 .. +1.9 % from 60 s ones
# (one decision per 300 s: -103 %), at twice the replay's time (BENCHMARKS.md, issue 16 second pass).
MAX_HOLD_S = 60.0
PROGRESS_EVERY = 65_536  # steps between progress callbacks
# "mypyc" when this module runs compiled (`make fast`: ~7x faster per step), else "python"
BUILD = "python" if __file__.endswith(".py") else "mypyc"

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Trace:
    """A load trace (and optional PV) on Unix timestamps (s), W averages over each step."""

    timestamps: FloatArray
    load_w: FloatArray
    pv_w: FloatArray | None = None
    source: str = "trace"

    def __post_init__(self) -> None:
        check_trace(self.timestamps, self.load_w, self.pv_w, self.source)

    @property
    def step_s(self) -> float:
        return float(np.median(np.diff(self.timestamps))) if len(self.timestamps) > 1 else MAX_STEP_S

    @property
    def net_w(self) -> FloatArray:
        """Baseline grid import: load - pv (what the meter reads without a battery)."""
        return self.load_w if self.pv_w is None else self.load_w - self.pv_w


def check_trace(ts: FloatArray, load: FloatArray, pv: FloatArray | None, source: str) -> None:
    """Raise ValueError naming `source` and the first offending sample."""
    if ts.ndim != 1 or load.shape != ts.shape or (pv is not None and pv.shape != ts.shape):
        raise ValueError(f"{source}: timestamps, load and pv must be 1-D and of equal length")
    if len(ts) == 0:
        raise ValueError(f"{source}: no samples")
    for name, arr in (("timestamp", ts), ("load", load), ("pv", pv)):
        if arr is not None and not np.all(np.isfinite(arr)):
            i = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(f"{source}: sample {i + 1}: {name} is not a finite number")
    if pv is not None and np.any(pv < 0):
        i = int(np.flatnonzero(pv < 0)[0])
        raise ValueError(f"{source}: sample {i + 1}: pv must be >= 0 W, got {pv[i]!r}")
    if len(ts) > 1:
        d = np.diff(ts)
        step = float(np.median(d))
        if not MIN_STEP_S * 0.999 <= step <= MAX_STEP_S * 1.001:
            raise ValueError(f"{source}: step of {step:g} s is outside {MIN_STEP_S:g} s .. {MAX_STEP_S:g} s")
        bad = np.flatnonzero((d <= 0) | (d > 1.5 * step) | (d < 0.5 * step))
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"{source}: sample {i + 2}: timestamp {float(ts[i + 1])!r} is {d[i]:g} s after the previous one;"
                f" the trace must be regular (step {step:g} s)"
            )


@dataclass(frozen=True, slots=True)
class ReplayResult:
    trace: Trace
    grid_w: FloatArray  # per step, import positive
    battery_w: FloatArray  # per step, discharge positive
    soc_pct: FloatArray  # fleet SoC at each step's start, at register resolution (NaN without clusters)
    capacity_wh: float  # nameplate of the replayed clusters
    start_wh: float  # stored energy at the start / end of the replay
    end_wh: float
    wall_s: float
    decided_by: dict[str, int] = field(default_factory=dict)  # cycles per deciding controller
    alarms: dict[str, int] = field(default_factory=dict)  # cycles per alarm code
    decide_every: int = 1  # (sub-)steps per agent cycle
    planner: ReplanStats | None = None  # the planner's solves and forecasts, when it ran
    substeps: int = 1  # sub-steps each trace step was replayed in (the arrays are their means)

    @property
    def steps(self) -> int:
        return len(self.grid_w)

    @property
    def us_per_step(self) -> float:
        """Wall time per step the policy ran (a sub-step of a coarse trace's step)."""
        return self.wall_s / (self.steps * self.substeps) * 1e6 if self.steps else 0.0


@dataclass(frozen=True, slots=True)
class PcsModel:
    """How the replay's PCS respond (simulators.physics.PcsParams): first-order lag, and in grid-power
    (PCC) control the local loop's meter sample period and gain (None: critically damped)."""

    tau_s: float = 0.1
    pcc_sample_s: float = 0.02
    pcc_gain: float | None = None


def decide_every_for(cycle_s: float, step_s: float) -> int:
    """Trace steps per agent cycle: the agent decides every `cycle_s` (rounded to whole steps; at
    least every step, so a 15-min trace is decided every step). Raises naming `cycle_s`."""
    if not (math.isfinite(cycle_s) and cycle_s > 0.0):
        raise ValueError(f"cycle_s: must be a number of seconds > 0, got {cycle_s!r}")
    return max(1, round(cycle_s / step_s))


def substeps_for(step_s: float, cycle_s: float, max_hold_s: float = MAX_HOLD_S) -> int:
    """Sub-steps per trace step (module doc): 1 for a trace no coarser than the hold, else the
    fewest equal sub-steps no longer than max(`max_hold_s`, `cycle_s`): the policy never decides
    more often than its own cycle. Raises naming `max_hold_s`."""
    if not (math.isfinite(max_hold_s) and max_hold_s > 0.0):
        raise ValueError(f"max_hold_s: must be a number of seconds > 0, got {max_hold_s!r}")
    hold = max(max_hold_s, cycle_s)
    return max(1, math.ceil(step_s / hold - 1e-6))  # (a step read from timestamps carries float noise)


def held(trace: Trace, substeps: int) -> Trace:
    """`trace` with each step cut into `substeps` equal sub-steps, its load and PV held over them."""
    if substeps == 1:
        return trace
    ts = trace.timestamps
    dts = np.append(np.diff(ts), trace.step_s)
    frac = np.arange(substeps, dtype=np.float64) / substeps
    fine = (ts[:, None] + dts[:, None] * frac[None, :]).ravel()
    pv = np.repeat(trace.pv_w, substeps) if trace.pv_w is not None else None
    return Trace(fine, np.repeat(trace.load_w, substeps), pv, trace.source)


def coarsened(fine: ReplayResult, trace: Trace, substeps: int) -> ReplayResult:
    """A replay of `held(trace, substeps)` on `trace`'s steps: power as each step's mean over its
    (equal) sub-steps, which keeps the energy and every demand interval's mean; SoC at its start."""
    if substeps == 1:
        return fine
    return replace(
        fine,
        trace=trace,
        grid_w=fine.grid_w.reshape(-1, substeps).mean(axis=1),
        battery_w=fine.battery_w.reshape(-1, substeps).mean(axis=1),
        soc_pct=fine.soc_pct[::substeps].copy(),
        substeps=substeps,
    )


def build_plant(site: SiteConfig, soc_pct: float, pcs: PcsModel = PcsModel()) -> BatteryPlant:
    """The site's PCS units and clusters as simulator physics (efficiencies from [control])."""
    c = site.control
    params = {
        d.id: ClusterParams(
            capacity_wh=d.capacity_wh, eta_charge=c.charge_efficiency, eta_discharge=c.discharge_efficiency
        )
        for d in site.clusters
    }
    wiring = {p.id: (p.rated_w, list(p.clusters)) for p in site.pcs}
    # revert timer off: the replay writes every step, and a 15-min step must not trip it
    return BatteryPlant.build(
        wiring,
        params,
        soc_pct,
        tau_s=pcs.tau_s,
        revert_s=0.0,
        noise=False,
        pcc_sample_s=pcs.pcc_sample_s,
        pcc_gain=pcs.pcc_gain,
    )


class _ClusterView:
    """Cluster snapshots as the BMS registers would show them, rebuilt only when those change.

    The replay's register model: each cluster's SoC register in SOC_RESOLUTION_PCT and its charge
    and discharge limit registers in LIMIT_RESOLUTION_W (`registers`); the snapshot records come
    from those register values through the one builder (agent.model.build), as live."""

    def __init__(self, site: SiteConfig, plant: BatteryPlant) -> None:
        pcs_of = {cid: p.id for p in site.pcs for cid in p.clusters}
        self.devs = [(d.id, pcs_of[d.id], d.capacity_wh) for d in site.clusters]
        self.cells = [plant.clusters[d.id] for d in site.clusters]
        self.cache: list[dict[tuple[int, int, int], ClusterSnapshot]] = [{} for _ in self.devs]
        # what the registers show now, per cluster: SoC, charge and discharge limit in their resolutions
        self.ksoc = [-1] * len(self.devs)
        self.kchg = [-1] * len(self.devs)
        self.kdis = [-1] * len(self.devs)
        self.snaps: tuple[ClusterSnapshot, ...] = ()
        self.soc_pct = math.nan  # fleet SoC as the registers show it, updated with the snapshots

    def registers(self) -> bool:
        """Read every cluster's registers (in register units) from the physics; True if any changed."""
        ks = 100.0 / SOC_RESOLUTION_PCT
        kl = 1.0 / LIMIT_RESOLUTION_W
        cells, ksoc, kchg, kdis = self.cells, self.ksoc, self.kchg, self.kdis
        changed = False
        for i in range(len(cells)):  # no allocation when nothing changed: most steps
            c = cells[i]
            a = int(c.stored_wh / c.capacity_wh * ks + 0.5)
            b = int(c.max_charge_w * kl + 0.5)
            d = int(c.max_discharge_w * kl + 0.5)
            if a != ksoc[i] or b != kchg[i] or d != kdis[i]:
                ksoc[i], kchg[i], kdis[i] = a, b, d
                changed = True
        return changed

    def now(self) -> tuple[ClusterSnapshot, ...]:
        """The current tuple; the same object as last time when no register changed."""
        if not self.registers():
            return self.snaps
        ksoc, kchg, kdis = self.ksoc, self.kchg, self.kdis
        out = []
        for i in range(len(self.devs)):
            k = (ksoc[i], kchg[i], kdis[i])
            s = self.cache[i].get(k)
            if s is None:
                cid, pid, cap = self.devs[i]
                # register values in SI units (W, %), as a BMS reporting an online cluster shows them
                s = cluster_record(
                    cid,
                    pid,
                    cap,
                    STATE_ONLINE,
                    Measured(k[0] * SOC_RESOLUTION_PCT),
                    Measured(k[1] * LIMIT_RESOLUTION_W),
                    Measured(k[2] * LIMIT_RESOLUTION_W),
                )
                self.cache[i][k] = s
            out.append(s)
        self.snaps = tuple(out)
        soc = site_soc(out).soc_pct
        self.soc_pct = soc if soc is not None else math.nan
        return self.snaps


def day_profile(trace: Trace, length_s: float, tz: ZoneInfo) -> list[float]:
    """Baseline average per demand interval of the day from local midnight, over the trace's first 24 h.

    The live agent seeds demand shaving with yesterday's profile from its ledger; a replay has no
    yesterday, so the trace's first day stands in for it (NaN where the first day has no data).
    """
    ts = trace.timestamps
    spd = math.ceil(86400.0 / length_s)
    off = (datetime.fromtimestamp(float(ts[0]), tz).utcoffset() or timedelta()).total_seconds()
    first = ts < ts[0] + 86400.0
    slot = (((ts[first] + off) % 86400.0) // length_s).astype(np.int64)
    total = np.bincount(slot, weights=trace.net_w[first], minlength=spd)
    count = np.bincount(slot, minlength=spd)
    with np.errstate(invalid="ignore", divide="ignore"):
        prof = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return [float(v) for v in prof[:spd]]


def history_seed(history: Trace, length_s: float, tz: ZoneInfo) -> tuple[list[float], tuple[float, ...]]:
    """(the day profile, the ring of the last days) a controller leaves after running through
    `history`, the days before a replayed trace: what a running agent carries into the trace's first
    interval (a restarted one from its ledger: agent/live/runtime.py). Each demand interval's
    baseline mean, counted where at least MIN_COVERAGE of it is in the history (as the controller
    counts one); the profile is its last 24 h, the ring its last ENVELOPE_DAYS days."""
    spd = slots_per_day(length_s)
    prof = [math.nan] * spd
    ts = history.timestamps
    if not len(ts):
        return prof, ring_of((), spd)
    starts, idx = np.unique(interval_starts(ts, tz, length_s), return_inverse=True)
    total = np.bincount(idx, weights=history.net_w, minlength=len(starts))  # a Trace is finite throughout
    count = np.bincount(idx, minlength=len(starts))
    end = float(ts[-1]) + history.step_s
    counted: list[tuple[int, float]] = []
    for a, w, c in zip(starts.tolist(), total.tolist(), count.tolist(), strict=True):
        if c * history.step_s < MIN_COVERAGE * length_s or a < end - ENVELOPE_DAYS * DAY_S:
            continue
        key, slot, _, _ = local_slot(datetime.fromtimestamp(a, tz), length_s)
        counted.append((key, w / c))
        if a >= end - DAY_S:
            prof[slot] = w / c
    return prof, ring_of(counted, spd)


def replay(
    site: SiteConfig,
    prices: Prices | None,
    trace: Trace,
    *,
    start_soc_pct: float = 50.0,
    seed_profile: bool = True,
    history: Trace | None = None,
    op: OperatorState | None = None,
    progress: ProgressFn | None = None,
    clock: Callable[[], float] = time.perf_counter,
    decide_every: int = 1,
    pcs_model: PcsModel = PcsModel(),
    replanner: Replanner | None = None,
    progress_every: int = PROGRESS_EVERY,
    max_hold_s: float = MAX_HOLD_S,
) -> ReplayResult:
    """Replay `trace` through decide() and the battery physics of `site` (see the module doc).

    `seed_profile`: start the controller with the trace's first day as "yesterday's" load profile
    (`day_profile`), as the live agent starts with its ledger's; otherwise it learns it on day one.
    `history`: the days before the trace (its net load; PV counted): the controller starts with the
    profile and the last days a running agent has from them (history_seed), not the trace's first
    day, which it has not seen yet (`seed_profile` then unused).
    `decide_every`: the agent's cycle in trace steps (a 0.1 s trace and 10 replay a 1 s cycle):
    decide() runs on the first step of each cycle and the PCS hold what it wrote in between.
    PCS the site runs in grid-power (PCC) control get the plan's grid target, ramp, share and limits
    and run their local loop on the plant's meter (load - pv - battery) inside each physics step.
    `pcs_model`: the PCS's response and local loop (PcsModel; the defaults are the simulator's).
    `replanner`: predictive dispatch (agent.control.replan): at the first cycle of every demand
    interval it is handed the interval just completed (fed only the past) and returns the plan
    decide() tracks; None: the heuristic controllers alone.
    `progress_every`: (sub-)steps between `progress` calls.
    `max_hold_s`: a trace coarser than this is replayed in sub-steps (`substeps_for`, the module doc);
    the result is on the trace's steps either way.
    """
    substeps = substeps_for(trace.step_s, site.cycle_s, max_hold_s)
    run = Replay(
        site,
        prices,
        held(trace, substeps),
        start_soc_pct=start_soc_pct,
        seed_profile=seed_profile,
        history=history,
        op=op,
        decide_every=decide_every,
        pcs_model=pcs_model,
        replanner=replanner,
    )
    n = run.n
    t0 = clock()
    every = max(1, progress_every)
    for lo in range(0, n, every):
        hi = min(n, lo + every)
        run.run(lo, hi)
        if progress is not None:
            progress(hi, n)
    return coarsened(run.result(clock() - t0), trace, substeps)


class Replay:
    """One replay under way (`replay()` runs it to the end): the state carried from step to step.

    `run(lo, hi)` advances it over trace steps lo..hi-1 (in order, from where it stopped). The
    campus replay (agent.offline.campus_replay) advances several in lockstep, one agent cycle at a
    time, and sets `cfg` between cycles as a coordinator's shares would set each agent's limits.
    """

    def __init__(
        self,
        site: SiteConfig,
        prices: Prices | None,
        trace: Trace,
        *,
        start_soc_pct: float = 50.0,
        seed_profile: bool = True,
        history: Trace | None = None,
        op: OperatorState | None = None,
        decide_every: int = 1,
        pcs_model: PcsModel = PcsModel(),
        replanner: Replanner | None = None,
    ) -> None:
        if not 0.0 <= start_soc_pct <= 100.0:
            raise ValueError(f"start_soc_pct must be within [0, 100], got {start_soc_pct!r}")
        if decide_every < 1:
            raise ValueError(f"decide_every must be >= 1 trace step, got {decide_every!r}")
        op = op or OperatorState()
        if not site.maintenance <= op.maintenance:
            # clusters the site file isolates stay in maintenance for the whole replay (never commanded),
            # as the live agent starts with them held
            op = replace(op, maintenance=op.maintenance | site.maintenance)
        self.op = op
        self.prices = prices
        self.trace = trace
        self.decide_every = decide_every
        self.replanner = replanner
        # a trace decided every step changes only when the agent reads it; a finer one, in between
        self.cfg = cfg = replace(site.control, load_changes_at_readings=decide_every == 1)
        self.allow_export = site.allow_export
        tz = site.timezone
        ts_arr = trace.timestamps
        self.n = n = len(ts_arr)
        self.ts: list[float] = ts_arr.tolist()
        self.load: list[float] = trace.load_w.tolist()
        self.pv: list[float] = trace.pv_w.tolist() if trace.pv_w is not None else [0.0] * n
        step = trace.step_s
        self.dts: list[float] = np.append(np.diff(ts_arr), step).tolist()

        self.plant = plant = build_plant(site, start_soc_pct, pcs_model)
        self.capacity = sum(c.capacity_wh for c in plant.clusters.values())
        self.start_wh = plant.stored_wh()
        self.view = _ClusterView(site, plant)
        self.memo = FleetMemo()
        # the PCS as they report themselves for the whole replay: online, at their configured rating
        # (their power registers are not modelled: the site meter gives grid = load - pv - battery)
        self.pcs = pcs = tuple(
            pcs_record(p.id, p.clusters, p.rated_w, STATE_ONLINE, grid_control=p.grid_control == "pcc")
            for p in site.pcs
        )
        self.pcc_ids = [p.id for p in pcs if p.grid_control]
        # the fast lane ([control] fast_lane_s): every `fast_every` steps and right after each cycle,
        # agent.control.fast on the meters (load, and the grid as the last step left it) and the window
        # the last plan granted
        self.fast_every = decide_every_for(cfg.fast_lane_s, step) if cfg.fast_lane_s > 0.0 and decide_every > 1 else 0
        self.fast_age = max_age_s(step * decide_every)
        self.fst = FAST0
        self.fwin: FastWindow | None = None
        self.grid_out = [0.0] * n
        self.bat_out = [0.0] * n
        self.soc_out = [math.nan] * n
        self.by: Counter[str] = Counter()
        self.alarm_count: Counter[str] = Counter()
        length = cfg.demand_interval_s
        if history is not None:
            prof, ring = history_seed(history, length, tz)
            self.st = initial_state(cfg, profile=prof, past=ring)
        else:
            self.st = initial_state(cfg, profile=day_profile(trace, length, tz) if seed_profile else None)
        self.zero = Measured(0.0)

        # predictive dispatch: the demand interval of every step, and the one running
        self.iv_of: list[float] = (
            interval_starts(ts_arr, tz, cfg.demand_interval_s).tolist() if replanner is not None else []
        )
        self.net_all: list[float] = trace.net_w.tolist() if replanner is not None else []
        self.iv_now, self.iv_first = math.nan, 0
        self.sched: DispatchPlan | None = None

        self.bat = 0.0  # the battery's AC power over the last step (discharge positive)
        self.tz = tz
        self.wall: datetime | None = None
        self.quarter = -1
        self.td_s, self.td = 0.0, timedelta(0)  # the last step's length, as a timedelta (the same on a regular trace)
        self.plan: Plan | None = None  # the last cycle's plan
        self.snap: SiteSnapshot | None = None  # and the snapshot it was decided on

    def run(self, lo: int, hi: int) -> None:
        """Steps lo..hi-1 of the trace (the module doc's per-step sequence)."""
        ts, load, pv, dts = self.ts, self.load, self.pv, self.dts
        cfg, op, prices, allow_export, memo = self.cfg, self.op, self.prices, self.allow_export, self.memo
        view, plant, pcc_ids, tz = self.view, self.plant, self.pcc_ids, self.tz
        decide_every, fast_every, fast_age = self.decide_every, self.fast_every, self.fast_age
        replanner, iv_of, net_all = self.replanner, self.iv_of, self.net_all
        grid_out, bat_out, soc_out = self.grid_out, self.bat_out, self.soc_out
        by, alarm_count = self.by, self.alarm_count
        st, fst, fwin, sched, plan, snap = self.st, self.fst, self.fwin, self.sched, self.plan, self.snap
        iv_now, iv_first = self.iv_now, self.iv_first
        bat, wall, quarter, td_s, td = self.bat, self.wall, self.quarter, self.td_s, self.td
        plant_step = plant.step
        reading = self.reading
        setpoints: Mapping[str, float] | None
        for k in range(lo, hi):
            t = ts[k]
            dt = dts[k]
            q = int(t // 900.0)
            if q != quarter or wall is None:
                wall = datetime.fromtimestamp(t, tz)
                quarter = q
            ld = load[k]
            p = pv[k]
            if decide_every == 1 or k % decide_every == 0:
                snap = reading(k, t, wall, ld, p, bat)
                if replanner is not None and iv_of[k] != iv_now:
                    if k > iv_first and iv_now == iv_now:
                        m = k - iv_first
                        replanner.completed(
                            iv_now, sum(net_all[iv_first:k]) / m, max(0.0, sum(grid_out[iv_first:k]) / m)
                        )
                    iv_now, iv_first = iv_of[k], k
                    sched, failed = replanner.plan_at(t, view.soc_pct)
                    if failed:
                        alarm_count[PLAN_ALARM] += 1
                plan, st = decide(snap, st, cfg, op, prices, allow_export, memo, schedule=sched)
                if pcc_ids:
                    write_grid_control(plant, plan, pcc_ids)
                setpoints = plan.pcs_setpoints_w
                fwin = plan.fast_window
                if fast_every:  # the live lane ticks as soon as it is handed a new window (a few ms
                    # after the 1 s loop's write, shorter than a step here): its setpoints replace it
                    fast_sp, fst = fast_step(fwin, fst, t, ld - p - bat, ld, fast_age)
                    if fast_sp is not None:
                        setpoints = fast_sp
                by[plan.decided_by] += 1
                if plan.alarms:
                    alarm_count.update(plan.alarms)
            elif fast_every and k % fast_every == 0:
                setpoints, fst = fast_step(fwin, fst, t, ld - p - bat, ld, fast_age)
            else:
                setpoints = None  # written once per cycle; the PCS hold it in between
            bat = plant_step(setpoints, dt, None, ld - p) if pcc_ids else plant_step(setpoints, dt)
            grid_out[k] = ld - p - bat
            bat_out[k] = bat
            soc_out[k] = view.soc_pct  # as of the step's start (register resolution): cheap
            if dt != td_s:
                td_s, td = dt, timedelta(seconds=dt)
            wall = wall + td
        self.st, self.fst, self.fwin, self.sched, self.plan, self.snap = st, fst, fwin, sched, plan, snap
        self.iv_now, self.iv_first = iv_now, iv_first
        self.bat, self.wall, self.quarter, self.td_s, self.td = bat, wall, quarter, td_s, td

    def reading(self, k: int, t: float, wall: datetime, load_w: float, pv_w: float, bat_w: float) -> SiteSnapshot:
        """What the agent reads at the start of step k: its load and PV, the grid meter as the
        battery's last step (`bat_w`) left it, the clusters' registers now, the PCS."""
        return SiteSnapshot(
            k,
            t,
            wall,
            Measured(load_w - pv_w - bat_w),
            Measured(load_w),
            Measured(pv_w) if pv_w else self.zero,
            True,
            self.view.now(),
            self.pcs,
        )

    def next_reading(self, k: int) -> SiteSnapshot:
        """The reading step k will decide on, before it is run (the campus replay's coordinator
        without delay, a diagnostic)."""
        t = self.ts[k]
        return self.reading(k, t, datetime.fromtimestamp(t, self.tz), self.load[k], self.pv[k], self.bat)

    def result(self, wall_s: float) -> ReplayResult:
        """What the steps run so far gave (the whole trace once run to its end)."""
        return ReplayResult(
            trace=self.trace,
            grid_w=np.asarray(self.grid_out),
            battery_w=np.asarray(self.bat_out),
            soc_pct=np.asarray(self.soc_out),
            capacity_wh=self.capacity,
            start_wh=self.start_wh,
            end_wh=self.plant.stored_wh(),
            wall_s=wall_s,
            decided_by=dict(self.by),
            alarms=dict(self.alarm_count),
            decide_every=self.decide_every,
            planner=self.replanner.stats if self.replanner is not None else None,
        )


def plan_battery(site: SiteConfig, op: OperatorState | None = None) -> PlanBattery:
    """The site's battery as the planner sees it: the optimum's model plus the backup reserve."""
    spec = battery_spec(site)
    cfg = site.control
    return PlanBattery(
        energy_wh=spec.energy_wh,
        power_w=spec.power_w,
        charge_efficiency=spec.charge_efficiency,
        discharge_efficiency=spec.discharge_efficiency,
        soc_min_pct=spec.soc_min_pct,
        soc_max_pct=spec.soc_max_pct,
        reserve_pct=reserve_floor_pct(cfg, op or OperatorState(), spec.energy_wh),
        degradation_cost_per_kwh=spec.degradation_cost_per_kwh,
    )


def planner_report(result: ReplayResult, tariff: Tariff, settings: ReplanSettings) -> dict[str, Any] | None:
    """Solves, their time and the forecast's accuracy against the trace's interval averages."""
    p = result.planner
    if p is None:
        return None
    times = np.asarray(p.solve_s, dtype=np.float64)
    tr = result.trace
    its, inet = resample_mean(tr.timestamps, tr.net_w, tariff.demand_interval_s)
    acc = forecast_accuracy(p.forecasts, its, inet, min(settings.horizon_s, 86400.0), tariff.timezone)
    return {
        "solves": p.solves,
        "failures": p.failures,
        "intervals_without_forecast": p.cold,
        "intervals_plan_kept": p.kept,
        "solve_reasons": dict(p.reasons),
        "solve_ms": {
            "p50": float(np.percentile(times, 50)) * 1e3 if len(times) else None,
            "p99": float(np.percentile(times, 99)) * 1e3 if len(times) else None,
            "max": float(times.max()) * 1e3 if len(times) else None,
            "total_s": float(times.sum()),
        },
        "horizon_h": settings.horizon_s / 3600.0,
        "forecast_warnings": dict(p.warnings),
        "forecast": acc,
    }


def write_grid_control(plant: BatteryPlant, plan: Plan, pcc_ids: list[str]) -> None:
    """What the live loop writes to PCS in grid-power (PCC) control, into the simulator physics."""
    for pid in pcc_ids:
        c = pcc_command(plan, pid)
        plant.write_pcc(
            pid,
            None
            if c is None
            else PccCommand(c.target_w, c.ramp_w_per_s, c.share, c.max_discharge_w, c.max_charge_w, c.grid_min_w),
        )


def site_for(site: SiteConfig, clusters: int | None = None, ramp_limit_w_per_s: float | None = None) -> SiteConfig:
    """The site with another cluster count and/or grid ramp limit (the CLI's overrides)."""
    if clusters is not None:
        site = site.with_clusters(clusters)
    if ramp_limit_w_per_s is not None:
        site = replace(site, control=replace(site.control, ramp_limit_w_per_s=ramp_limit_w_per_s))
    return site


def battery_spec(site: SiteConfig, start_soc_pct: float = 50.0) -> BatterySpec:
    """The site's battery as the optimum's linear model: nameplate, power, window, efficiencies."""
    c = site.control
    cap = sum(d.capacity_wh for d in site.clusters)
    nominal = ClusterParams()
    cluster_w = sum(d.capacity_wh * nominal.c_rate for d in site.clusters)  # C-rate x Wh = W
    pcs_w = sum(p.rated_w for p in site.pcs if p.clusters)
    floor = reserve_floor_pct(c, OperatorState(), cap)
    lo = min(max(c.soc_min_pct, floor), start_soc_pct)
    return BatterySpec(
        energy_wh=cap,
        power_w=min(cluster_w, pcs_w),
        charge_efficiency=c.charge_efficiency,
        discharge_efficiency=c.discharge_efficiency,
        soc_min_pct=lo,
        soc_max_pct=max(c.soc_max_pct, start_soc_pct),
        start_soc_pct=start_soc_pct,
        end_soc_pct=start_soc_pct,
        degradation_cost_per_kwh=c.degradation_cost_per_kwh,
    )


def optimum_for(
    site: SiteConfig, tariff: Tariff, trace: Trace, start_soc_pct: float = 50.0, end_soc_pct: float | None = None
) -> OptimumResult:
    """Perfect-foresight optimum on the trace's demand-interval means (see `evaluate` on why that is fair)."""
    bat = battery_spec(site, start_soc_pct)
    if end_soc_pct is not None:
        bat = replace(bat, end_soc_pct=min(max(end_soc_pct, bat.soc_min_pct), bat.soc_max_pct))
    length = tariff.demand_interval_s
    step = trace.step_s
    ts, net = trace.timestamps, trace.net_w
    if step < length or length % step:
        ts, net = resample_mean(ts, net, length)
    return optimum(ts, np.maximum(net, 0.0), tariff, bat)


def replay_months(rep: dict[str, Any], tariff: Tariff, stored_value: float, rated_w: float) -> list[MonthFigures]:
    """The replay's billing months for the annual estimate (agent.economics.annual): each month's
    bill difference less its demand part, with the degradation and the stored-energy value shared
    out by the time billed; whole when the trace covers the month (99 % of its seconds)."""
    m0, m1 = rep["baseline"]["bill"]["months"], rep["battery"]["bill"]["months"]
    total_s = sum(m["covered_s"] for m in m0)
    other = rep["savings"]["degradation"] + stored_value  # degradation is negative here
    out = []
    for a, b in zip(m0, m1, strict=True):
        start, end = date.fromisoformat(a["start"]), date.fromisoformat(a["end"])
        demand = sum(x["charge"] for x in a["demand"].values()) - sum(x["charge"] for x in b["demand"].values())
        share = a["covered_s"] / total_s if total_s > 0 else 0.0
        out.append(
            MonthFigures(
                start=start,
                end=end,
                time_net=a["total"] - b["total"] - demand + other * share,
                covered_s=a["covered_s"],
                counted_s=a["covered_s"],
                demand_savings=demand,
                demand_max=sum(ch.rate for ch in tariff.demand) * rated_w / 1000.0,
                whole=a["covered_s"] >= 0.99 * (end - start).days * 86_400.0,
            )
        )
    return out


def grid_connection(site: SiteConfig, tr: Trace, result: ReplayResult, econ: EconomicsConfig) -> dict[str, Any]:
    """The smallest connection the battery lets the site run on (agent.offline.connection: an
    energy-feasibility bound), and, where the site sets grid_import_limit_w, what the replay did
    with it and the connection upgrade it avoids (the peak net load less the limit, at
    [economics] connection_capex_per_kw)."""
    net = tr.net_w
    peak = float(net.max()) if len(net) else 0.0
    start = 100.0 * result.start_wh / result.capacity_wh if result.capacity_wh > 0 else 0.0
    smallest = smallest_connection_w(net, tr.step_s, battery_spec(site, start)) if result.capacity_wh > 0 else peak
    limit = site.control.grid_import_limit_w
    above = int(np.count_nonzero(result.grid_w > limit + 1.0)) if limit > 0.0 else None
    avoided_kw = max(0.0, peak - limit) / 1000.0 if limit > 0.0 else 0.0
    return {
        "peak_net_kw": peak / 1000.0,
        "smallest_kw": smallest / 1000.0,
        "method": "energy-feasibility bound: an ideal battery within its power and SoC window, recharging"
        " whenever the load leaves room; bisection to 1 kW",
        "limit_kw": limit / 1000.0 if limit > 0.0 else None,
        "steps_above_limit": above,
        "avoided_kw": avoided_kw,
        "avoided_upgrade_capex": avoided_kw * econ.connection_capex_per_kw,
    }


def evaluate(
    site: SiteConfig,
    tariff: Tariff,
    result: ReplayResult,
    econ: EconomicsConfig,
    ramp_limit_w_per_s: float,
    with_optimum: bool = True,
) -> dict[str, Any]:
    """Bills, peaks, ramps, battery use, ROI and the share of the perfect-foresight optimum.

    The optimum is solved on demand-interval means: any schedule at a finer step has a
    demand-interval average schedule with the same bill (prices are constant within an
    interval on every bundled tariff) and the same throughput, so that optimum is at least as
    good as the best finer schedule and the share reported is, if anything, an understatement.
    The replay does not end exactly where it started, so the optimum is asked to end at the
    same stored energy: both then spend the same energy out of the battery and the share compares
    like with like. (`stored_energy.value` prices the difference at the cheapest energy price
    through the charge efficiency, for the ROI; it is not used in the share.)
    """
    tr = result.trace
    ts = tr.timestamps
    base = tr.net_w
    rep = compare(
        ts,
        base,
        result.grid_w,
        tariff,
        battery_w=result.battery_w,
        capacity_wh=result.capacity_wh,
        ramp_limit_w_per_s=ramp_limit_w_per_s,
        degradation_cost_per_kwh=econ.degradation_cost_per_kwh,
    )
    ramp_shares(rep)
    rep["ramp_limit_kw_per_s"] = ramp_limit_w_per_s / 1000.0
    n_clusters = len(site.clusters)
    n_pcs = sum(1 for p in site.pcs if p.clusters)
    cheapest = float(np.min(tariff.energy_prices(ts))) if len(ts) else 0.0
    delta_wh = result.end_wh - result.start_wh
    value = delta_wh / site.control.charge_efficiency / 1000.0 * cheapest
    net = rep["savings"]["net"]
    adjusted = net + value
    rep["site"] = {
        "id": site.id,
        "clusters": n_clusters,
        "pcs": n_pcs,
        "capacity_kwh": result.capacity_wh / 1000.0,
        "power_kw": battery_spec(site).power_w / 1000.0,
    }
    rep["stored_energy"] = {
        "start_kwh": result.start_wh / 1000.0,
        "end_kwh": result.end_wh / 1000.0,
        "value": value,
        "adjusted_net_savings": adjusted,
    }
    days = rep["hours"] / 24.0
    rep["grid_connection"] = conn = grid_connection(site, tr, result, econ)
    capex = econ.capex(n_clusters, n_pcs) - conn["avoided_upgrade_capex"]
    est = estimate(replay_months(rep, tariff, value, battery_spec(site).power_w), econ.trailing_days)
    rep["annual_estimate"] = est.as_dict()
    rep["roi"] = roi(
        capex, econ.annual_opex, econ.discount_rate, econ.project_life_years, adjusted, days, est.annual
    ).as_dict()
    rep["roi"]["avoided_connection_upgrade"] = conn["avoided_upgrade_capex"]  # taken off the capex above
    rep["replay"] = {
        "steps": result.steps,
        "step_s": tr.step_s,
        "wall_s": result.wall_s,
        "us_per_step": result.us_per_step,
        "cycle_s": tr.step_s / result.substeps * result.decide_every,  # the agent decides once per cycle
        "substeps": result.substeps,
        "build": BUILD,
        "decided_by": dict(sorted(result.decided_by.items(), key=lambda kv: -kv[1])),
        "alarms": result.alarms,
    }
    rep["optimum"] = None
    if with_optimum and n_clusters > 0:
        if np.any(base < 0):
            rep["optimum"] = {"skipped": "the load net of PV goes below 0 W (export is not modelled)"}
        else:
            end_pct = 100.0 * result.end_wh / result.capacity_wh
            o = optimum_for(site, tariff, tr, 100.0 * result.start_wh / result.capacity_wh, end_pct)
            rep["optimum"] = {
                "savings": o.savings,
                "bill_total": o.bill.total,
                "baseline_bill_total": o.baseline_bill.total,
                "degradation_cost": o.degradation_cost,
                "solve_s": o.solve_s,
                "step_s": float(o.timestamps[1] - o.timestamps[0]) if len(o.timestamps) > 1 else tr.step_s,
                "end_soc_pct": end_pct,
                "controller_share": net / o.savings if o.savings > 0 else None,
            }
    return rep
