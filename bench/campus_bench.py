"""Campus benchmark: 8 feeders x 64 clusters under one utility meter, coordinated vs one ideal controller.

Run: .venv/bin/python bench/campus_bench.py [--days 30] [--step 60] [--feeders 8] [--clusters 64]
         [--tariffs shanghai_ci_two_part,pge_e20_secondary_2014] [--diagnose] [--economic-only] [--json]
     .venv/bin/python bench/campus_bench.py --quick      # 3 days, for a look (minutes, not an hour)
     .venv-fast/bin/python bench/campus_bench.py ...      # the mypyc build of the replay (`make fast`): the month
                                                          # in ~15 min per tariff on a busy 2-core machine

Per tariff, the same campus loads through agent.offline.campus_replay in four runs:
- ideal (economic): every feeder's battery pooled under one controller seeing the summed load, its
  demand target found by the controller itself (the month's peak ratchet, as one site runs today);
- ideal (target T) and coordinated (target T): the campus demand target T fixed, as the campus file
  (agent/campus/config.py) gives the coordinator one; T is the billed peak the economic ideal
  reached on the same month (chosen in hindsight, for both alike: the coordinator has no economic
  target of its own, so the comparison measures what splitting the campus among eight agents
  costs - the split rule and the one-cycle delay - not how a target is found);
- coordinated (economic): the campus file's demand_target_w = 0, no T: the coordinator decides the
  campus's level per demand window itself, by the single site's own rules run once on the campus
  (agent/campus/levels.py), compared with the pooled controller on its own economic rules (ideal
  (economic)): the same batteries under one brain, no target handed to either (mode "economic");
- uncoordinated: each agent shaving its own feeder's peak alone, for contrast.
`--target-kw T --modes ''` runs the coordinated campus alone at a given T (the ideal's figures
from an earlier run of the same commit's ideal: a quicker before/after of the coordination alone).
`--diagnose` adds coordinated without the one-cycle delay (agent.offline.campus_replay's late=False:
the shares allocated from the readings each cycle decides on), at T and with mode economic without
T too, to tell the delay's cost from the split rule's.
Reported: the campus bill, billed peak, savings against no battery (net of wear, the end-of-month
stored-energy difference valued at the cheapest price through the charge efficiency) by part,
coordinated as a share of the ideal's (target: within 2 %), every mode as a share of the pooled
battery's perfect-foresight optimum (agent.economics.optimum on the summed load, 50 -> 50 % SoC: the
"ideal" above is one heuristic controller, not an upper bound), and allocate()'s cost per cycle.

The feeders (site-local time from 1 July 2026 00:00 in the tariff's zone; savings_bench.py's and
planner_bench.py's builders, 1 s data averaged to `--step`):
- loads cycle through train100, train200, inference (inference-heavy), flat (the Frontier HPL run,
  /work/shared/data/frontier-hpl-system-15s.csv, ORNL OLCF DOI 437, CC BY 4.0); train* from the
  measured 8xH100 node traces (/work/shared/data/h100-node-training-{100,200}stepsync.csv,
  GitHub grantwilkins/training_profile); each feeder its own seed (job timings) and its day shifted
  by 3 h per feeder, so the feeders do not peak together by construction;
- each scaled by clusters / 12 from the 12-cluster bench site, the same battery-to-load ratio;
- each feeder: `--clusters` of 418 kWh / 209 kW, 4 behind each 840 kW PCS, demo.toml's [control]
  without backup reserve, ramp limit or fast lane; every agent decides once per step.
The step is 60 s for the savings part (a month in minutes on a busy 2-core machine): the one-cycle
delay of the coordinator's share is then 60 s, longer than a live 1 s cycle's, and on PG&E it costs
the campus 2-6 points of the pooled controller's savings that it does not lose at the live cycle
(`--step 1`: the live delay, about an hour and 3.5 GB for 4 feeders; BENCHMARKS.md, "Issue 16: the
campus at the live cycle").
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from bench_tariff import tariff as tariff_named  # beside this script: on the path when run
from planner_bench import build_load
from savings_bench import SITE

from agent.campus.allocate import CampusLimits
from agent.economics.optimum import resample_mean
from agent.economics.tariff import FloatArray, Tariff
from agent.model.config import SiteConfig, load_site
from agent.offline.campus_replay import (
    CampusRun,
    Feeder,
    campus_trace,
    coordinated,
    evaluate_campus,
    ideal,
    pooled,
    uncoordinated,
)
from agent.offline.replay import ProgressFn, Trace, optimum_for

LOADS = ("train100", "train200", "inference", "flat")
PHASE_H = 3  # each feeder's day shifted by this many hours more than the one before
CLUSTERS_PER_PCS = 4
PCS_RATED_W = 840e3  # 4 x 209 kW clusters
BENCH_CLUSTERS = 12  # savings_bench.py's site, whose loads are scaled here
ALL_MODES = ("optimum", "ideal", "economic", "uncoordinated")  # the runs besides coordinated (--modes)


def feeder_site(proto: SiteConfig, fid: str, clusters: int, tariff: Tariff, step_s: float) -> SiteConfig:
    """demo.toml's site as feeder `fid`: `clusters` clusters, 4 to a PCS, no reserve, ramp or fast lane."""
    site = proto.with_clusters(clusters)
    pcs_proto = site.pcs[0]
    ids = [c.id for c in site.clusters]
    pcs = tuple(
        replace(pcs_proto, id=f"pcs{j + 1:02d}", rated_w=PCS_RATED_W, clusters=tuple(ids[i : i + CLUSTERS_PER_PCS]))
        for j, i in enumerate(range(0, clusters, CLUSTERS_PER_PCS))
    )
    control = replace(site.control, reserve_load_w=0.0, ramp_limit_w_per_s=0.0, fast_lane_s=0.0)
    return replace(site, id=fid, pcs=pcs, control=control, timezone=tariff.timezone, cycle_s=step_s)


