"""Issue 7 soak: the real agent against the full simulated site for a long time, every fault injected
on a seeded random schedule, then every cycle checked (tests/soak_rig.py says what and how).

    .venv/bin/python -m bench.soak --minutes 60 --seed 1          # the long soak (~62 min wall)
    .venv/bin/python -m bench.soak --minutes 5 --seed 2           # a quick one
    .venv/bin/python -m bench.soak --minutes 30 --no-restarts     # one agent run: memory/socket trend
    .venv/bin/python -m bench.soak --month --seed 3               # a compressed month (~20-40 min)

Writes artifacts/soak-<seed>.json and .md (per-fault counts and reactions, violations, losses,
RSS / socket samples per agent run, ledger and authentication checks) and prints progress; the
month writes artifacts/soak-month-<seed>.json and .md. Exit code 0 when every check passed, 1
otherwise. Needs victoria-metrics and mosquitto (`make services`) except for --month. Work files
(logs, ledger, VictoriaMetrics data) go to --work (default: a temporary directory, kept when a
check fails or with --keep).

The compressed month is not `ems-agent run` against `ems-agent simulate --speed X`: that cannot
work. The agent's cycle is paced by the monotonic clock, and tariff periods, demand intervals,
billing months and the ledger follow the wall clock (`datetime.now`), which `ems-agent run` offers
no way to accelerate. `simulate --speed X` only speeds up the plant: the agent would see X seconds
of physics per cycle (the SoC moves X times further between two decisions) while its PCS revert
timer, written in seconds, runs out X times sooner in simulated time, so at X = 720 (a month in
an hour) every PCS reverts to 0 W between two writes. So --month runs the agent's own AgentLoop
(real drivers, real Modbus TCP to the simulator on loopback), hub and savings Ledger in-process,
one cycle at a time with an injected monotonic clock and wall time, the physics advanced by one
cycle between polls (60 s cycles by default, a 15-minute demand interval, starting 2026-01-20 so
a billing month ends inside it), with simulated-time device, cluster, PCS and grid faults and a
rebuild of loop + hub + ledger every 3 simulated days. It checks the same safety invariants on
every cycle, compares the ledger with a never-restarted reference ledger fed the same cycles, and
samples the RSS by simulated day. Process-level faults (kill -9, database and broker outages)
are the real-time soak's job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.soak_rig import MonthConfig, Soak, SoakConfig, month_markdown, run_month, write_reports

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the fault phase (default 60)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cycle-s", type=float, default=1.0, help="agent cycle (default 1 s, as deployed)")
    ap.add_argument("--mean-gap-s", type=float, default=12.0, help="mean time between fault starts")
    ap.add_argument("--kills", type=int, default=6, help="kill -9 count (most in the first half)")
    ap.add_argument(
        "--no-restarts",
        action="store_true",
        help="no kill -9 or SIGTERM restarts: one agent run for the whole soak (memory trend)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts")
    ap.add_argument("--work", type=Path, default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--month", action="store_true", help="a compressed month in-process (see the module doc)")
    ap.add_argument("--days", type=float, default=30.0, help="--month: simulated days (default 30)")
    args = ap.parse_args()
    if args.month:
        return month(args)
    work = args.work or Path(tempfile.mkdtemp(prefix=f"ems-soak-{args.seed}-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg = SoakConfig(
        seed=args.seed,
        duration_s=args.minutes * 60.0,
        cycle_s=args.cycle_s,
        mean_gap_s=args.mean_gap_s,
        kills=args.kills,
        restarts=not args.no_restarts,
        settle_s=20.0,
        sample_s=10.0,
        warmup_s=60.0,
        progress=True,
    )
    print(f"soak seed {args.seed}: {args.minutes:g} min of faults, work dir {work}", flush=True)
    t0 = time.monotonic()
    result = Soak(cfg, work).run()
    jp, mp = write_reports(result, args.out)
    print(json.dumps(result["ok"], indent=1))
    print(
        f"violations {result['violation_count']}, cycles {result['cycles_total']}, "
        f"wall {time.monotonic() - t0:.0f} s; reports: {jp} {mp}",
        flush=True,
    )
    return finish(result, work, args)


def finish(result: dict[str, Any], work: Path, args: argparse.Namespace) -> int:
    """Exit code from the checks; the work directory is kept when one failed or was asked for."""
    passed = all(result["ok"].values())
    if passed and not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"work files kept in {work}")
    return 0 if passed else 1


def month(args: argparse.Namespace) -> int:
    work = args.work or Path(tempfile.mkdtemp(prefix=f"ems-soak-month-{args.seed}-"))
    cfg = MonthConfig(
        seed=args.seed, days=args.days, cycle_s=60.0 if args.cycle_s == 1.0 else args.cycle_s, progress=True
    )
    print(
        f"compressed month seed {args.seed}: {cfg.days:g} days of {cfg.cycle_s:g} s cycles, work dir {work}", flush=True
    )
    result = asyncio.run(run_month(cfg, work))
    args.out.mkdir(parents=True, exist_ok=True)
    jp, mp = args.out / f"soak-month-{args.seed}.json", args.out / f"soak-month-{args.seed}.md"
    jp.write_text(json.dumps(result, indent=1, default=str))
    mp.write_text(month_markdown(result))
    print(json.dumps(result["ok"], indent=1))
    print(
        f"violations {result['violation_count']}, cycles {result['cycles']}, real {result['real_s']:.0f} s; "
        f"reports: {jp} {mp}",
        flush=True,
    )
    return finish(result, work, args)


if __name__ == "__main__":
    sys.exit(main())
