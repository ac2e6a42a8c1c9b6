"""Bill gap: where the heuristic's savings fall short of the optimum's, bill line by bill line.

Run: .venv/bin/python bench/bill_gap.py --months /tmp/months [--days 30] [--warm]
         [--loads train100,train200,inference,flat,pv] [--tariffs pge_e20_secondary_2014] [--json]

A diagnostic for issue 13, not a controller. policy_suite.py gives one share of the optimum per
(load, tariff); this splits the same replay's gap to the same optimum (agent.offline.replay's
`optimum_for`, ending at the replay's own SoC) into the bill's lines: the energy charge, each demand
charge (with the billed peak and the local time of the interval that set it, for both), and the wear.
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

import agent
from agent.economics.billing import Bill, bill
from agent.economics.tariff import Tariff, bundled
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


def gap(months: Path, name: str, tariff_name: str, days: int, warm: bool) -> dict[str, Any]:
    """The heuristic's and the optimum's bill lines for one (load, tariff) month, and their gap."""
    trace = ps.month(months, name, tariff_name, days, 60.0)
    history = ps.before(months, name, tariff_name, days, 60.0) if warm else None
    tariff = bundled(tariff_name)
    site = load_site(Path(agent.__file__).parent / "sites" / "demo.toml").with_clusters(12)
    site = replace(site, control=replace(site.control, reserve_load_w=0.0, fast_lane_s=0.0), timezone=tariff.timezone)
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
    return {"load": name, "tariff": tariff_name, "lines": lines, "gap": sum(v["gap"] for v in lines.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--months", type=Path, required=True, help="policy_suite.py's months (.npz)")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--loads", default="train100,train200,inference,flat,pv")
    ap.add_argument("--tariffs", default="pge_e20_secondary_2014")
    ap.add_argument("--warm", action="store_true", help="the month with the 7 days before it behind it")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = []
    for tariff_name in a.tariffs.split(","):
        for name in a.loads.split(","):
            g = gap(a.months, name, tariff_name, a.days, a.warm)
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
    if a.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
