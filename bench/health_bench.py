"""Cluster-health detection bench: lead time before the BMS limit, and false alarms.

    .venv/bin/python bench/health_bench.py [--seeds 6] [--days 90] [--clusters 12]

For each seed, two accelerated runs of a `--clusters` fleet (simulators/aging.py):

- degraded: every fault kind injected into its own randomly chosen cluster, with a random
  start day and rate (limits reached roughly 20-65 days after the start), run until a few days
  after the last limit is reached (at most `--days`);
- healthy: no fault at all, `--days` days.

Reported per fault kind: detected (a recommendation on the right cluster naming the right
finding, indicator and basis (RIGHT), before its limit), lead time (days from the end of the day
the recommendation was raised to the day the limit was actually reached), and misattributions
(a recommendation on the faulty cluster naming another finding before its limit). False alarms: recommendations on
clusters with no fault, in either run. Targets: every fault found with >= 7 days lead, zero
false alarms over the healthy 90 days.

    .venv/bin/python bench/health_bench.py --real /work/shared/data [--seeds 3]

Real aging data instead (issue 17), replayed by `ems-agent health-replay`'s code, one seed of
estimator noise per run:

- 28 NCA cells at 45 degC (`tju-nca-45c-capacity.csv`, Tianjin University, Zhu et al., Nature
  Communications 2022, Zenodo 6405084): every cell reaching end of life recommended 30-100
  cycles before it, the first three to fail flagged before any other, Spearman rank
  correlation of predicted vs true end of life >= 0.7; cells whose record stops first are
  listed, not scored;
- 4 identical LCO cells (`calce-cs2-capacity-resistance.csv`, CALCE, University of Maryland):
  no peer-drift alarm (they age alike; a negative control). CS2_38's resistance excursion (a
  climb of ~60 mOhm over 15 cycles, ~80 cycles high, then back, its capacity with its peers'
  throughout) is a connection finding, listed, not a peer-drift alarm: see BENCHMARKS.md, issue 17.

    .venv/bin/python bench/health_bench.py --real /work/shared/data --seeds 20 --sweep-early 36,38,40

The replacement rule's early-end threshold (agent/health/assess.py PLAN_EARLY_DAYS) swept on the
28-cell set, the forecast path alone: misses, recommendations > 100 cycles early, lead range.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from agent.cli.health_replay import clusters_for, read_records, summary_lines
from agent.cli.health_replay import table as replay_table
from agent.health.assess import CONFIRM_DAYS, FORECAST_ROWS, Recommendation, replacement_due
from agent.health.forecast import forecast
from agent.health.indicators import DailyIndicators
from agent.health.replay import ReplayConfig, map_records, replay
from agent.health.score import MAX_LEAD, MIN_LEAD, score, true_eol
from agent.health.tracker import HealthTracker
from simulators.aging import AgingRun, run_tracker
from simulators.degradation import KINDS, Degradation

RATES = {  # per day: limit reached roughly 20-65 days after the fault starts
    "resistance": (0.01, 0.03),
    "cell_drift": (0.0015, 0.004),
    "capacity_fade": (0.003, 0.008),
    "cooling": (0.015, 0.03),
}
# The findings (indicator, basis) that correctly name each fault. Capacity fade shows both in
# the BMS's own SoH and in the independent counted capacity. The resistance fault raises the
# pack's IR drop alone (simulators/degradation.py: no capacity lost, and no heat: the physics'
# losses come from fixed efficiencies), which is what a loosening connection or a drifting
# resistance estimate shows, not cells wearing: the module's name for it is the connection
# finding (agent/health/corroborate.py); a peer-drift or end-of-life verdict on it would be
# misattributed.
WEAR = ("peers", "forecast")
RIGHT = {
    "resistance": {("resistance_mohm", "connection")},
    "cell_drift": {("cell_spread_mv", b) for b in WEAR},
    "capacity_fade": {(i, b) for i in ("capacity_pct", "soh_pct") for b in WEAR},
    "cooling": {("temp_max_c", b) for b in WEAR},
}
LEAD_TARGET_DAYS = 7


def findings_tracker(day0: int) -> tuple[HealthTracker, dict[tuple[str, str, str], int]]:
    """A tracker, and the day (from `day0`) each (cluster, indicator, basis) was first raised:
    the finding's name, not only its indicator (run_tracker's first_rec)."""
    tracker = HealthTracker()
    found: dict[tuple[str, str, str], int] = {}

    def note(rows: list[DailyIndicators], recs: list[Recommendation]) -> None:
        for r in recs:
            if rows:
                found.setdefault((r.cluster_id, r.indicator, r.basis), rows[0].day - day0)

    tracker.on_close.append(note)
    return tracker, found


def scenario(seed: int, n: int) -> tuple[Degradation, ...]:
    rng = random.Random(f"bench:{seed}")
    ids = rng.sample([f"c{i + 1:02d}" for i in range(n)], len(KINDS))
    return tuple(
        Degradation(cid, kind, float(rng.randint(5, 20)), rng.uniform(*RATES[kind]))
        for cid, kind in zip(ids, KINDS, strict=True)
    )


TJU = "tju-nca-45c-capacity.csv"
CALCE = "calce-cs2-capacity-resistance.csv"
SPEARMAN_TARGET = 0.7


def real(data: Path, seeds: int) -> int:
    fails: list[str] = []
    for seed in range(seeds):
        for name, alike in ((TJU, False), (CALCE, True)):
            t0 = time.perf_counter()
            records = read_records(data / name)
            series = map_records(records, clusters_for(len(records), None), ReplayConfig(seed=seed))
            sc = score(series, replay(series), peers_alarm=alike)
            print(f"\n== {name}, noise seed {seed} ({time.perf_counter() - t0:.0f} s)")
            print(replay_table(sc))
            print("\n".join(summary_lines(sc)))
            tag = f"{name} seed {seed}"
            if alike:
                peer = [x for x in sc.false_alarms if "peer drift" in x]
                if peer:
                    fails.append(f"{tag}: {len(peer)} peer-drift alarms")
                continue
            if sc.misses:
                fails.append(f"{tag}: {len(sc.misses)} cells without a recommendation >= {MIN_LEAD} cycles ahead")
            early = [x for x in sc.false_alarms if "before end of life" in x]
            if early:
                fails.append(f"{tag}: {len(early)} recommendations > {MAX_LEAD} cycles before end of life")
            if not sc.first_flagged_first:
                fails.append(f"{tag}: the first {sc.n_first} to fail were not flagged before any other")
            if not sc.spearman >= SPEARMAN_TARGET:
                fails.append(f"{tag}: Spearman {sc.spearman:.3f} < {SPEARMAN_TARGET}")
    print("\nPASS" if not fails else "\nFAIL", *fails, sep="\n  ")
    return 0 if not fails else 1


def windows(data: Path, sizes: list[int]) -> int:
    """Forecast error of the central figure 100, 60 and 30 days before end of life, per fit
    window, on the 28-cell set split in two halves (even / odd records) and on the 4 CALCE cells."""
    print(f"{'set':<12} {'window':>6} {'n':>3} {'median err':>10} {'median |err|':>12} {'p90 |err|':>9}")
    for name in (TJU, CALCE):
        records = read_records(data / name)
        series = map_records(records, clusters_for(len(records), None), ReplayConfig(seed=0))
        halves = {"even": series[1::2], "odd": series[0::2]} if name == TJU else {"all": series}
        for size in sizes:
            for half, ss in halves.items():
                errs = []
                for s in ss:
                    eol = true_eol(s)
                    if eol is None:
                        continue
                    for lead in (100, 60, 30):
                        k = int(np.searchsorted(s.day, eol - lead))
                        f = forecast(s.day[: k + 1], s.seen_capacity_pct[: k + 1], 80.0, -1, window=size)
                        if f is not None:
                            errs.append(min(f.mid_days, 999.0) - lead)
                e = np.array(errs)
                print(
                    f"{name.split('-')[0] + ' ' + half:<12} {size:>6} {len(e):>3} {np.median(e):>10.1f} "
                    f"{np.median(np.abs(e)):>12.1f} {np.percentile(np.abs(e), 90):>9.1f}"
                )
    return 0


def sweep_early(data: Path, seeds: int, values: list[float]) -> int:
    """The replacement rule's early-end threshold swept on the 28-cell set: each cell's daily
    forecasts once per seed, then per threshold the first day `replacement_due` held on
    CONFIRM_DAYS days running (the forecast path alone; the peer path is not in this sweep),
    scored as the replay is: misses (< MIN_LEAD), > MAX_LEAD early, lead range."""
    records = read_records(data / TJU)
    leads: dict[float, list[int]] = {v: [] for v in values}
    misses = {v: 0 for v in values}
    for seed in range(seeds):
        for s in map_records(records, clusters_for(len(records), None), ReplayConfig(seed=seed)):
            eol = true_eol(s)
            if eol is None:
                continue
            fcs = []
            for k in range(len(s.day)):
                lo = max(0, k + 1 - FORECAST_ROWS)
                fcs.append(forecast(s.day[lo : k + 1], s.seen_capacity_pct[lo : k + 1], 80.0, -1))
            for v in values:
                due = [f is not None and replacement_due(f, v) for f in fcs]
                first = next((k for k in range(len(due)) if all(due[max(0, k - CONFIRM_DAYS + 1) : k + 1])), None)
                if first is None:
                    misses[v] += 1
                else:
                    leads[v].append(eol - (int(s.day[first]) + 1))
    print(f"{seeds} noise seeds; early end threshold: misses (< {MIN_LEAD}), > {MAX_LEAD} early, lead min-max")
    for v in values:
        ls = leads[v]
        short = misses[v] + sum(x < MIN_LEAD for x in ls)
        print(f"  {v:5g} days: {short} misses, {sum(x > MAX_LEAD for x in ls)} early, lead {min(ls)}-{max(ls)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--clusters", type=int, default=12)
    ap.add_argument("--real", type=Path, metavar="DATA_DIR", help="replay the real aging datasets in this directory")
    ap.add_argument("--windows", metavar="N,N,...", help="with --real: forecast error per fit window instead")
    ap.add_argument("--sweep-early", metavar="D,D,...", help="with --real: sweep the replacement rule's early end")
    a = ap.parse_args(argv)
    if a.real is not None and a.sweep_early:
        return sweep_early(a.real, a.seeds, [float(x) for x in a.sweep_early.split(",")])
    if a.real is not None and a.windows:
        return windows(a.real, [int(x) for x in a.windows.split(",")])
    if a.real is not None:
        return real(a.real, a.seeds)
    leads: dict[str, list[int]] = {k: [] for k in KINDS}
    missed: list[str] = []
    wrong: list[str] = []
    false_alarms: list[str] = []
    healthy_days = 0
    t0 = time.perf_counter()
    for seed in range(a.seeds):
        degs = scenario(seed, a.clusters)
        run = AgingRun(a.clusters, degs, seed=seed)
        tracker, found = findings_tracker(run.start.toordinal())
        out = run_tracker(run, tracker, a.days, stop_after_limits=3)
        faulty = {d.cluster_id: d for d in degs}
        for d in degs:
            limit = out.limit_day.get((d.cluster_id, d.kind))
            hits = [day for (cid, *what), day in found.items() if cid == d.cluster_id and tuple(what) in RIGHT[d.kind]]
            first = min(hits) if hits else None
            # the recommendation closes with day `first`; the operator has it from day first + 1
            lead = None if first is None or limit is None else limit - (first + 1)
            desc = f"seed {seed} {d.cluster_id} {d.kind} start {d.start_day:g} rate {d.rate:.4g}"
            print(f"  {desc}: first rec day {first}, limit day {limit}, lead {lead}")
            if lead is None or lead < 0:
                missed.append(desc)
            else:
                leads[d.kind].append(lead)
            for (cid, ind, basis), day in found.items():
                if cid == d.cluster_id and (ind, basis) not in RIGHT[d.kind] and (limit is None or day < limit):
                    wrong.append(f"{desc}: {ind} ({basis}) on day {day}")
        for (cid, ind), day in out.first_rec.items():
            if cid not in faulty:
                false_alarms.append(f"seed {seed} degraded run: {cid} {ind} on day {day}")
        healthy = run_tracker(AgingRun(a.clusters, (), seed=1000 + seed), HealthTracker(), a.days)
        healthy_days += healthy.days
        for (cid, ind), day in healthy.first_rec.items():
            false_alarms.append(f"seed {seed} healthy run: {cid} {ind} on day {day}")
    elapsed = time.perf_counter() - t0
    print(f"\n{a.seeds} seeds, {a.clusters} clusters, healthy runs {a.days} days each ({elapsed:.0f} s)")
    print(f"{'fault':<14} {'found':>6} {'lead min':>9} {'lead median':>12}")
    for k in KINDS:
        ls = leads[k]
        if ls:
            print(f"{k:<14} {len(ls):>3}/{a.seeds:<2} {min(ls):>9} {statistics.median(ls):>12g}")
        else:
            print(f"{k:<14} {0:>3}/{a.seeds:<2} {'-':>9} {'-':>12}")
    print(f"missed or late: {len(missed)}", *missed, sep="\n  ")
    print(f"misattributed before the limit: {len(wrong)}", *wrong, sep="\n  ")
    print(
        f"false alarms: {len(false_alarms)} (healthy clusters over {healthy_days} healthy-run days "
        f"x {a.clusters} clusters, plus the unfaulted clusters of the degraded runs)",
        *false_alarms,
        sep="\n  ",
    )
    short = [k for k in KINDS if not leads[k] or min(leads[k]) < LEAD_TARGET_DAYS]
    ok = not missed and not false_alarms and not short
    print("PASS" if ok else f"FAIL (lead < {LEAD_TARGET_DAYS} d: {short})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
