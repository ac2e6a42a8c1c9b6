"""Staged expansion benchmark: a campus growing from 10,000 to 100,000 GPUs over five years.

Run: .venv/bin/python bench/expansion_bench.py [--days 31] [--step 60] [--max-hold 60] [--clusters 0,24,...] [--json]
     .venv-fast/bin/python bench/expansion_bench.py ...   # the mypyc-compiled build (`make fast`)

The load: savings_bench.py's ~10,000-GPU site (1,000 training nodes swinging together along the
measured H100 node trace, /work/shared/data/h100-node-training-100stepsync.csv from GitHub
grantwilkins/training_profile; 250 inference nodes; PUE 1.25; 200 kW other), July 2026 at 1 s,
then averaged to `--step` s (a replay's time grows with steps x clusters). A step coarser than
`--max-hold` (60 s) is replayed in sub-steps of at most that (agent.offline.replay: the load held,
the policy deciding every sub-step), so a 300 s trace costs what the 60 s one does and saves
about as much; `--max-hold 300` on a 300 s trace is the old one decision per step, which lost
money the live agent does not (BENCHMARKS.md, "Issue 16: staged expansion", the integrator's re-run).
Year y is that trace x the GPU count's growth: 10k, 20k, 40k, 70k, 100k GPUs (x 1, 2, 4, 7, 10),
and years 6..15 keep year 5's load (agent.offline.growth: `scale` per [[year]]).

The site: the demo's (agent/sites/demo.toml) clusters of 418 kWh / 209 kW, a 630 kW PCS per 3
clusters, Shanghai C&I two-part tariff, degradation 0.15 CNY/kWh discharged, no backup reserve
and no ramp limit (as savings_bench.py).
Prices (illustrative, CNY; `--cluster-price`, `--price-fall`): 250,000 per cluster (0.6 CNY/Wh)
falling 8 % a year, 120,000 per 630 kW PCS, 1,200,000 of works per stage, O&M 3,000 per
cluster-year plus 150,000 a year; 7 % discount rate, 15-year horizon; a year can add any candidate
(`--max-add`: day one must be able to buy the final year's best size to be the comparison). The
demo site's 480,000 per cluster (1.15 CNY/Wh) is dearer than the bench's choice.

This runs the library path of `ems-agent analyze BASE.csv --growth GROWTH.toml` (the growth file
it writes next to the output is that command's input): every (year, size) replayed once through
the live policy (`--savings replay`) and/or solved by the perfect-foresight optimum (`optimum`,
the bound a better controller could reach), then the dynamic programme. Reported: the savings
table, the staged plan against day one and no battery, and the cells' count and wall time (the
replays are the run's time).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from savings_bench import SITE, site_load  # beside this script

from agent.cli.analyze import load_trace
from agent.economics.optimum import resample_mean
from agent.economics.roi import economics_config
from agent.economics.tariff import bundled
from agent.model.config import load_site
from agent.offline import replay_cache
from agent.offline.expansion import SOURCES, distinct_loads, expansion_report, expansion_text, savings_table
from agent.offline.growth import load_growth, year_trace
from agent.offline.replay import BUILD, MAX_HOLD_S, ProgressFn

GPUS = (10_000, 20_000, 40_000, 70_000, 100_000)
GROWTH = """# written by bench/expansion_bench.py: 10k -> 100k GPUs over five years
[plan]
horizon_years = 15
discount_rate = 0.07
clusters = {clusters}
max_add_per_year = {max_add}
clusters_per_pcs = 3

