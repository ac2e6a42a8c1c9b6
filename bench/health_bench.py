"""Cluster-health detection bench: lead time before the BMS limit, and false alarms.

    .venv/bin/python bench/health_bench.py [--seeds 6] [--days 90] [--clusters 12]

For each seed, two accelerated runs of a `--clusters` fleet (simulators/aging.py):

- degraded: every fault kind injected into its own randomly chosen cluster, with a random
  start day and rate (limits reached roughly 20-65 days after the start), run until a few days
  after the last limit is reached (at most `--days`);
- healthy: no fault at all, `--days` days.

Reported per fault kind: detected (a recommendation on the right cluster for a right indicator
before its limit), lead time (days from the end of the day the recommendation was raised to
the day the limit was actually reached), and misattributions (a recommendation on the faulty
cluster for an unrelated indicator before its limit). False alarms: recommendations on
clusters with no fault, in either run. Targets: every fault found with >= 7 days lead, zero
false alarms over the healthy 90 days.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from agent.health.tracker import HealthTracker
from simulators.aging import AgingRun, run_tracker
from simulators.degradation import KINDS, Degradation

RATES = {  # per day: limit reached roughly 20-65 days after the fault starts
    "resistance": (0.01, 0.03),
    "cell_drift": (0.0015, 0.004),
    "capacity_fade": (0.003, 0.008),
    "cooling": (0.015, 0.03),
}
# The indicators that correctly name each fault (capacity fade shows both in the BMS's own SoH
# and in the independent counted capacity).
RIGHT = {
    "resistance": {"resistance_mohm"},
    "cell_drift": {"cell_spread_mv"},
    "capacity_fade": {"capacity_pct", "soh_pct"},
    "cooling": {"temp_max_c"},
}
LEAD_TARGET_DAYS = 7


def scenario(seed: int, n: int) -> tuple[Degradation, ...]:
    rng = random.Random(f"bench:{seed}")
    ids = rng.sample([f"c{i + 1:02d}" for i in range(n)], len(KINDS))
    return tuple(
        Degradation(cid, kind, float(rng.randint(5, 20)), rng.uniform(*RATES[kind]))
        for cid, kind in zip(ids, KINDS, strict=True)
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=6)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--clusters", type=int, default=12)
    a = ap.parse_args(argv)
    leads: dict[str, list[int]] = {k: [] for k in KINDS}
    missed: list[str] = []
    wrong: list[str] = []
    false_alarms: list[str] = []
    healthy_days = 0
    t0 = time.perf_counter()
    for seed in range(a.seeds):
        degs = scenario(seed, a.clusters)
        run = AgingRun(a.clusters, degs, seed=seed)
        out = run_tracker(run, HealthTracker(), a.days, stop_after_limits=3)
        faulty = {d.cluster_id: d for d in degs}
        for d in degs:
            limit = out.limit_day.get((d.cluster_id, d.kind))
            hits = [day for (cid, ind), day in out.first_rec.items() if cid == d.cluster_id and ind in RIGHT[d.kind]]
            first = min(hits) if hits else None
            # the recommendation closes with day `first`; the operator has it from day first + 1
            lead = None if first is None or limit is None else limit - (first + 1)
            desc = f"seed {seed} {d.cluster_id} {d.kind} start {d.start_day:g} rate {d.rate:.4g}"
            print(f"  {desc}: first rec day {first}, limit day {limit}, lead {lead}")
            if lead is None or lead < 0:
                missed.append(desc)
            else:
                leads[d.kind].append(lead)
            for (cid, ind), day in out.first_rec.items():
                if cid == d.cluster_id and ind not in RIGHT[d.kind] and (limit is None or day < limit):
                    wrong.append(f"{desc}: {ind} on day {day}")
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
