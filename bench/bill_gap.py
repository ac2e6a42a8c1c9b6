"""Bill gap: where the heuristic's savings fall short of the optimum's, bill line by bill line.

Run: .venv/bin/python bench/bill_gap.py --months /tmp/months [--days 30] [--step 60] [--warm]
         [--loads train100,train200,inference,flat,pv] [--tariffs pge_e20_secondary_2014] [--json]

A diagnostic for issue 13, not a controller. policy_suite.py gives one share of the optimum per
(load, tariff); this splits the same replay's gap to the same optimum (agent.offline.replay's
`optimum_for`, ending at the replay's own SoC) into the bill's lines: the energy charge, each demand
charge (with the billed peak and the local time of the interval that set it, for both), and the wear;
and, per day, what the heuristic's battery gave in the highest-rate window against the least its level
there needs (window_energy), and what each schedule charged inside those windows (window_charge_kwh).
A positive gap on a line is money the optimum saves there and the heuristic does not; the lines sum to
the whole gap. What it showed first (BENCHMARKS.md, issue 13, "a window keeps what its lower-rate
shoulder needs"): on PG&E the maximum demand, billed in the part-peak evening after an emptied peak
window.

Loads, tariffs and the site are policy_suite.py's (its months from `--months`, its `one()` site:
12 clusters, no reserve, its 0.15 per kWh of wear in the tariff's currency); `--warm` starts the month
with the 7 days before it, as the suite's `--warm`.
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
from agent.economics.billing import Bill, bill
from agent.economics.optimum import resample_mean
from agent.economics.tariff import Tariff
from agent.model.config import load_site
from agent.offline.replay import optimum_for, replay


def _lines(b: Bill, tariff: Tariff) -> dict[str, dict[str, Any]]:
    """Each line of a one-month bill: its charge and, for a demand charge, the peak and when it was set."""
    m = b.months[0]
    out: dict[str, dict[str, Any]] = {"energy": {"charge": sum(e.charge for e in m.energy)}}
    for d in m.demand:
        when = datetime.fromtimestamp(d.peak_start, tariff.timezone).strftime("%a %d %H:%M") if d.peak_w > 0 else ""
        out[d.name] = {"charge": d.charge, "peak_kw": d.peak_w / 1e3, "set": when}
    return out


def gap(months: Path, name: str, tariff_name: str, days: int, warm: bool, step_s: float = 60.0) -> dict[str, Any]:
    """The heuristic's and the optimum's bill lines for one (load, tariff) month, and their gap."""
    trace = ps.month(months, name, tariff_name, days, step_s)
    history = ps.before(months, name, tariff_name, days, step_s) if warm else None
    tariff = tariff_named(tariff_name)
    site = load_site(Path(agent.__file__).parent / "sites" / "demo.toml").with_clusters(12)
    # the suite's site: no reserve, no ramp limit (policy_suite.one without --ramp-limit; at 60 s a ramp
    # limit never binds, at 1 s it would)
    control = replace(site.control, reserve_load_w=0.0, fast_lane_s=0.0, ramp_limit_w_per_s=0.0)
    site = replace(site, control=control, timezone=tariff.timezone)
    res = replay(site, tariff, trace, start_soc_pct=50.0, history=history)
    step = float(trace.timestamps[1] - trace.timestamps[0])
    ours = bill(trace.timestamps, np.asarray(res.grid_w), tariff, max_hold_s=step)
    start, end = 100.0 * res.start_wh / res.capacity_wh, 100.0 * res.end_wh / res.capacity_wh
    o = optimum_for(site, tariff, trace, start, end)
    wear = site.control.degradation_cost_per_kwh
    discharged_kwh = float(np.sum(np.maximum(np.asarray(res.battery_w), 0.0))) * step / 3.6e6
    h, b = _lines(ours, tariff), _lines(o.bill, tariff)
    lines = {k: {"heuristic": h[k], "optimum": b[k], "gap": h[k]["charge"] - b[k]["charge"]} for k in h}
    lines["wear"] = {
        "heuristic": {"charge": discharged_kwh * wear},
        "optimum": {"charge": o.degradation_cost},
        "gap": discharged_kwh * wear - o.degradation_cost,
    }
    windows = window_energy(trace.timestamps, trace.net_w, np.asarray(res.grid_w), np.asarray(res.battery_w), tariff)
    starts, ours_w = resample_mean(trace.timestamps, np.asarray(res.battery_w), tariff.demand_interval_s)
    charged = {
        "heuristic": window_charge_kwh(starts, ours_w, tariff),
        "optimum": window_charge_kwh(starts, np.asarray(o.battery_w), tariff),  # on the same interval means
    }
    gap_total = sum(v["gap"] for v in lines.values())
    return {
        "load": name,
        "tariff": tariff_name,
        "lines": lines,
        "gap": gap_total,
        "windows": windows,
        "window_charge_kwh": charged,
    }


def window_charge_kwh(starts: np.ndarray, battery_w: np.ndarray, tariff: Tariff) -> float:
    """Energy charged (kWh, AC) in the demand intervals starting at `starts` that bill the tariff's highest
    demand rate, from the battery's average power over each (`battery_w`, discharge positive): what a
    schedule refills inside its windows, in the dips of the load under their level (issue 13: the
    optimum does on the flat HPL loop, the heuristic does not)."""
    rates = tariff.demand_rates(starts)
    if not len(starts) or not float(np.max(rates)) > 0.0:
        return 0.0
    top = rates == np.max(rates)
    return float(np.sum(np.maximum(-battery_w[top], 0.0))) * tariff.demand_interval_s / 3.6e6


def window_energy(
    ts: np.ndarray, net_w: np.ndarray, grid_w: np.ndarray, battery_w: np.ndarray, tariff: Tariff
) -> list[dict[str, Any]]:
    """Per day with a window at the tariff's highest demand rate: the level the heuristic held there (the
    highest interval average of grid import in it), the energy that level needs on the day's load (the
    sum over its intervals of the load's average above the level, kWh) and what the battery put out
    there (discharge less charge, kWh, AC). Their difference is what holding the day's level cost over
    the least it could: the aim rising through the day as the day turns out worse than the levels were
    sized on, and what shaving gives ahead of a dip that then closes an interval under its aim."""
    length = tariff.demand_interval_s
    starts, load = resample_mean(ts, net_w / 1e3, length)
    _, grid = resample_mean(ts, grid_w / 1e3, length)
    _, out_kwh = resample_mean(ts, battery_w * (length / 3.6e6), length)
    rates = tariff.demand_rates(starts)
    top = float(np.max(rates)) if len(starts) else 0.0
    if not top > 0.0 or float(np.min(rates)) == top:
        return []
    day = np.array([datetime.fromtimestamp(t, tariff.timezone).date().toordinal() for t in starts])
    h = length / 3600.0
    rows = []
    for d in np.unique(day):
        m = (day == d) & (rates == top)
        if not m.any():
            continue
        level = float(grid[m].max())
        need = float(np.sum(np.maximum(load[m] - level, 0.0))) * h
        used = float(np.sum(out_kwh[m]))
        when = datetime.fromtimestamp(float(starts[m][0]), tariff.timezone).strftime("%a %d")
        rows.append({"day": when, "level_kw": level, "need_kwh": need, "out_kwh": used})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--months", type=Path, required=True, help="policy_suite.py's months (.npz)")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--step", type=float, default=60.0, help="the trace's step, s (policy_suite.py's --step)")
    ap.add_argument("--loads", default="train100,train200,inference,flat,pv")
    ap.add_argument("--tariffs", default="pge_e20_secondary_2014")
    ap.add_argument("--warm", action="store_true", help="the month with the 7 days before it behind it")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = []
    for tariff_name in a.tariffs.split(","):
        for name in a.loads.split(","):
            g = gap(a.months, name, tariff_name, a.days, a.warm, a.step)
            out.append(g)
            if a.json:
                continue
            print(f"{name} / {tariff_name}: the optimum saves {g['gap']:,.0f} more")
            for k, v in g["lines"].items():
                h, o = v["heuristic"], v["optimum"]
                peaks = ""
                if "peak_kw" in h:
                    peaks = f"  {h['peak_kw']:7,.0f} kW {h['set']:12s} | {o['peak_kw']:7,.0f} kW {o['set']}"
                charges = f"heuristic {h['charge']:11,.0f}, optimum {o['charge']:11,.0f}"
                print(f"  {k:24s} gap {v['gap']:9,.0f}  ({charges}){peaks}")
            if g["windows"]:
                need = sum(r["need_kwh"] for r in g["windows"])
                used = sum(r["out_kwh"] for r in g["windows"])
                worst = max(g["windows"], key=lambda r: r["level_kw"])
                print(
                    f"  highest-rate windows: their levels need {need:,.0f} kWh, the battery gave {used:,.0f} "
                    f"({used - need:+,.0f}); the highest, {worst['level_kw']:,.0f} kW on {worst['day']}: "
                    f"{worst['need_kwh']:,.0f} kWh needed, {worst['out_kwh']:,.0f} given"
                )
                c = g["window_charge_kwh"]
                print(f"  charged inside them: heuristic {c['heuristic']:,.0f} kWh, optimum {c['optimum']:,.0f} kWh")
    if a.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
