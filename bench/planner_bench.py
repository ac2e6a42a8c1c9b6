"""Planner benchmark: predictive dispatch against today's heuristic, as shares of the optimum.

Run: .venv/bin/python bench/planner_bench.py [--days 30] [--step 60] [--loads train100,train200,inference,flat,pv]
         [--tariffs shanghai_ci_two_part,pge_e20_secondary_2014] [--horizon-h 48] [--history-days 7]
         [--controllers heuristic,planner] [--wear USD=0.021] [--replan-min 60] [--time-limit-s 2] [--json]
         [--oracle] [--no-guard] [--plan-power] [--oracle-levels] [--warm]

For every (load, tariff): the same trace through the offline replay twice, once with the
heuristic controllers alone and once with the planner (agent.control.replan: forecast from the
completed intervals only, a HiGHS plan at every demand interval, tracked by decide()). Each is
scored as a share of the perfect-foresight optimum ending at the same SoC (agent.offline.replay
.evaluate), with the month's billed peak against the no-battery peak.

The month starts on 1 July 2026 at 00:00 in the tariff's own time zone (one billing month, the
loads' daily shapes on its local hours), after `--history-days` of the same load that the planner
is given as its history (the live agent has its state dir's; the heuristic is seeded with the
month's first day as "yesterday", as before; with `--warm` the controllers too start with that
history behind them, the profile and the last days' ring a running agent has: replay's `history`).

The site: savings_bench.py's (12 clusters, 5,016 kWh, 2,508 kW, 96 % each way, 20-95 %, 0.15 per
kWh of wear, no reserve). Loads (step `--step` s, means of 1 s data; savings_bench.site_load):
- train100: savings_bench.py's month (1,000 8xH100 nodes training with restarts along
  /work/shared/data/h100-node-training-100stepsync.csv, 250 inference nodes, cooling);
- train200: the same with the 200stepsync trace of the same node and job;
- inference: inference-heavy (1,000 inference nodes on the daily shape, 200 training nodes);
- flat: the Frontier HPL run (/work/shared/data/frontier-hpl-system-15s.csv, ORNL OLCF DOI 437,
  CC BY 4.0) repeated end to end, scaled to a 4 MW mean: an HPC load with no daily shape;
- pv: train100 behind 2 MWp of PV on the simulator's clear-sky day (simulators/pv.py; there is no
  measured PV in /work/shared/data).
The step is coarser than savings_bench.py's 1 s to keep a run within minutes on a busy machine;
both controllers see the same trace, so the comparison is like for like.

Diagnosis of the planner (issue 13: where it loses against the optimum), bench-only, never reachable
from the agent or `ems-agent analyze`:
- `--oracle`: the planner's forecaster replaced by the trace's own future (OracleForecast: the
  month's demand-interval means the optimum is solved on, the spread zero, no scenarios), through
  Replanner's `forecaster` argument; everything else as the agent runs it;
- `--no-guard`: every plan handed to the tracker without its billed level (DispatchPlan.billed_w at
  inf): the tracker charges up to the plan's cap less its margin and never gives a charge back;
- `--plan-power`: every plan handed to the tracker without its caps either (grid_cap_w and billed_w
  at inf): the tracker does the planned battery power, corrected towards the planned SoC, and
  nothing else (the interval accounting, the charge bounds and the giveback off);
- `--oracle-levels`: every plan starts from the month's billed peaks as the optimum bills them (its
  schedule over the whole month, per demand charge), as if already billed: the level the month
  keeps, which a 48 h plan cannot see (what its myopia costs).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from bench_tariff import tariff as tariff_named  # beside this script: on the path when run
from savings_bench import SITE, START, site_load

from agent.control.forecast import Forecast
from agent.control.replan import Replanner, ReplanSettings
from agent.control.schedule import DispatchPlan
from agent.economics.optimum import resample_mean
from agent.economics.roi import EconomicsConfig
from agent.economics.tariff import FloatArray, Tariff
from agent.model.config import SiteConfig, load_site
from agent.model.interval import interval_starts
from agent.offline.replay import Trace, evaluate, optimum_for, plan_battery, planner_report, replay
from simulators.load import TRACE_H100_200
from simulators.pv import ClearSkyPv

FRONTIER = Path("/work/shared/data/frontier-hpl-system-15s.csv")
FLAT_MEAN_W = 4e6
INFERENCE_HEAVY = (200, 1000)  # (training, inference) nodes of the inference-heavy load


def flat_load(days: int) -> tuple[FloatArray, FloatArray]:
    """The Frontier HPL run at 1 s (each 15 s sample held), repeated end to end, 4 MW mean."""
    with FRONTIER.open() as f:
        rows = [float(r["sum vals"]) for r in csv.DictReader(f)]
    run = np.repeat(np.asarray(rows, dtype=np.float64), 15)
    run *= FLAT_MEAN_W / float(run.mean())
    n = days * 86400
    load = np.resize(run, n)
    ts = datetime.fromisoformat(START).timestamp() + np.arange(n, dtype=np.float64)
    return ts, load


LOADS = ("train100", "train200", "inference", "flat", "pv")
HISTORY_DAYS = 7  # days of load before each month (the planner's history)
PV_PEAK_W = 2e6  # the PV load's array: the simulator's clear-sky day (no measured PV in /work/shared/data)


def build_load(name: str, days: int, seed: int) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """(timestamps, load, pv) at 1 s for one of LOADS, from midnight (t = 0 is 00:00 site-local)."""
    if name == "flat":
        ts, load = flat_load(days)
        return ts, load, None
    if name in ("train100", "bench", "pv"):
        ts, load = site_load(days, seed)
    elif name == "train200":
        ts, load = site_load(days, seed, node_trace=TRACE_H100_200)
    elif name == "inference":
        ts, load = site_load(days, seed, training_nodes=INFERENCE_HEAVY[0], inference_nodes=INFERENCE_HEAVY[1])
    else:
        raise ValueError(f"planner_bench: unknown load {name!r} (one of {', '.join(LOADS)})")
    pv = ClearSkyPv(PV_PEAK_W).series(0.0, len(ts), 1.0) if name == "pv" else None
    return ts, load, pv


def local_month(trace: Trace, tariff_name: str, history_days: int) -> tuple[Trace, Trace]:
    """(history, month): the trace moved so that its part after the first `history_days` starts on
    1 July 2026 00:00 in the tariff's time zone. One billing month, its daily shape on the tariff's
    local hours (a trace started at Shanghai midnight would begin on 30 June in California and
    bill a one-day June in full)."""
    start = datetime(2026, 7, 1, tzinfo=tariff_named(tariff_name).timezone).timestamp()
    ts = trace.timestamps - trace.timestamps[0] - history_days * 86400.0 + start
    k = int(np.searchsorted(ts, start))
    pv = trace.pv_w
    hist = Trace(ts[:k], trace.load_w[:k], None if pv is None else pv[:k], source=f"{trace.source} history")
    month = Trace(ts[k:], trace.load_w[k:], None if pv is None else pv[k:], source=trace.source)
    return hist, month


class OracleForecast:
    """The trace's own future as the planner's forecast (bench-only diagnosis: `--oracle`).

    At `now_s`: from the demand interval holding it, the trace's interval means of the net load (what
    the optimum is solved on: replay.optimum_for) over the horizon, cut at the trace's end (no future
    is known past it); p10 = p50 = p90 (the spread zero) and no scenarios (the one way the days go is
    the one that comes). The history handed in is ignored.
    """

    def __init__(self, trace: Trace, length_s: float, horizon_s: float, tz: ZoneInfo) -> None:
        its, inet = resample_mean(trace.timestamps, trace.net_w, length_s)
        self.means = dict(zip(its.tolist(), inet.tolist(), strict=True))
        self.length_s = length_s
        self.slots = math.ceil(horizon_s / length_s)
        self.tz = tz

    def __call__(self, ts: FloatArray, net_w: FloatArray, now_s: float) -> Forecast | None:
        start = float(interval_starts(np.array([now_s]), self.tz, self.length_s)[0])
        out: list[float] = []
        for k in range(self.slots):
            x = self.means.get(start + k * self.length_s)
            if x is None:
                break
            out.append(x)
        if not out:
            return None
        v = np.asarray(out, dtype=np.float64)
        return Forecast(start, self.length_s, v, v, v, (), np.zeros((0, len(v))))


class Loosened(Replanner):
    """The Replanner whose plans reach the tracker without their billed level (`guard` False) and/or
    their grid caps (`caps` False), or whose plans start from the month's levels as the optimum bills
    them (`levels`, W per tariff.demand charge): bench-only diagnosis (`--no-guard`, `--plan-power`,
    `--oracle-levels`). The plans it keeps for itself (re-plan triggers) are the planner's own."""

    def __init__(
        self, *args: Any, guard: bool = True, caps: bool = True, levels: tuple[float, ...] = (), **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.guard, self.caps, self.levels = guard, caps, levels

    def plan_at(self, now_s: float, soc_pct: float) -> tuple[DispatchPlan | None, bool]:
        if self.levels:  # the month's levels as if billed already (the month's first interval included)
            month = self.tariff.billing_month(datetime.fromtimestamp(now_s, self.tz).date())
            if month != self.month:  # as completed() resets them at the month's first interval
                self.month, self.billed, self.site = month, [0.0] * len(self.billed), [0.0] * len(self.site)
            self.billed = [max(b, x) for b, x in zip(self.billed, self.levels, strict=True)]
        p, failed = super().plan_at(now_s, soc_pct)
        if p is None:
            return p, failed
        off = np.full(len(p.battery_w), math.inf)
        return replace(
            p, billed_w=p.billed_w if self.guard else off, grid_cap_w=p.grid_cap_w if self.caps else off
        ), failed


def warmed(rp: Replanner, history: Trace) -> Replanner:
    """The replanner with `history` behind it, as the live agent has its state dir's (no battery then:
    the grid import was the net load)."""
    its, inet = resample_mean(history.timestamps, history.net_w, rp.length_s)
    for t, x in zip(its.tolist(), inet.tolist(), strict=True):
        rp.completed(t, x, max(0.0, x))
    return rp


def planner_for(
    tariff: Tariff, site: SiteConfig, settings: ReplanSettings, history: Trace, month: Trace, diagnosis: tuple[str, ...]
) -> Replanner:
    """The replanner the replay runs: the agent's, or its diagnosis variants (the module doc)."""
    oracle = OracleForecast(month, tariff.demand_interval_s, settings.horizon_s, tariff.timezone)
    levels: tuple[float, ...] = ()
    if "oracle-levels" in diagnosis:  # the optimum's billed peak per charge, over the whole month
        billed = {d.name: d.peak_w for d in optimum_for(site, tariff, month).bill.months[0].demand}
        levels = tuple(billed.get(ch.name, 0.0) for ch in tariff.demand)
    rp = Loosened(
        tariff,
        plan_battery(site),
        settings,
        oracle if "oracle" in diagnosis else None,
        guard="no-guard" not in diagnosis and "plan-power" not in diagnosis,
        caps="plan-power" not in diagnosis,
        levels=levels,
    )
    return warmed(rp, history)


def one(
    site: SiteConfig,
    tariff_name: str,
    history: Trace,
    trace: Trace,
    settings: ReplanSettings,
    controllers: tuple[str, ...] = ("heuristic", "planner"),
    wear: dict[str, float] | None = None,
    diagnosis: tuple[str, ...] = (),
    warm: bool = False,
) -> dict[str, Any]:
    """The pair's replays, scored. `diagnosis`: any of "oracle", "no-guard", "plan-power", "oracle-levels"
    (the module doc)."""
    tariff = tariff_named(tariff_name)
    s = replace(site, timezone=tariff.timezone)
    if wear and tariff.currency in wear:  # the site's wear figure is in its own tariff's currency
        s = replace(s, control=replace(s.control, degradation_cost_per_kwh=wear[tariff.currency]))
    econ = EconomicsConfig(degradation_cost_per_kwh=s.control.degradation_cost_per_kwh)
    out: dict[str, Any] = {}
    for name in controllers:
        rp = planner_for(tariff, s, settings, history, trace, diagnosis) if name == "planner" else None
        t0, c0 = time.perf_counter(), time.process_time()
        if warm:  # both controllers start with `history` behind them, as a running agent
            res = replay(s, tariff, trace, start_soc_pct=50.0, replanner=rp, history=history)
        else:
            res = replay(s, tariff, trace, start_soc_pct=50.0, replanner=rp)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rep = evaluate(s, tariff, res, econ, 0.0)
        o = rep["optimum"]
        from policy_suite import no_harm, window_peaks  # here: policy_suite imports this module

        windows = window_peaks(rep)
        harm = no_harm(rep["baseline"]["peak_kw"], rep["battery"]["peak_kw"], rep["savings"]["net"], windows)
        out[name] = {
            "share": o["controller_share"],
            "savings": rep["savings"]["net"],
            "optimum_same_end": o["savings"],
            "end_soc_pct": o["end_soc_pct"],
            "peak_kw": {"baseline": rep["baseline"]["peak_kw"], "battery": rep["battery"]["peak_kw"]},
            "window_peak_kw": windows,  # each demand charge's billed peak: (no battery, battery)
            "harm": harm,  # what the battery made worse than no battery (issue 13's promise): empty
            "wall_s": wall,
            "cpu_s": cpu,  # this process's CPU time: less at the mercy of the machine's load than the wall
            "decided_by": rep["replay"]["decided_by"],
            "planner": planner_report(res, tariff, settings),
        }
        print(
            f"  {name:9s}: {o['controller_share']:6.1%} of the optimum ending at {o['end_soc_pct']:.1f} %"
            f" ({rep['savings']['net']:,.0f} of {o['savings']:,.0f} {tariff.currency}); peak"
            f" {rep['baseline']['peak_kw']:,.1f} -> {rep['battery']['peak_kw']:,.1f} kW; {wall:.0f} s"
            f" ({cpu:.0f} s CPU); {'; '.join(harm) if harm else 'no harm: no window billed above no battery'}",
            flush=True,
        )
        pr = out[name]["planner"]
        if pr is not None:
            f = pr["forecast"]
            print(
                f"             {pr['solves']} solves ({pr['failures']} failed; {pr['intervals_plan_kept']} intervals"
                f" kept the plan; {pr['solve_reasons']}),"
                f" solve p50 {pr['solve_ms']['p50']:.0f} ms p99 {pr['solve_ms']['p99']:.0f} ms"
                f" max {pr['solve_ms']['max']:.0f} ms;"
                f" forecast MAPE {f['mape']:.1%}, daily-peak error {f['daily_peak_abs_error']:.1%}"
                f" (signed {f['daily_peak_signed_error']:+.1%}, {f['days']:.0f} days)",
                flush=True,
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--step", type=float, default=60.0, help="trace step, s [60]")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--history-days", type=int, default=HISTORY_DAYS, help="days of load before the month [7]")
    ap.add_argument("--loads", default=",".join(LOADS))
    ap.add_argument("--tariffs", default="shanghai_ci_two_part,pge_e20_secondary_2014")
    ap.add_argument("--horizon-h", type=float, default=48.0)
    ap.add_argument("--margin", type=float, default=0.0, help="of (p90 - p50) kept under the peak [0]")
    ap.add_argument(
        "--scenario-days", type=int, default=5, help="past days whose errors the peak level holds through [5]"
    )
    ap.add_argument(
        "--replan-min",
        type=float,
        default=0.0,
        help="re-plan at least every this many minutes and on a departure from the plan; 0: every interval [0]",
    )
    ap.add_argument(
        "--time-limit-s",
        type=float,
        default=ReplanSettings().time_limit_s,
        help="HiGHS's time limit per solve [0.25]; a longer one keeps a loaded machine's timeouts out of"
        " a comparison of savings",
    )
    ap.add_argument("--controllers", default="heuristic,planner", help="which replays to run [heuristic,planner]")
    ap.add_argument(
        "--wear",
        default="",
        help="wear per kWh discharged by tariff currency, e.g. USD=0.021 (default: the site's 0.15 in every"
        " currency, as the suite has always run; demo.toml's figure is CNY)",
    )
    ap.add_argument("--oracle", action="store_true", help="diagnosis: the planner on the trace's own future")
    ap.add_argument("--no-guard", action="store_true", help="diagnosis: the tracker without the billed level")
    ap.add_argument("--plan-power", action="store_true", help="diagnosis: the tracker does the planned power only")
    ap.add_argument(
        "--oracle-levels", action="store_true", help="diagnosis: every plan starts from the optimum's billed peaks"
    )
    ap.add_argument("--warm", action="store_true",
                    help="the heuristic controllers too start with the history behind them (replay's history),"
                    " as a running agent, not the month's first day as yesterday")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    flags = (
        ("oracle", args.oracle),
        ("no-guard", args.no_guard),
        ("plan-power", args.plan_power),
        ("oracle-levels", args.oracle_levels),
    )
    diagnosis = tuple(d for d, on in flags if on)
    site = load_site(SITE).with_clusters(12)
    site = replace(site, control=replace(site.control, reserve_load_w=0.0))
    settings = ReplanSettings(
        horizon_s=args.horizon_h * 3600.0,
        margin=args.margin,
        scenario_days=args.scenario_days,
        replan_s=args.replan_min * 60.0,
        time_limit_s=args.time_limit_s,
    )
    wear = {k: float(v) for k, v in (kv.split("=") for kv in args.wear.split(",") if kv)}
    results: dict[str, Any] = {}
    for load_name in args.loads.split(","):
        ts, load, pv = build_load(load_name, args.history_days + args.days, args.seed)
        t, x = resample_mean(ts, load, args.step)
        trace = Trace(t, x, None if pv is None else resample_mean(ts, pv, args.step)[1], source=load_name)
        for tariff_name in args.tariffs.split(","):
            what = f"; planner diagnosis: {', '.join(diagnosis)}" if diagnosis else ""
            print(f"{load_name} / {tariff_name} ({args.days} days at {args.step:g} s{what}):", flush=True)
            hist, month = local_month(trace, tariff_name, args.history_days)
            results[f"{load_name}/{tariff_name}"] = one(
                site, tariff_name, hist, month, settings, tuple(args.controllers.split(",")), wear, diagnosis,
                args.warm,
            )
    if args.json:
        print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