[prices]
cluster = {prices}
pcs = 120_000
stage = 1_200_000
om_per_cluster = 3_000
om_fixed = 150_000
{years}"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=31)
    ap.add_argument("--step", type=float, default=60.0, help="trace step, s (means of the 1 s trace) [60]")
    ap.add_argument(
        "--max-hold", type=float, default=MAX_HOLD_S, help="longest decision inside a coarser step, s [%(default)g]"
    )
    ap.add_argument("--cluster-price", type=float, default=250_000.0, help="year 1, CNY per cluster [250000]")
    ap.add_argument("--price-fall", type=float, default=0.08, help="cluster price fall a year [0.08]")
    ap.add_argument("--clusters", default="0,24,48,96,144,192", help="candidate installed counts [0,24,...,192]")
    ap.add_argument(
        "--max-add", type=int, default=192, help="most clusters a year adds [192: day one can buy any candidate]"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print the report as JSON at the end")
    ap.add_argument("--savings", choices=(*SOURCES, "both"), default="both", help="the table's source [both]")
    ap.add_argument("--cache", help="replay cache file (agent/offline/replay_cache.py) to reuse and update")
    args = ap.parse_args()

    t0 = time.perf_counter()
    ts, load = site_load(args.days, args.seed)
    if args.step > 1.0:
        ts, load = resample_mean(ts, load, args.step)
    prices = [round(args.cluster_price * (1.0 - args.price_fall) ** y) for y in range(5)]
    years = "".join(f"\n[[year]]  # {g:,} GPUs\nscale = {g / GPUS[0]:g}\n" for g in GPUS)
    counts = "[" + ", ".join(c.strip() for c in args.clusters.split(",")) + "]"
    tmp = Path(tempfile.mkdtemp(prefix="expansion_bench_"))
    growth_path = tmp / "growth.toml"
    growth_path.write_text(GROWTH.format(clusters=counts, prices=prices, years=years, max_add=args.max_add))

    site = load_site(SITE)
    site = replace(site, control=replace(site.control, reserve_load_w=0.0, ramp_limit_w_per_s=0.0))
    tariff = bundled("shanghai_ci_two_part")
    econ = economics_config(site)
    plan = load_growth(growth_path, site, econ)
    base = tmp / "base.csv"
    base.write_text("timestamp,power_w\n" + "".join(f"{t:.0f},{w:.1f}\n" for t, w in zip(ts, load, strict=True)))
    traces = [
        year_trace(plan, plan.years.index(y) + 1, base, None, load_trace, site.timezone) for y in distinct_loads(plan)
    ]
    print(
        f"trace: {len(ts):,} steps of {args.step:g} s, load {load.min() / 1e6:.2f}-{load.max() / 1e6:.2f} MW"
        f" at 10k GPUs, built in {time.perf_counter() - t0:.1f} s; growth file {growth_path}",
        flush=True,
    )

    def progress(label: str) -> ProgressFn:
        def show(done: int, total: int) -> None:
            end = "\n" if done >= total else ""
            print(f"\r{label}: {done / total:6.1%}", end=end, file=sys.stderr, flush=True)

        return show

    cache, _ = replay_cache.load(Path(args.cache)) if args.cache else ({}, None)
    code = replay_cache.code_digest()
    out = {}
    for source in SOURCES if args.savings == "both" else (args.savings,):
        t1 = time.perf_counter()
        table = savings_table(
            plan,
            site,
            tariff,
            econ,
            traces,
            source=source,
            start_soc_pct=50.0,
            progress=progress,
            cache=cache,
            code=code,
            max_hold_s=args.max_hold,
        )
        t2 = time.perf_counter()
        if args.cache:
            replay_cache.save(Path(args.cache), cache)
        rep = expansion_report(plan, table, tariff.currency)
        t3 = time.perf_counter()
        rep["bench"] = {
            "build": BUILD,
            "days": args.days,
            "step_s": args.step,
            "max_hold_s": args.max_hold,
            "computed": table.replays,
            "cached": table.cached,
            "wall_s": t2 - t1,
            "per_cell_s": {
                f"{table.loads[i].label}, {c}": round(cell.wall_s, 2) for (i, c), cell in sorted(table.cells.items())
            },
            "dp_and_report_s": t3 - t2,
        }
        out[source] = rep
        print(expansion_text(rep))
        by_size: dict[int, list[float]] = {}
        for (_, c), cell in table.cells.items():
            by_size.setdefault(c, []).append(cell.wall_s)
        each = ", ".join(f"{c} clusters {sum(w) / len(w):.1f} s" for c, w in by_size.items())
        print(
            f"\nbench ({source}): {table.replays} computed, {table.cached} from the cache, in {t2 - t1:.1f} s wall"
            f" ({BUILD} build); DP and report {t3 - t2:.3f} s; time per cell by size (when computed): {each}"
            f"\nthe same from the command line: ems-agent analyze {base} --growth {growth_path}"
            f" --growth-savings {source} --site {SITE} (with this bench's reserve and ramp limit off)\n",
            flush=True,
        )
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
