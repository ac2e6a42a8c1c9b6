"""Control-policy suite: the heuristic on every load and tariff of the planner suite, to compare trees.

Run: .venv/bin/python bench/policy_suite.py --months /tmp/months [--step 60] [--days 14] [--ramp-limit 0]
         [--grid-limit-below-peak 0] [--tariffs shanghai_ci_two_part,pge_e20_secondary_2014] [--wear USD=0.021]
         [--warm] [--json]

A change to the control policy must hold on every load, trace and tariff, not on the one looked at
while changing it. This replays the heuristic (no planner) over planner_bench.py's five months
(training with restarts on each H100 trace, inference-heavy, the Frontier HPL loop, training behind
PV; each from 1 July in the tariff's own time zone) and reports, per (load, tariff), the share of the
perfect-foresight optimum, net savings, the billed peak against no battery and, with the options,
the seconds over a ramp limit and the steps over a grid connection limit set that far under the peak.

Every (load, tariff) is also checked against the promise the battery makes whatever the load (issue
13): the month's billed peak never above the no-battery peak, and net savings never negative. Each
line ends PASS or FAIL, a summary line counts them, and the exit status is 1 if any failed.

`--warm`: the controller starts the month with the 7 days before it behind it (the same built load's,
planner_bench.py's history), as a running agent has them in its state (a restarted one from its
ledger), instead of the month's first day seeded as yesterday: every month after a site's first.

Same months for two trees: the first run writes them to `--months` (.npz, built with this tree's
bench builders); a run of another tree's package reads them, e.g. against main at 19c430c:

    git worktree add /tmp/base 19c430c
    .venv/bin/python bench/policy_suite.py --months /tmp/months --json > new.json
    PYTHONPATH=/tmp/base .venv/bin/python bench/policy_suite.py --months /tmp/months --json > old.json

The site is savings_bench.py's (the package's own demo.toml with 12 clusters, no reserve), so an
older tree is measured on its own site file. Its wear, 0.15 per kWh discharged, is demo.toml's CNY
figure; the suite has always run it as 0.15 in each tariff's own currency (7x dearer on PG&E, where it
then outprices every energy spread). `--wear USD=0.021` prices it in a currency as given instead (the
CNY figure converted); the optimum and the bill's wear use the same figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from bench_tariff import tariff as tariff_named  # beside this script: on the path when run

import agent
from agent.economics.roi import EconomicsConfig
from agent.model.config import load_site
from agent.offline.replay import Trace, evaluate, replay


def month(months: Path, name: str, tariff_name: str, days: int, step: float) -> Trace:
    """The (load, tariff) month at `step` s, from `months` or built (this tree's bench) and saved."""
    return _saved(months, name, tariff_name, days, step, before=False)


def before(months: Path, name: str, tariff_name: str, days: int, step: float) -> Trace:
    """The days before month()'s month, of the same built load (planner_bench.HISTORY_DAYS, the
    planner's history): what a running agent has behind it when the month starts (`--warm`)."""
    return _saved(months, name, tariff_name, days, step, before=True)


def _saved(months: Path, name: str, tariff_name: str, days: int, step: float, before: bool) -> Trace:
    """The month, or the days before it, from `months`; both built and saved where missing."""
    stem = f"{name}-{tariff_name}-{days}d-{step:g}s"
    path = months / f"{stem}{'-before' if before else ''}.npz"
    if not path.exists():
        import planner_bench as pb  # this tree's bench (beside this script): only to build the months

        from agent.economics.optimum import resample_mean

        ts, load, pv = pb.build_load(name, days + pb.HISTORY_DAYS, 7)
        parts = pb.local_month(Trace(ts, load, pv, name), tariff_name, pb.HISTORY_DAYS)
        months.mkdir(parents=True, exist_ok=True)
        for part, suffix in zip(parts, ("-before", ""), strict=True):
            out = months / f"{stem}{suffix}.npz"
            if out.exists():  # a month saved by an older tree stays as it is
                continue
            t, w = part.timestamps, part.load_w
            p = part.pv_w if part.pv_w is not None else np.zeros(0)
            if step > 1.0:
                t, w = resample_mean(part.timestamps, part.load_w, step)
                p = resample_mean(part.timestamps, part.pv_w, step)[1] if part.pv_w is not None else p
            np.savez(out, ts=t, load=w, pv=p)
    d = np.load(path)
    return Trace(d["ts"], d["load"], d["pv"] if len(d["pv"]) else None, f"{name} before" if before else name)


# Float noise only: a battery that did nothing leaves the billed peak exactly where it was.
PEAK_TOLERANCE_KW = 1e-3


def no_harm(
    peak_without_kw: float, peak_with_kw: float, net: float, windows: dict[str, tuple[float, float]] | None = None
) -> list[str]:
    """What the battery made worse than no battery: empty when the billed peak (and each demand
    window's billed peak, `windows`: name -> (without, with) kW, the highest over the months) is not
    above the no-battery one and net savings are not negative (issue 13's promise)."""
    out = []
    if peak_with_kw > peak_without_kw + PEAK_TOLERANCE_KW:
        out.append(f"billed peak {peak_with_kw - peak_without_kw:+,.1f} kW over no battery")
    for name, (without, with_) in (windows or {}).items():
        if with_ > without + PEAK_TOLERANCE_KW:
            out.append(f"{name} billed {with_ - without:+,.1f} kW over no battery")
    if net < 0.0:
        out.append(f"net savings {net:,.2f} (a loss)")
    return out


def window_peaks(rep: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each demand charge's billed peak (kW, the highest over the billing months), without and with."""
    out: dict[str, tuple[float, float]] = {}
    for m0, m1 in zip(rep["baseline"]["bill"]["months"], rep["battery"]["bill"]["months"], strict=True):
        for name, d0 in m0["demand"].items():
            a, b = out.get(name, (0.0, 0.0))
            out[name] = (max(a, d0["peak_kw"]), max(b, m1["demand"][name]["peak_kw"]))
    return out


def parse_wear(text: str) -> dict[str, float]:
    """`--wear` as {currency: per kWh discharged}: 'USD=0.021,EUR=0.02' (empty: none)."""
    out: dict[str, float] = {}
    for kv in filter(None, text.split(",")):
        cur, sep, val = kv.partition("=")
        try:
            x = float(val)
        except ValueError:
            x = -1.0
        if not sep or not cur or not x >= 0.0 or x == float("inf"):
            raise argparse.ArgumentTypeError(f"--wear: {kv!r} is not CURRENCY=value (a finite number >= 0)")
        out[cur.strip()] = x
    return out


def one(
    trace: Trace,
    tariff_name: str,
    ramp_kw_s: float,
    below_pct: float,
    wear: dict[str, float] | None = None,
    history: Trace | None = None,
) -> dict[str, Any]:
    site = load_site(Path(agent.__file__).parent / "sites" / "demo.toml").with_clusters(12)
    tariff = tariff_named(tariff_name)
    control = replace(site.control, reserve_load_w=0.0, ramp_limit_w_per_s=ramp_kw_s * 1e3)
    if wear and tariff.currency in wear:  # the site's wear figure is in its own tariff's currency
        control = replace(control, degradation_cost_per_kwh=wear[tariff.currency])
    if hasattr(control, "fast_lane_s"):  # a trace at the cycle or coarser: no lane to run
        control = replace(control, fast_lane_s=0.0)
    if below_pct > 0.0:
        control = replace(control, grid_import_limit_w=float(trace.load_w.max()) * (1.0 - below_pct / 100.0))
    site = replace(site, control=control, timezone=tariff.timezone)
    t0 = time.perf_counter()
    if history is not None:  # a tree without replay's `history` fails here: --warm compares trees that have it
        res = replay(site, tariff, trace, start_soc_pct=50.0, history=history)
    else:
        res = replay(site, tariff, trace, start_soc_pct=50.0)
    wall = time.perf_counter() - t0
    econ = EconomicsConfig(degradation_cost_per_kwh=control.degradation_cost_per_kwh)
    rep = evaluate(site, tariff, res, econ, 0.0)
    out: dict[str, Any] = {
        "share": rep["optimum"]["controller_share"],
        "net": rep["savings"]["net"],
        "peak_kw": [rep["baseline"]["peak_kw"], rep["battery"]["peak_kw"]],
        "wear_per_kwh": control.degradation_cost_per_kwh,
        "optimum_net": rep["optimum"]["savings"],
        "wall_s": wall,
    }
    out["window_peaks_kw"] = window_peaks(rep)
    out["savings"] = rep["savings"]
    out["no_harm"] = no_harm(out["peak_kw"][0], out["peak_kw"][1], out["net"], out["window_peaks_kw"])
    grid = np.asarray(res.grid_w)
    if ramp_kw_s > 0.0:
        net = trace.net_w
        out["over_ramp_pct"] = [
            100.0 * float(np.mean(np.abs(np.diff(net)) > ramp_kw_s * 1e3)),
            100.0 * float(np.mean(np.abs(np.diff(grid)) > ramp_kw_s * 1e3)),
        ]
    if below_pct > 0.0:
        out["steps_over_grid_limit"] = int(np.sum(grid > control.grid_import_limit_w + 1e3))
        # no battery of this size can hold a limit under the smallest connection an ideal one holds
        # (agent.offline.connection): its steps over, and what holding it as far as the energy goes costs, are the
        # load's, not the policy's
        smallest = rep["grid_connection"]["smallest_kw"]
        out["smallest_connection_kw"] = smallest
        out["limit_infeasible"] = smallest > control.grid_import_limit_w / 1e3
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--months", type=Path, required=True, help="where the months are kept (.npz)")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--step", type=float, default=60.0, help="trace step, s (1: the 1 s load) [60]")
    ap.add_argument("--loads", default="train100,train200,inference,flat,pv")
    ap.add_argument("--tariffs", default="shanghai_ci_two_part,pge_e20_secondary_2014")
    ap.add_argument("--ramp-limit", type=float, default=0.0, metavar="KW_PER_S", help="grid ramp limit [none]")
    ap.add_argument("--grid-limit-below-peak", type=float, default=0.0, metavar="PCT",
                    help="grid connection limit this far under the trace's peak load [none]")
    ap.add_argument("--wear", type=parse_wear, default={}, metavar="CURRENCY=VALUE[,...]",
                    help="wear per kWh discharged for tariffs in that currency, e.g. USD=0.021"
                    " [the site's 0.15 in every currency]")
    ap.add_argument("--warm", action="store_true",
                    help="start the controller with the 7 days before the month behind it, as a running agent"
                    " (replay's history), not the month's first day as yesterday")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out: dict[str, Any] = {"agent": agent.__file__, "warm": args.warm}
    failed, infeasible = [], []
    for name in args.loads.split(","):
        for tariff_name in args.tariffs.split(","):
            trace = month(args.months, name, tariff_name, args.days, args.step)
            hist = before(args.months, name, tariff_name, args.days, args.step) if args.warm else None
            r = one(trace, tariff_name, args.ramp_limit, args.grid_limit_below_peak, args.wear, hist)
            out[f"{name}/{tariff_name}"] = r
            if r["no_harm"]:
                failed.append(f"{name}/{tariff_name}")
                if r.get("limit_infeasible"):
                    infeasible.append(failed[-1])
            print(f"{name:9s} {tariff_name:24s} {r['share']:7.1%} of the optimum, net {r['net']:,.0f},"
                  f" peak {r['peak_kw'][0]:,.0f} -> {r['peak_kw'][1]:,.0f} kW"
                  + (f", over the ramp limit {r['over_ramp_pct'][1]:.3f} % (load {r['over_ramp_pct'][0]:.3f} %)"
                     if "over_ramp_pct" in r else "")
                  + (f", {r['steps_over_grid_limit']} steps over the grid limit" if "steps_over_grid_limit" in r
                     else "")
                  + (f" (infeasible by the ideal-battery bound: the smallest connection it holds is"
                     f" {r['smallest_connection_kw']:,.0f} kW)" if r.get("limit_infeasible") else "")
                  + (f"  FAIL: {'; '.join(r['no_harm'])}" if r["no_harm"] else "  PASS"), file=sys.stderr, flush=True)
    n = len(args.loads.split(",")) * len(args.tariffs.split(","))
    print(f"billed peak never above no battery and never a loss: {n - len(failed)} of {n} PASS"
          + (f" (FAIL: {', '.join(failed)})" if failed else "")
          + (f"; of those, the grid limit is infeasible by the ideal-battery bound for {', '.join(infeasible)}"
             if infeasible else ""), file=sys.stderr, flush=True)
    out["no_harm_failed"] = failed
    out["limit_infeasible_failed"] = infeasible
    if args.json:
        print(json.dumps(out, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
