"""Hindsight levels: each day's demand levels from the optimum over the days before it, against the month's.

Run: .venv/bin/python bench/hindsight_levels.py --months /tmp/months --loads train200 \
         --tariffs pge_e20_secondary_2014 [--days 30] [--window 7] [--json]

A diagnostic for issue 13, not a controller. The heuristic's levels (agent/control/levels.py) price
each demand charge on the hours the last days spend above it, one charge at a time. This asks what
the same site's perfect-foresight programme (agent/economics/battery_lp.py, the optimum's) would
have held over the `--window` days before each day of the month, with every demand charge priced
at the share of its month those days stand for (days / 30.4) and the battery ending each of those
days with at least the energy it had 24 h before: the levels a controller that knew the last week
exactly would carry into the next day. Printed per day beside the month's optimum levels (the
whole month with its own future) and as a summary: the median day's distance to them, per window.

Loads and tariffs are policy_suite.py's months (the same `--months` files). The site is its site
(12 clusters, 96 % each way, 20-95 %, 0.15 per kWh of wear in the tariff's currency). The load is
the month's net load at the tariff's demand interval; a day a level was not priced on (its first
days: fewer than `--window` before it) is priced on the days there are.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import policy_suite as ps  # the suite's months (beside this script: on the path when run)
from bench_tariff import tariff as tariff_named  # beside this script: on the path when run

import agent
from agent.economics.battery_lp import Storage, demand_layout, solve_battery_lp
from agent.economics.optimum import BatterySpec, resample_mean
from agent.model.config import load_site
from agent.offline.replay import battery_spec, optimum_for

DAYS_PER_MONTH = 30.4  # levels.py's: a demand charge is per kW-month


def levels_over(
    ts: np.ndarray,
    net: np.ndarray,
    tariff_name: str,
    bat: BatterySpec,
    share: float,
) -> dict[str, float]:
    """The optimum's level per demand charge (kW) over `ts`, each charge priced at `share` of its rate."""
    tariff = tariff_named(tariff_name)
    e = bat.energy_wh / 100.0
    lay = demand_layout(ts, tariff)
    priced = replace(lay, groups=tuple(replace(g, rate=g.rate * share) for g in lay.groups))
    spd = round(86400.0 / tariff.demand_interval_s)
    full = bat.soc_max_pct * e
    st = Storage(
        power_w=bat.power_w,
        eta_c=bat.charge_efficiency,
        eta_d=bat.discharge_efficiency,
        e0_wh=full,
        e_min_wh=bat.soc_min_pct * e,
        e_max_wh=full,
        e_end_wh=None,
        e_end_min_wh=full,
        end_cycle_steps=spd,  # the last day repeats: the days after need the same
        degradation_per_kwh=bat.degradation_cost_per_kwh,
    )
    sol = solve_battery_lp(net, net, tariff.energy_prices(ts), tariff.demand_interval_s / 3600.0, priced, st)
    if sol.status != 0:
        raise RuntimeError(f"hindsight_levels: HiGHS status {sol.status}: {sol.message}")
    out: dict[str, float] = {}
    for g, p in zip(lay.groups, sol.peaks_w, strict=True):
        name = tariff.demand[g.charge].name
        out[name] = max(out.get(name, 0.0), float(p) / 1000.0)
    return out


def one(months: Path, load: str, tariff_name: str, days: int, window: int) -> dict[str, Any]:
    tariff = tariff_named(tariff_name)
    tr = ps.month(months, load, tariff_name, days, 60.0)
    site = load_site(Path(agent.__file__).parent / "sites" / "demo.toml").with_clusters(12)
    site = replace(site, control=replace(site.control, reserve_load_w=0.0, fast_lane_s=0.0), timezone=tariff.timezone)
    opt = optimum_for(site, tariff, tr, 50.0, 50.0)
    month_kw: dict[str, float] = {}
    for m in opt.bill.months:
        for line in m.demand:
            if line.peak_w > 0.0:
                month_kw[line.name] = max(month_kw.get(line.name, 0.0), line.peak_w / 1000.0)
    ts, net = resample_mean(tr.timestamps, tr.net_w, tariff.demand_interval_s)
    net = np.maximum(net, 0.0)
    spd = round(86400.0 / tariff.demand_interval_s)
    bat = battery_spec(site, 50.0)
    rows = []
    for d in range(1, days):
        a, b = max(0, d - window) * spd, d * spd
        lv = levels_over(ts[a:b], net[a:b], tariff_name, bat, (b - a) / spd / DAYS_PER_MONTH)
        day = datetime.fromtimestamp(float(ts[b]), tariff.timezone).strftime("%a %d")
        rows.append({"day": day, "levels_kw": {k: v for k, v in lv.items() if k in month_kw}})
    off = {
        k: float(np.median([abs(r["levels_kw"][k] - v) / v for r in rows[window - 1 :] if k in r["levels_kw"]]))
        for k, v in month_kw.items()
        if len(rows) >= window
    }
    return {"load": load, "tariff": tariff_name, "month_kw": month_kw, "days": rows, "median_off": off}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--months", type=Path, required=True, help="policy_suite.py's month files")
    ap.add_argument("--loads", default="train100,train200,inference,flat,pv")
    ap.add_argument("--tariffs", default="shanghai_ci_two_part,pge_e20_secondary_2014")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--window", type=int, default=7, help="days before each day the levels are priced on [7]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = []
    for load in args.loads.split(","):
        for tn in args.tariffs.split(","):
            r = one(args.months, load, tn, args.days, args.window)
            out.append(r)
            if not args.json:
                opt = ", ".join(f"{k} {v:,.0f}" for k, v in r["month_kw"].items())
                print(f"{load} / {tn}: the month's optimum {opt} kW")
                for row in r["days"]:
                    print(f"  {row['day']}  " + "  ".join(f"{k} {v:7,.0f}" for k, v in row["levels_kw"].items()))
                print("  median day off the month's, from day " + f"{args.window + 1}: "
                      + ", ".join(f"{k} {100 * v:.1f} %" for k, v in r["median_off"].items()), flush=True)
    if args.json:
        print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
