"""Savings benchmark: a month at 1 s of a ~10,000-GPU site through the offline replay, against the optimum.

Run: .venv/bin/python bench/savings_bench.py [--days 30] [--runs 1] [--seed 7] [--load bench|flat] [--json]
     .venv-fast/bin/python bench/savings_bench.py ...   # the mypyc-compiled build (`make fast`)

The site: 12 clusters of 418 kWh / 209 kW behind 4 PCS of 630 kW, 96 % efficiency each way, SoC
window 20-95 %, degradation 0.15 CNY per kWh discharged, starting at 50 % SoC, Shanghai C&I
two-part tariff (40.8 CNY/kW-month on the 15-min maximum demand). No ramp limit and no backup
reserve, so the controller and the optimum face the same problem (bill + degradation).
`--ramp-limit` / `--ramp-headroom` set a grid ramp limit and the battery power time-of-use leaves
free for it: what ramp support costs in savings (the optimum knows no ramp limit), and the seconds
over the limit by cause (ramp_by_cause: the battery's own steps apart from the load's); `--pcc` puts
every PCS in grid-power control (its local loop is simulated at 20 ms: ~50x the physics per step).

The load (deterministic for a seed), site-local time from 1 July 2026 00:00 Asia/Shanghai:
- training: 1,000 8-GPU nodes swinging together along the measured H100 node trace
  (/work/shared/data/h100-node-training-100stepsync.csv, looped); jobs of 2-10 h, a third of
  them ending in a failure; between jobs (restart, queue) the nodes idle for 5-45 min and the
  next job starts from the trace's beginning (idle, then warm-up);
- inference: 250 nodes, diurnal between 0.45 and 1.0 MW (peak mid-afternoon) with ripple;
- cooling: PUE 1.25 on the IT load, lagging it by 5 min; 200 kW of other site load.

Reported: replay wall time (median over --runs), controller savings (net of degradation, the
end-of-month stored-energy difference valued at the valley price) as a share of the
perfect-foresight optimum, and the same share for a fixed-threshold peak shaver with the best
threshold chosen in hindsight (simulated on 15-min means: its most favourable form).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

# Appended, not prepended: an installed ems-agent wins (the compiled one in .venv-fast: `make fast`).
from agent.economics.billing import bill
from agent.economics.optimum import BatterySpec, OptimumResult, resample_mean
from agent.economics.roi import EconomicsConfig
from agent.economics.tariff import FloatArray, Tariff, bundled
from agent.model.config import SiteConfig, load_site
from agent.model.ramp_metrics import SLACK
from agent.offline.connection import smallest_connection_w
from agent.offline.replay import BUILD, ReplayResult, Trace, battery_spec, evaluate, optimum_for, replay
from simulators.load import TRACE_H100, Inference, TraceReplay, WithCooling

SITE = Path(__file__).resolve().parents[1] / "agent" / "sites" / "demo.toml"
START = "2026-07-01T00:00:00+08:00"
TRAINING_NODES = 1000
INFERENCE_NODES = 250
PUE = 1.25
OTHER_W = 200e3


class _Array:
    """A precomputed series as a load model (WithCooling filters it)."""

    def __init__(self, x: FloatArray) -> None:
        self.x = x

    def at(self, t: float) -> float:
        return float(self.x[int(t)])

    def series(self, start_s: float, n: int, dt: float) -> FloatArray:
        return self.x[int(start_s) : int(start_s) + n]


def training(n: int, seed: int, node_trace: Path = TRACE_H100, nodes: int = TRAINING_NODES) -> FloatArray:
    """Per-second power of the training fleet: the node trace per job, idle gaps between jobs."""
    node = TraceReplay(1, node_trace)
    rng = random.Random(seed)
    idle = node.at(0.0)
    since = np.full(n, -1.0)  # seconds since the running job started; -1 = idle gap
    t = 0
    while t < n:
        length = int(rng.uniform(2 * 3600, 10 * 3600))
        if rng.random() < 1 / 3:  # failure: the job dies part-way
            length = int(length * rng.uniform(0.2, 0.9))
        end = min(n, t + length)
        since[t:end] = np.arange(end - t, dtype=np.float64)
        t = end + int(rng.uniform(300, 2700))
    loop = node.series(0.0, int(node.period_s), 1.0)  # one pass of the node trace at 1 s
    per_node = np.where(since >= 0, loop[np.mod(since, len(loop)).astype(np.int64)], idle)
    return np.asarray(nodes * per_node, dtype=np.float64)


def site_load(
    days: int,
    seed: int,
    *,
    node_trace: Path = TRACE_H100,
    training_nodes: int = TRAINING_NODES,
    inference_nodes: int = INFERENCE_NODES,
) -> tuple[FloatArray, FloatArray]:
    """The site's load at 1 s (the module doc's); the keywords give other mixes (bench/planner_bench.py)."""
    n = days * 86400
    t0 = datetime.fromisoformat(START).timestamp()
    ts = t0 + np.arange(n, dtype=np.float64)
    inf = Inference(peak_w=inference_nodes * 4000.0, trough_w=inference_nodes * 1800.0, seed=seed).series(0, n, 1)
    it = training(n, seed, node_trace, training_nodes) + inf
    load = WithCooling(_Array(it), pue=PUE, tau_s=300.0, other_w=OTHER_W).series(0.0, n, 1.0)
    return ts, load


def fixed_threshold(ts: FloatArray, load: FloatArray, tariff: Tariff, bat: BatterySpec) -> tuple[float, float, float]:
    """(best hindsight threshold W, its net savings, its end SoC %) for a shaver on 15-min means.

    Above the threshold it discharges down to it; below it recharges up to it (whatever the price),
    within power and the SoC window. The threshold is chosen on net savings plus the end-of-month
    stored-energy difference valued at the cheapest price (so ending empty is not free).
    """
    t15, l15 = resample_mean(ts, load, 900.0)
    h = 0.25
    base = bill(t15, l15, tariff, max_hold_s=900.0).total
    cheapest = float(np.min(tariff.energy_prices(t15)))
    e_min, e_max = bat.soc_min_pct / 100 * bat.energy_wh, bat.soc_max_pct / 100 * bat.energy_wh
    e0 = bat.start_soc_pct / 100 * bat.energy_wh
    loads = l15.tolist()

    def run(thr: float) -> tuple[float, float]:
        e, out_wh = e0, 0.0
        grid = []
        for x in loads:
            if x > thr:
                d = min(x - thr, bat.power_w, max(0.0, e - e_min) * bat.discharge_efficiency / h)
                e -= d * h / bat.discharge_efficiency
                out_wh += d * h
                grid.append(x - d)
            else:
                c = min(thr - x, bat.power_w, max(0.0, e_max - e) / (bat.charge_efficiency * h))
                e += c * h * bat.charge_efficiency
                grid.append(x + c)
        b = bill(t15, np.asarray(grid), tariff, max_hold_s=900.0).total
        return base - b - out_wh / 1000.0 * bat.degradation_cost_per_kwh, e

    def net(thr: float) -> float:
        s, e = run(thr)
        return s + (e - e0) / bat.charge_efficiency / 1000.0 * cheapest

    grid_thr = np.linspace(float(l15.min()), float(l15.max()), 121)
    vals = [net(float(x)) for x in grid_thr]
    i = int(np.argmax(vals))
    lo, hi = float(grid_thr[max(0, i - 1)]), float(grid_thr[min(len(grid_thr) - 1, i + 1)])
    fine = np.linspace(lo, hi, 41)
    fvals = [net(float(x)) for x in fine]
    best = float(fine[int(np.argmax(fvals))])
    s, e = run(best)
    return best, s, 100.0 * e / bat.energy_wh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs", type=int, default=1, help="replays to time (median); each takes minutes")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print the full report as JSON at the end")
    ap.add_argument("--ramp-limit", type=float, default=0.0, metavar="KW_PER_S", help="grid ramp limit [none]")
    ap.add_argument(
        "--ramp-headroom", type=float, default=0.0, metavar="KW", help="[control] ramp_headroom_w, in kW [0]"
    )
    ap.add_argument(
        "--load",
        choices=("bench", "flat"),
        default="bench",
        help="bench: the GPU site below; flat: planner_bench.py's Frontier HPL run at a 4 MW mean [bench]",
    )
    ap.add_argument("--pcc", action="store_true", help="every PCS in grid-power (PCC) control (needs --ramp-limit)")
    ap.add_argument(
        "--grid-limit-below-peak",
        type=float,
        default=0.0,
        metavar="PCT",
        help="[control] grid_import_limit_w this many %% under the trace's peak load [none]",
    )
    args = ap.parse_args()
    if args.pcc and args.ramp_limit <= 0:
        ap.error("--pcc needs a --ramp-limit above 0 (grid-power control holds the ramp)")

    t_build = time.perf_counter()
    site = load_site(SITE).with_clusters(12)
    ramp = replace(site.control, ramp_limit_w_per_s=args.ramp_limit * 1e3, ramp_headroom_w=args.ramp_headroom * 1e3)
    site = replace(site, control=replace(ramp, reserve_load_w=0.0))
    if args.pcc:
        site = replace(site, pcs=tuple(replace(p, grid_control="pcc") for p in site.pcs))
    tariff = bundled("shanghai_ci_two_part")
    if args.load == "flat":
        from planner_bench import flat_load  # imports this module: only when asked for

        ts, load = flat_load(args.days)
    else:
        ts, load = site_load(args.days, args.seed)
    trace = Trace(ts, load, source=f"{args.load} seed {args.seed}")
    grid_limit = float(load.max()) * (1.0 - args.grid_limit_below_peak / 100.0) if args.grid_limit_below_peak else 0.0
    site = replace(site, control=replace(site.control, grid_import_limit_w=grid_limit))
    print(
        f"trace: {len(ts):,} steps at 1 s, load {load.min() / 1e6:.2f}-{load.max() / 1e6:.2f} MW "
        f"(mean {load.mean() / 1e6:.2f}), built in {time.perf_counter() - t_build:.1f} s",
        flush=True,
    )

    def progress(done: int, total: int) -> None:
        print(f"\rreplay: {done / total:6.1%} ({done:,}/{total:,} steps)", end="", file=sys.stderr, flush=True)

    walls: list[float] = []
    result = None
    for _ in range(args.runs):
        result = replay(site, tariff, trace, start_soc_pct=50.0, progress=progress)
        walls.append(result.wall_s)
        print(file=sys.stderr)
    assert result is not None
    econ = EconomicsConfig(degradation_cost_per_kwh=site.control.degradation_cost_per_kwh)
    rep = evaluate(site, tariff, result, econ, site.control.ramp_limit_w_per_s, with_optimum=False)
    bat = battery_spec(site)
    end_pct = 100.0 * result.end_wh / result.capacity_wh
    opt: OptimumResult = optimum_for(site, tariff, trace, 50.0, end_pct)  # ending where the controller did
    opt50 = optimum_for(site, tariff, trace, 50.0, 50.0)
    thr, thr_savings, thr_end = fixed_threshold(ts, load, tariff, bat)
    opt_thr = optimum_for(site, tariff, trace, 50.0, thr_end)
    ctrl = rep["savings"]["net"]
    out: dict[str, Any] = {
        "build": BUILD,
        "steps": result.steps,
        "wall_s_median": statistics.median(walls),
        "wall_s_runs": walls,
        "us_per_step": statistics.median(walls) / result.steps * 1e6,
        "baseline_bill": rep["baseline"]["bill"]["total"],
        "battery_bill": rep["battery"]["bill"]["total"],
        "controller_savings": ctrl,
        "controller_end_soc_pct": end_pct,
        "optimum_savings_same_end": opt.savings,
        "optimum_savings_50_to_50": opt50.savings,
        "optimum_solve_s": opt.solve_s,
        "controller_share": ctrl / opt.savings,
        "fixed_threshold_kw": thr / 1000.0,
        "fixed_threshold_savings": thr_savings,
        "fixed_threshold_end_soc_pct": thr_end,
        "fixed_threshold_optimum_same_end": opt_thr.savings,
        "fixed_threshold_share": thr_savings / opt_thr.savings,
        "peak_kw": {"baseline": rep["baseline"]["peak_kw"], "battery": rep["battery"]["peak_kw"]},
        "savings_breakdown": rep["savings"],
        "decided_by": rep["replay"]["decided_by"],
        "ramp_limit_kw_per_s": args.ramp_limit,
        "ramp_headroom_kw": args.ramp_headroom,
        "pcc": args.pcc,
        "ramp_over_limit_share": {
            "baseline": rep["baseline"].get("ramp_over_limit_share"),
            "battery": rep["battery"].get("ramp_over_limit_share"),
        },
    }
    print(
        f"replay wall time {out['wall_s_median']:.1f} s (median of {len(walls)}; {out['us_per_step']:.1f} us/step;"
        f" {BUILD} build)"
        f"\nbills: baseline {out['baseline_bill']:,.0f} CNY, with battery {out['battery_bill']:,.0f} CNY"
        f"\npeak: {out['peak_kw']['baseline']:,.0f} kW -> {out['peak_kw']['battery']:,.0f} kW"
        f"\ncontroller savings {ctrl:,.0f} CNY net of degradation, ending at {end_pct:.1f} % SoC = "
        f"{out['controller_share']:.1%} of the optimum ending there ({opt.savings:,.0f} CNY;"
        f" 50 -> 50 %: {opt50.savings:,.0f} CNY)"
        f"\nfixed-threshold shaver (best threshold {thr / 1e3:,.0f} kW in hindsight, ending at {thr_end:.1f} %):"
        f" {thr_savings:,.0f} CNY = {out['fixed_threshold_share']:.1%} of the optimum ending there"
    )
    if grid_limit > 0.0:
        out["grid_limit"] = held = grid_limit_held(result, grid_limit, site)
        h = held
        print(
            f"grid import limit {grid_limit / 1e3:,.0f} kW ({args.grid_limit_below_peak:g} % under the peak load):"
            f" above it by > 1 kW {h['seconds_above']:,} s, of which {h['seconds_above_with_energy']:,} s"
            " while the battery had energy above its floor"
            f" ({h['seconds_above_with_energy_and_power']:,} s with power to spare too);"
            f" largest excess {h['max_excess_kw']:,.1f} kW, {h['max_excess_kw_with_energy']:,.1f} kW with energy;"
            f" lowest SoC {h['soc_min_pct_seen']:.2f} %; the smallest connection an ideal battery holds on this"
            f" trace (agent.offline.connection): {h['feasible_limit_kw']:,.0f} kW"
        )
    if args.ramp_limit > 0.0:
        out["ramp_by_cause"] = rc = ramp_by_cause(result, args.ramp_limit * 1e3, site)
        print(
            f"seconds over the {args.ramp_limit:g} kW/s ramp limit with the battery: {rc['over_s']:,}; by the battery"
            f" itself {rc['by_battery_s']:,} (largest {rc['by_battery_max_step_kw']:,.0f} kW in a second); shared, each"
            f" within the limit {rc['shared_s']:,} (largest {rc['shared_max_step_kw']:,.0f} kW); by the load with the"
            f" battery at its power or SoC limit {rc['load_battery_at_limit_s']:,}; by the load within a cycle"
            f" {rc['load_within_cycle_s']:,}; largest battery change in a second {rc['max_battery_step_kw']:,.0f} kW,"
            f" largest load step {rc['max_load_step_kw']:,.0f} kW (no safety trip in this bench)"
        )
    if args.json:
        print(json.dumps(out, indent=2))


def grid_limit_held(result: ReplayResult, limit_w: float, site: SiteConfig) -> dict[str, Any]:
    """Seconds the replay's grid import was above the limit by more than 1 kW (the PCS's lag and
    setpoint resolution leave a few W on a held limit), and of those, the ones in which the battery
    still had energy above the reserve floor (and power to spare below its maximum)."""
    grid = np.asarray(result.grid_w)
    soc = np.asarray(result.soc_pct)
    bat = np.asarray(result.battery_w)
    excess = grid - limit_w
    above = excess > 1e3
    floor = site.control.soc_min_pct  # the bench runs without a reserve load: the floor is soc_min
    energy = soc > floor + 0.05  # above the floor by more than the SoC registers' resolution
    power = bat < battery_spec(site).power_w - 1e3
    with_energy = above & energy
    return {
        "limit_kw": limit_w / 1e3,
        "seconds_above_by_any": int(np.count_nonzero(excess > 0.0)),
        "max_excess_w_with_energy_below_1kw": float(max(0.0, excess[energy & ~above].max(initial=0.0))),
        "seconds_above": int(above.sum()),
        "seconds_above_with_energy": int(with_energy.sum()),
        "seconds_above_with_energy_and_power": int((with_energy & power).sum()),
        "max_excess_kw": float(max(0.0, excess.max()) / 1e3),
        "max_excess_kw_with_energy": float(excess[with_energy].max(initial=0.0) / 1e3),
        "soc_min_pct_seen": float(np.nanmin(soc)),
        "feasible_limit_kw": smallest_connection_w(result.trace.net_w, 1.0, battery_spec(site, 50.0)) / 1e3,
    }


def ramp_by_cause(result: ReplayResult, limit_w_per_s: float, site: SiteConfig) -> dict[str, Any]:
    """The seconds whose grid step exceeds the ramp limit (agent.model.ramp_metrics' slack), by cause:
    - by the battery itself: its own change in that second, in the direction the grid stepped, was
      over the limit (at the SoC floor, say, dropping 1.9 MW at once: the issue's target is none);
    - shared: the load's own step was within the limit and so was the battery's, their sum was not
      (the battery ramping out at 150 kW/s before its floor while the load rose 190 kW);
    - by the load with the battery at its limit in the step's direction: for a rise, discharging at
      its power limit (within 1 kW) or at the SoC floor (within 0.05 %, the registers' resolution),
      for a fall, charging at its limit or at the ceiling: it had nothing left to hold the step with;
    - by the load within a cycle: the rest, the part of a swing the 1 s cycle cannot follow.
    The bench injects no faults, so no step here is a safety trip's (the plan labels those:
    Plan.step_cause). Assumes the bench's 1 s trace (one step = one second)."""
    grid = np.asarray(result.grid_w)
    bat = np.asarray(result.battery_w)
    soc = np.asarray(result.soc_pct)[1:]
    dg = np.diff(grid)
    ag = np.abs(dg)
    an = np.abs(np.diff(result.trace.net_w))
    db = np.diff(bat)
    lim = limit_w_per_s * SLACK
    over = ag > lim
    by_battery = over & (np.abs(db) > lim) & (-db * dg > 0.0)  # grid = net - battery
    shared = over & ~by_battery & (an <= lim)
    c = site.control
    p_max = battery_spec(site).power_w - 1e3
    cannot_rise = (bat[1:] >= p_max) | (soc <= c.soc_min_pct + 0.05)
    cannot_fall = (bat[1:] <= -p_max) | (soc >= c.soc_max_pct - 0.05)
    at_limit = np.where(dg > 0.0, cannot_rise, cannot_fall)
    load = over & ~by_battery & ~shared
    return {
        "over_s": int(over.sum()),
        "by_battery_s": int(by_battery.sum()),
        "by_battery_max_step_kw": float(ag[by_battery].max(initial=0.0) / 1e3),
        "shared_s": int(shared.sum()),
        "shared_max_step_kw": float(ag[shared].max(initial=0.0) / 1e3),
        "load_battery_at_limit_s": int((load & at_limit).sum()),
        "load_within_cycle_s": int((load & ~at_limit).sum()),
        "max_battery_step_kw": float(np.abs(db).max(initial=0.0) / 1e3),
        "max_load_step_kw": float(an.max(initial=0.0) / 1e3),
    }


if __name__ == "__main__":
    main()
