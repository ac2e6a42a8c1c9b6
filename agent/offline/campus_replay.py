"""Campus replay: several feeders (each its own load, battery and agent) under one utility meter.

The campus is billed on the SUM of its feeders' grid imports. Three ways to run the same loads,
each through the single-site replay machinery (agent.offline.replay: the live decide() against the
simulator's battery physics), so all three differ only in who decides what:

- coordinated: every agent cycle each feeder reports its state (agent.control.campus_share
  .feeder_state, what the live agent publishes), `agent.campus.allocate` splits the campus limits
  into shares, sent as the coordinator sends them (allocate.to_send: import cap and ramp held down
  over its last allocations, the demand target as the interval's energy left), and each feeder's
  policy runs the next cycle with its share as its import cap, ramp limit and demand target
  (campus_share.with_share, as the live agent applies it). The share arrives one cycle late, as
  live: the coordinator answers the reports of cycle k, the agents apply it at cycle k + 1 (before the first
  answer they run on their own site file's limits);
- uncoordinated: each feeder shaves its own peak alone on its own meter (what happens without the
  coordinator: each agent sees only its own feeder);
- ideal: one site holding every feeder's batteries and PCS, under one controller that sees the
  summed load (the campus limits as its own limits): the best the same batteries do with one brain.

No I/O and no clock inside: wall time comes from an injected clock, progress through a callback.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from agent.campus.allocate import SHARE_WINDOW, CampusLimits, FeederState, Share, allocate, to_send
from agent.campus.demand import start as demand_start
from agent.campus.demand import step as demand_step
from agent.control import Prices
from agent.control.campus_share import feeder_state, report_forecast_w, report_raise_w, with_share
from agent.economics.tariff import FloatArray, Tariff
from agent.model.config import DeviceConfig, SiteConfig
from agent.model.snapshot import SiteSnapshot
from agent.offline.replay import (
    PROGRESS_EVERY,
    ProgressFn,
    Replay,
    ReplayResult,
    Trace,
    battery_spec,
    day_profile,
    replay,
)
from agent.offline.report import compare

MODES = ("coordinated", "uncoordinated", "ideal")


@dataclass(frozen=True, slots=True)
class Feeder:
    """One feeder: its agent's site (its battery, PCS and [control]; `site.id` names it) and its load."""

    site: SiteConfig
    trace: Trace


@dataclass(frozen=True, slots=True)
class CampusRun:
    """One mode's replay of the campus."""

    mode: str
    timestamps: FloatArray
    net_w: FloatArray  # campus baseline: the sum of the feeders' load - pv
    grid_w: FloatArray  # campus import, the sum of the feeders' (what the utility meter reads)
    battery_w: FloatArray  # summed battery AC power, discharge positive
    capacity_wh: float
    start_wh: float
    end_wh: float
    wall_s: float
    feeders: dict[str, ReplayResult] = field(default_factory=dict)  # per feeder (the pooled site in ideal)
    allocate_s: FloatArray = field(default_factory=lambda: np.zeros(0))  # coordinated: allocate + to_send per cycle