def feeder_load(i: int, days: int, step_s: float, scale: float) -> tuple[str, FloatArray]:
    """(name, load at `step_s`) of feeder i: its mix, seed and phase (the module doc)."""
    name = LOADS[i % len(LOADS)]
    _, load, _ = build_load(name, days, seed=11 + i)
    load = np.roll(load, i * PHASE_H * 3600)
    _, x = resample_mean(np.arange(len(load), dtype=np.float64), load, step_s)
    return f"{name}+{i * PHASE_H}h", np.asarray(x * scale, dtype=np.float64)


def build_campus(
    n: int, clusters: int, days: int, step_s: float, tariff: Tariff, loads: list[tuple[str, FloatArray]]
) -> list[Feeder]:
    proto = load_site(SITE)
    start = datetime(2026, 7, 1, tzinfo=tariff.timezone).timestamp()
    out = []
    for i in range(n):
        name, x = loads[i]
        ts = start + step_s * np.arange(len(x), dtype=np.float64)
        site = feeder_site(proto, f"f{i + 1}", clusters, tariff, step_s)
        out.append(Feeder(site, Trace(ts, x, source=f"f{i + 1} {name}")))
    return out


def progress_for(label: str) -> ProgressFn:
    """A progress line on stderr, rewritten at each call."""

    def progress(done: int, total: int) -> None:
        print(f"\r  {label}: {done / total:6.1%}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    return progress


def one_tariff(
    feeders: list[Feeder],
    tariff: Tariff,
    diagnose: bool = False,
    target_kw: float | None = None,
    modes: tuple[str, ...] = ALL_MODES,
    at_target: bool = True,
) -> dict[str, Any]:
    c = feeders[0].site.control
    runs: dict[str, CampusRun] = {}

    def score(key: str) -> dict[str, Any]:
        run = runs[key]
        r = evaluate_campus(run, tariff, c.degradation_cost_per_kwh, c.charge_efficiency)
        sv = r["savings"]
        by: Counter[str] = Counter()
        for fr in run.feeders.values():
            by.update(fr.decided_by)
        r["decided_by"] = dict(by.most_common())
        print(
            f"  {key:14s}: bill {r['bill']:,.0f} {tariff.currency} (no battery {r['baseline_bill']:,.0f});"
            f" billed peak {r['baseline_peak_kw']:,.0f} -> {r['billed_peak_kw']:,.0f} kW; savings"
            f" {r['adjusted_net_savings']:,.0f} (net {sv['net']:,.0f}: energy {sv['energy']:,.0f}, demand"
            f" {sv['demand']:,.0f}, wear {sv['degradation']:,.0f}; end SoC {r['end_soc_pct']:.1f} %);"
            f" {r['battery_use']['discharge_kwh'] / 1e3:,.0f} MWh discharged; {run.wall_s:.0f} s",
            flush=True,
        )
        return r

    out: dict[str, Any] = {}
    if target_kw is None:
        runs["ideal_economic"] = ideal(feeders, CampusLimits(), tariff, progress=progress_for("ideal, economic target"))
        out["ideal_economic"] = score("ideal_economic")
        target = out["ideal_economic"]["billed_peak_kw"] * 1e3
    else:
        target = target_kw * 1e3
    opt_savings = math.nan
    if "optimum" in modes:
        t0 = time.perf_counter()
        opt = optimum_for(pooled(feeders, CampusLimits()), tariff, campus_trace(feeders), 50.0, 50.0)
        opt_savings = opt.savings
        out["optimum_50_to_50"] = {"savings": opt.savings, "solve_s": time.perf_counter() - t0}
        print(f"  optimum (pooled battery, perfect foresight, 50 -> 50 % SoC): savings {opt.savings:,.0f}", flush=True)
    limits = CampusLimits(demand_target_w=target)
    out["campus_demand_target_kw"] = target / 1e3
    if "ideal" in modes:
        runs["ideal"] = ideal(feeders, limits, tariff, progress=progress_for(f"ideal, target {target / 1e3:,.0f} kW"))
        out["ideal"] = score("ideal")
    if at_target:
        runs["coordinated"] = coordinated(feeders, limits, tariff, progress=progress_for("coordinated"))
        out["coordinated"] = score("coordinated")
    if diagnose and at_target:
        runs["coordinated_no_delay"] = replace(
            coordinated(feeders, limits, tariff, late=False, progress=progress_for("coordinated, no delay")),
            mode="coordinated_no_delay",
        )
        out["coordinated_no_delay"] = score("coordinated_no_delay")
    if "economic" in modes:  # no T: the coordinator's own level per demand window (agent/campus/levels.py)
        runs["coordinated_economic"] = replace(
            coordinated(feeders, CampusLimits(), tariff, progress=progress_for("coordinated, economic")),
            mode="coordinated_economic",
        )
        out["coordinated_economic"] = score("coordinated_economic")
        if diagnose:
            runs["coordinated_economic_no_delay"] = replace(
                coordinated(
                    feeders,
                    CampusLimits(),
                    tariff,
                    late=False,
                    progress=progress_for("coordinated, economic, no delay"),
                ),
                mode="coordinated_economic_no_delay",
            )
            out["coordinated_economic_no_delay"] = score("coordinated_economic_no_delay")
    if "uncoordinated" in modes:
        runs["uncoordinated"] = uncoordinated(feeders, tariff, progress=progress_for("uncoordinated"))
        out["uncoordinated"] = score("uncoordinated")
    ideal_s = out["ideal"]["adjusted_net_savings"] if "ideal" in out else math.nan
    for mode in ("coordinated", "coordinated_no_delay", "uncoordinated", "ideal_economic"):
        if mode in out:
            out[mode]["share_of_ideal"] = out[mode]["adjusted_net_savings"] / ideal_s if ideal_s > 0 else None
    eco_s = out["ideal_economic"]["adjusted_net_savings"] if "ideal_economic" in out else math.nan
    for mode in ("coordinated", "coordinated_economic", "coordinated_economic_no_delay"):
        if mode in out:  # against the pooled controller on its own economic rules (target: >= 98 %)
            out[mode]["share_of_ideal_economic"] = out[mode]["adjusted_net_savings"] / eco_s if eco_s > 0 else None
    for mode in (
        "ideal_economic",
        "ideal",
        "coordinated",
        "coordinated_economic",
        "coordinated_no_delay",
        "uncoordinated",
    ):
        if mode in out:
            out[mode]["share_of_optimum"] = out[mode]["adjusted_net_savings"] / opt_savings if opt_savings > 0 else None
    a = runs["coordinated" if at_target else "coordinated_economic"].allocate_s * 1e6
    out["allocate_us"] = {"cycles": len(a), "p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}
    if at_target:
        out["per_feeder"] = per_feeder(runs, target, tariff.timezone)
    sh = out["coordinated"]["share_of_ideal"] if at_target else None
    unc = out["uncoordinated"]["share_of_ideal"] if "uncoordinated" in out else None
    shares = (
        "the ideal saved nothing at this target (or was not run): no share"
        if sh is None
        else f"coordinated = {sh:.1%} of the ideal's savings at the same target (target: >= 98 %)"
        + (f"; uncoordinated {unc:.1%}" if unc is not None else "")
    )
    eco = out.get("coordinated_economic", {}).get("share_of_ideal_economic")
    if eco is not None:
        shares += f"; coordinated economic = {eco:.1%} of the pooled economic controller's (target: >= 98 %)"
    print(
        f"  {shares}; allocate() p50 {out['allocate_us']['p50']:.0f} us,"
        f" p99 {out['allocate_us']['p99']:.0f} us over {len(a):,} cycles",
        flush=True,
    )
    return out


def per_feeder(runs: dict[str, CampusRun], target_w: float, tz: ZoneInfo) -> dict[str, Any]:
    """Where the coordinated campus went above the target: intervals over it and the feeders' SoC then."""
    co = runs["coordinated"]
    ts = co.timestamps
    step = float(ts[1] - ts[0]) if len(ts) > 1 else 60.0
    k = max(1, round(900.0 / step))
    m = len(ts) // k
    iv = co.grid_w[: m * k].reshape(m, k).mean(axis=1)
    over = np.flatnonzero(iv > target_w * 1.001)
    bat_iv = co.battery_w[: m * k].reshape(m, k).mean(axis=1)
    hours = [datetime.fromtimestamp(float(ts[j * k]), tz).hour for j in over.tolist()]
    out: dict[str, Any] = {
        "intervals_over_target": len(over),
        "over_target_local_hours": dict(sorted(Counter(hours).items())),
        "over_target_with_campus_charging": int(np.count_nonzero(bat_iv[over] < 0.0)),
    }
    if len(over):
        j = int(over[np.argmax(iv[over])])
        s = slice(j * k, (j + 1) * k)
        out["worst_interval"] = {
            "start": float(ts[j * k]),
            "campus_kw": float(iv[j]) / 1e3,
            "feeders": {
                fid: {
                    "net_kw": float(np.mean(r.trace.net_w[s])) / 1e3,
                    "grid_kw": float(np.mean(r.grid_w[s])) / 1e3,
                    "battery_kw": float(np.mean(r.battery_w[s])) / 1e3,
                    "soc_pct": float(r.soc_pct[j * k]),
                }
                for fid, r in co.feeders.items()
            },
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="3 days (overrides --days)")
    ap.add_argument("--step", type=float, default=60.0, help="trace step and agent cycle, s [60]")
    ap.add_argument("--feeders", type=int, default=8)
    ap.add_argument("--clusters", type=int, default=64, help="per feeder [64]")
    ap.add_argument("--tariffs", default="shanghai_ci_two_part,pge_e20_secondary_2014")
    ap.add_argument(
        "--diagnose",
        action="store_true",
        help="also coordinated without the one-cycle delay (shares from the readings each cycle decides on)",
    )
    ap.add_argument(
        "--target-kw",
        type=float,
        default=None,
        help="the campus demand target T (kW) instead of the economic ideal's billed peak (skips that run)",
    )
    ap.add_argument(
        "--modes",
        default=",".join(ALL_MODES),
        help=f"runs besides coordinated, of {','.join(ALL_MODES)} [all]",
    )
    ap.add_argument(
        "--economic-only",
        action="store_true",
        help="skip the coordinated run at the fixed target T (with --modes economic: the economic runs alone)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.economic_only and "economic" not in args.modes.split(","):
        ap.error("--economic-only: needs economic in --modes (else nothing is coordinated)")
    days = 3 if args.quick else args.days
    t0 = time.perf_counter()
    scale = args.clusters / BENCH_CLUSTERS
    loads = [feeder_load(i, days, args.step, scale) for i in range(args.feeders)]
    print(
        f"{args.feeders} feeders x {args.clusters} clusters, {days} days at {args.step:g} s;"
        f" loads built in {time.perf_counter() - t0:.0f} s: "
        + ", ".join(f"{n} {x.mean() / 1e6:.1f} MW mean" for n, x in loads),
        flush=True,
    )
    results: dict[str, Any] = {"days": days, "step_s": args.step, "feeders": args.feeders, "clusters": args.clusters}
    for name in args.tariffs.split(","):
        tariff = tariff_named(name)
        feeders = build_campus(args.feeders, args.clusters, days, args.step, tariff, loads)
        net = np.sum([f.trace.net_w for f in feeders], axis=0)
        peaks = [float(f.trace.net_w.max()) for f in feeders]
        print(
            f"{name}: campus peak {net.max() / 1e6:.1f} MW, sum of feeder peaks {sum(peaks) / 1e6:.1f} MW",
            flush=True,
        )
        modes = tuple(m for m in args.modes.split(",") if m)
        bad = sorted(set(modes) - set(ALL_MODES))
        if bad:
            ap.error(f"--modes: unknown {bad[0]!r} (one of {', '.join(ALL_MODES)})")
        results[name] = one_tariff(feeders, tariff, args.diagnose, args.target_kw, modes, not args.economic_only)
    if args.json:
        print(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