def progress_every(n: int) -> int:
    """Steps between progress calls: every 1 % of the run, at most every PROGRESS_EVERY steps."""
    return max(1, min(PROGRESS_EVERY, n // 100))


def check_campus(feeders: Sequence[Feeder]) -> None:
    """Raise ValueError naming the feeder at fault: ids unique, one time base, one cycle."""
    if not feeders:
        raise ValueError("campus: no feeders")
    first = feeders[0]
    seen: set[str] = set()
    for f in feeders:
        if f.site.id in seen:
            raise ValueError(f"campus: feeder {f.site.id!r} is given twice")
        seen.add(f.site.id)
        if not np.array_equal(f.trace.timestamps, first.trace.timestamps):
            raise ValueError(
                f"campus: feeder {f.site.id!r}: its trace's timestamps differ from feeder {first.site.id!r}'s"
                " (one utility meter: every feeder on the same steps)"
            )
        if f.site.cycle_s != first.site.cycle_s:
            raise ValueError(
                f"campus: feeder {f.site.id!r}: [site] cycle_s = {f.site.cycle_s:g} s, feeder"
                f" {first.site.id!r} has {first.site.cycle_s:g} s (the coordinator runs one cycle)"
            )
        if f.site.control.demand_interval_s != first.site.control.demand_interval_s:
            raise ValueError(
                f"campus: feeder {f.site.id!r}: [control] demand_interval_s = {f.site.control.demand_interval_s:g} s,"
                f" feeder {first.site.id!r} has {first.site.control.demand_interval_s:g} s (one utility meter)"
            )


def campus_net_w(feeders: Sequence[Feeder]) -> FloatArray:
    """The campus's baseline: the feeders' load - pv, summed step by step."""
    return np.asarray(np.sum([f.trace.net_w for f in feeders], axis=0), dtype=np.float64)


def _combine(mode: str, feeders: Sequence[Feeder], results: dict[str, ReplayResult], wall_s: float) -> CampusRun:
    rs = list(results.values())
    return CampusRun(
        mode=mode,
        timestamps=feeders[0].trace.timestamps,
        net_w=campus_net_w(feeders),
        grid_w=np.asarray(np.sum([r.grid_w for r in rs], axis=0), dtype=np.float64),
        battery_w=np.asarray(np.sum([r.battery_w for r in rs], axis=0), dtype=np.float64),
        capacity_wh=sum(r.capacity_wh for r in rs),
        start_wh=sum(r.start_wh for r in rs),
        end_wh=sum(r.end_wh for r in rs),
        wall_s=wall_s,
        feeders=results,
    )


def coordinated(
    feeders: Sequence[Feeder],
    limits: CampusLimits,
    prices: Prices | None,
    *,
    start_soc_pct: float = 50.0,
    decide_every: int = 1,
    late: bool = True,
    progress: ProgressFn | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> CampusRun:
    """The feeders in lockstep, one agent cycle (`decide_every` trace steps) at a time, each cycle's
    reports allocated into the shares the next cycle runs on (see the module doc).

    `late=False` is a diagnostic no live coordinator can be: each cycle's shares are allocated from
    the readings that cycle decides on, so the share is never a cycle old (what the delay costs)."""
    check_campus(feeders)
    runs = [Replay(f.site, prices, f.trace, start_soc_pct=start_soc_pct, decide_every=decide_every) for f in feeders]
    base = [r.cfg for r in runs]  # each agent's own [control]: a share only narrows it (with_share)
    ids = [f.site.id for f in feeders]
    n = runs[0].n
    pairs = list(zip(runs, ids, strict=True))
    alloc_s: list[float] = []
    shares: dict[str, Share] | None = None

    recent: deque[dict[str, Share]] = deque(maxlen=SHARE_WINDOW)
    ts = feeders[0].trace.timestamps
    iv_len = feeders[0].site.control.demand_interval_s
    tz = feeders[0].site.timezone
    dt = float(ts[1] - ts[0]) * decide_every if n > 1 else iv_len
    # the coordinator's campus state, its profile seeded with the campus's first day as each agent's
    # own is (agent.offline.replay.day_profile: a replay has no yesterday)
    campus = demand_start(iv_len, day_profile(campus_trace(feeders), iv_len, tz))

    def timed(states: list[FeederState], seen: int, counted: int, k: int) -> dict[str, Share]:
        # what the coordinator sends at trace step k (allocate.to_send) on the reports of the readings
        # of step `seen`, with the campus's demand decisions (agent/campus/demand.py: the level, keep
        # and recharge) for the interval of step k
        nonlocal campus
        a = clock()
        # the time left after what the feeders' counts cover (to step `counted`, as the agents count:
        # allocate's bound is the campus's rate over the rest of the interval from there)
        same = float(ts[counted]) // iv_len == float(ts[k]) // iv_len
        left = iv_len - float(ts[counted if same else k]) % iv_len
        t = datetime.fromtimestamp(float(ts[seen]), tz)
        t_k = datetime.fromtimestamp(float(ts[k]), tz)
        campus, lv = demand_step(campus, states, t, t_k, dt, iv_len, limits.demand_target_w, prices)
        target = lv.target_w if lv.target_w < math.inf else 0.0  # none known yet: no campus target
        recent.append(
            allocate(
                replace(limits, demand_target_w=target),
                states,
                interval_left_s=left,
                interval_s=iv_len,
                keep_wh=lv.keep_wh,
                recharge=lv.recharge,
                margin=lv.margin,
                in_flight_s=dt if same else 0.0,  # the agents' cycle between (allocate.in_flight)
            )
        )
        out = to_send(recent)
        alloc_s.append(clock() - a)
        return out

    def report(r: Replay, site: str, snap: SiteSnapshot, counted: int, k: int) -> FeederState:
        # the agent's own count of its import this interval (to step `counted`), as the live agent
        # reports it; an interval that has ended by step k, when the share is made, counts 0
        same = float(ts[counted]) // iv_len == float(ts[k]) // iv_len
        iv = r.st.interval
        wh = iv.grid_ws / 3600.0 if same else 0.0
        # its demand forecast for its cycle at step k, and its priced raise (as the live agent reports them)
        fc = report_forecast_w(
            r.st, snap.load_w.value - snap.pv_w.value, datetime.fromtimestamp(float(ts[k]), tz), dt, iv_len
        )
        # and the battery power its cycle commanded (the replay's: what it ran that step)
        return feeder_state(
            site,
            snap,
            r.cfg,
            r.op,
            interval_wh=wh,
            forecast_w=fc,
            raise_w=report_raise_w(r.st),
            spread=r.st.tou.spread,
            battery_w=r.bat,
        )

    def undelayed(r: Replay, s: FeederState) -> FeederState:
        # Without the delay the report reads step lo's load, but the cycle in flight (allocate
        # .in_flight: booked at net load less battery) is step lo - 1's, which the agent decided on
        # its own reading: its battery power is carried over so that the booking is that cycle's
        # import (before, the step's load change went into the book: a restart's fall in the
        # interval's last minute booked as 15 MW of room the campus did not have).
        if r.snap is None or not math.isfinite(s.battery_w):
            return s
        prev = r.snap.load_w.value - r.snap.pv_w.value
        return replace(s, battery_w=s.battery_w + s.net_load_w - prev)

    t0 = clock()
    every = progress_every(n)
    next_progress = every
    for lo in range(0, n, decide_every):
        hi = min(n, lo + decide_every)
        if not late:
            before = max(lo - 1, 0)
            states = [undelayed(r, report(r, i, r.next_reading(lo), before, lo)) for r, i in pairs]
            shares = timed(states, lo, before, lo)
        if shares is not None:
            for (r, i), b in zip(pairs, base, strict=True):
                r.cfg = with_share(b, shares[i])
        for r in runs:
            r.run(lo, hi)
        if late:  # the reports of this cycle (the snapshot each agent decided on), answered for the next
            k = min(hi, n - 1)
            shares = timed([report(r, i, r.snap, hi - 1, k) for r, i in pairs if r.snap is not None], lo, hi - 1, k)
        if progress is not None and (hi >= next_progress or hi == n):
            progress(hi, n)
            next_progress = hi + every
    wall = clock() - t0
    out = _combine("coordinated", feeders, {i: r.result(wall) for r, i in zip(runs, ids, strict=True)}, wall)
    return replace(out, allocate_s=np.asarray(alloc_s, dtype=np.float64))


def uncoordinated(
    feeders: Sequence[Feeder],
    prices: Prices | None,
    *,
    start_soc_pct: float = 50.0,
    decide_every: int = 1,
    progress: ProgressFn | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> CampusRun:
    """Each feeder replayed alone on its own site file (its own peak, its own limits)."""
    check_campus(feeders)
    t0 = clock()
    total = len(feeders) * len(feeders[0].trace.timestamps)
    results: dict[str, ReplayResult] = {}
    for j, f in enumerate(feeders):
        done = j * len(f.trace.timestamps)
        prog = None if progress is None else _offset(progress, done, total)
        results[f.site.id] = replay(
            f.site,
            prices,
            f.trace,
            start_soc_pct=start_soc_pct,
            decide_every=decide_every,
            progress=prog,
            clock=clock,
            progress_every=progress_every(len(f.trace.timestamps)),
        )
    return _combine("uncoordinated", feeders, results, clock() - t0)


def _offset(progress: ProgressFn, done: int, total: int) -> ProgressFn:
    def prog(k: int, _n: int) -> None:
        progress(done + k, total)

    return prog


def campus_trace(feeders: Sequence[Feeder]) -> Trace:
    """The campus as one trace: the feeders' loads and PV summed step by step."""
    check_campus(feeders)
    pvs = [f.trace.pv_w for f in feeders if f.trace.pv_w is not None]
    pv = np.asarray(np.sum(pvs, axis=0), dtype=np.float64) if pvs else None
    load = np.asarray(np.sum([f.trace.load_w for f in feeders], axis=0), dtype=np.float64)
    return Trace(feeders[0].trace.timestamps, load, pv, source="campus (summed feeders)")


def pooled(feeders: Sequence[Feeder], limits: CampusLimits) -> SiteConfig:
    """One site with every feeder's PCS and clusters (ids prefixed with the feeder's, so they stay
    unique) and the first feeder's [site] and [control], the campus limits as its own (0: off)."""
    check_campus(feeders)
    first = feeders[0].site
    pcs: list[DeviceConfig] = []
    clusters: list[DeviceConfig] = []
    maintenance: set[str] = set()
    for f in feeders:
        s = f.site
        pcs.extend(replace(p, id=f"{s.id}.{p.id}", clusters=tuple(f"{s.id}.{c}" for c in p.clusters)) for p in s.pcs)
        clusters.extend(replace(c, id=f"{s.id}.{c.id}") for c in s.clusters)
        maintenance |= {f"{s.id}.{c}" for c in s.maintenance}
    control = replace(
        first.control,
        grid_import_limit_w=limits.import_limit_w,
        ramp_limit_w_per_s=limits.ramp_limit_w_per_s,
        demand_target_w=limits.demand_target_w,
    )
    return replace(
        first,
        id="campus",
        control=control,
        pcs=tuple(pcs),
        clusters=tuple(clusters),
        maintenance=frozenset(maintenance),
    )


def ideal(
    feeders: Sequence[Feeder],
    limits: CampusLimits,
    prices: Prices | None,
    *,
    start_soc_pct: float = 50.0,
    decide_every: int = 1,
    progress: ProgressFn | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> CampusRun:
    """Every feeder's battery under one controller that sees the campus's summed load (`pooled`)."""
    site = pooled(feeders, limits)
    trace = campus_trace(feeders)
    net = trace.net_w
    tr = feeders[0].trace
    t0 = clock()
    res = replay(
        site,
        prices,
        trace,
        start_soc_pct=start_soc_pct,
        decide_every=decide_every,
        progress=progress,
        clock=clock,
        progress_every=progress_every(len(trace.timestamps)),
    )
    wall = clock() - t0
    return CampusRun(
        mode="ideal",
        timestamps=tr.timestamps,
        net_w=net,
        grid_w=res.grid_w,
        battery_w=res.battery_w,
        capacity_wh=res.capacity_wh,
        start_wh=res.start_wh,
        end_wh=res.end_wh,
        wall_s=wall,
        feeders={"campus": res},
    )


def evaluate_campus(
    run: CampusRun, tariff: Tariff, degradation_cost_per_kwh: float, charge_efficiency: float
) -> dict[str, Any]:
    """The campus bill on the summed import, its billed peak and the savings against no battery.

    `adjusted_net_savings` adds the stored-energy difference (end - start) valued at the cheapest
    energy price through the charge efficiency, as the single-site analysis does
    (agent.offline.replay.evaluate), so modes ending at different SoC compare like with like."""
    rep = compare(
        run.timestamps,
        run.net_w,
        run.grid_w,
        tariff,
        battery_w=run.battery_w,
        capacity_wh=run.capacity_wh,
        degradation_cost_per_kwh=degradation_cost_per_kwh,
    )
    ts = run.timestamps
    cheapest = float(np.min(tariff.energy_prices(ts))) if len(ts) else 0.0
    value = (run.end_wh - run.start_wh) / charge_efficiency / 1000.0 * cheapest
    net = rep["savings"]["net"]
    return {
        "mode": run.mode,
        "currency": tariff.currency,
        "baseline_bill": rep["baseline"]["bill"]["total"],
        "bill": rep["battery"]["bill"]["total"],
        "baseline_peak_kw": rep["baseline"]["peak_kw"],
        "billed_peak_kw": rep["battery"]["peak_kw"],
        "savings": rep["savings"],
        "stored_energy_value": value,
        "adjusted_net_savings": net + value,
        "end_soc_pct": 100.0 * run.end_wh / run.capacity_wh if run.capacity_wh > 0 else math.nan,
        "battery_use": rep["battery_use"],
        "wall_s": run.wall_s,
    }


def steps_above(run: CampusRun, limit_w: float, slack_w: float = 1000.0) -> int:
    """Steps whose campus import is above `limit_w` by more than `slack_w`."""
    return int(np.count_nonzero(run.grid_w > limit_w + slack_w))


def power_w(feeders: Sequence[Feeder]) -> float:
    """The campus's battery power (the optimum's model of each feeder's battery, summed)."""
    return sum(battery_spec(f.site).power_w for f in feeders)
