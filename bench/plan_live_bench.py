"""Predictive dispatch in the running agent: what the planner costs the control loop.

    .venv/bin/python -m bench.plan_live_bench [--speed 60] [--seconds 60]

The whole agent (Runtime) against the Modbus simulators of the demo site on one accelerated clock,
with three days of demand intervals preloaded in its state dir (a warm forecast), run twice with
the same seed: [planner] enabled and disabled. At x60 a 15-min interval passes in 15 s, so the
planner solves every 15 s of real time (plus the first plan at start). Reports, per run, the
cycle time (p50 / p99 / max, ms of real time) over all cycles and over the cycles that ran while
a solve was queued or running in the worker thread, the overruns, and for the planner its jobs
(history + forecast + programme + solve, ms) and HiGHS's solve time, and the cost of one read-out
(GET /api/plan's body, built in the control process).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.live.hub import CycleRecord
from agent.live.plan_view import plan_slots
from agent.model.clock import SiteClock
from tests.agent_harness import agent_on_simulators, sim_site
from tests.test_live_planning import SIMULATION, preload


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


async def run(enabled: bool, speed: float, seconds: float, tmp: Path) -> dict[str, Any]:
    site = sim_site(cycle_s=1.0, simulation=SIMULATION, sections={"planner": {"enabled": enabled}})
    clock = SiteClock(speed, time.time())
    state = tmp / ("on" if enabled else "off")
    preload(state, clock.now(), site.timezone)
    all_ms: list[float] = []
    solving_ms: list[float] = []
    jobs_ms: list[float] = []
    async with agent_on_simulators(state, site, clock=clock, api=False) as h:
        pl = h.rt.planning
        last_job = [float("nan")]

        def watch(rec: CycleRecord) -> None:
            all_ms.append(rec.cycle_ms)
            if pl is not None and pl.solving:
                solving_ms.append(rec.cycle_ms)
            if pl is not None and pl.job_s == pl.job_s and pl.job_s != last_job[0]:
                last_job[0] = pl.job_s
                jobs_ms.append(pl.job_s * 1000.0)

        h.rt.loop.on_cycle.append(watch)
        over0 = h.rt.hub.stats.overruns
        await asyncio.sleep(seconds)
        overruns = h.rt.hub.stats.overruns - over0
        out: dict[str, Any] = {
            "planner": enabled,
            "cycles": len(all_ms),
            "overruns": overruns,
            "cycle_ms": (statistics.median(all_ms), pct(all_ms, 0.99), max(all_ms)),
        }
        if pl is not None:
            solve_ms = [s * 1000.0 for s in pl.replanner.stats.solve_s]
            t0 = time.perf_counter()
            for _ in range(200):
                pl.view()  # what a cycle pays (MQTT reads it every cycle): the slots are cached
            view_s = (time.perf_counter() - t0) / 200
            build_s = float("nan")
            if pl.plan is not None:  # once per plan and slot: the 96 slots built afresh
                t0 = time.perf_counter()
                for _ in range(20):
                    plan_slots(pl.plan, 0, site.timezone)
                build_s = (time.perf_counter() - t0) / 20
            out |= {
                "cycles_while_solving": len(solving_ms),
                "cycle_ms_while_solving": (
                    statistics.median(solving_ms) if solving_ms else float("nan"),
                    pct(solving_ms, 0.99),
                    max(solving_ms, default=float("nan")),
                ),
                "solves": len(solve_ms),
                "failures": pl.stats[1],
                "job_ms": (statistics.median(jobs_ms) if jobs_ms else float("nan"), max(jobs_ms, default=float("nan"))),
                "solve_ms": (
                    statistics.median(solve_ms) if solve_ms else float("nan"),
                    max(solve_ms, default=float("nan")),
                ),
                "view_ms": view_s * 1000.0,
                "slots_ms": build_s * 1000.0,
                "reason": pl.reason,
            }
    return out


def show(r: dict[str, Any]) -> None:
    p50, p99, mx = r["cycle_ms"]
    line = f"planner {'on ' if r['planner'] else 'off'}: {r['cycles']} cycles, {r['overruns']} overruns,"
    print(f"{line} cycle p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {mx:.1f} ms")
    if r["planner"]:
        s50, s99, smx = r["cycle_ms_while_solving"]
        n = r["cycles_while_solving"]
        print(f"  {n} cycles while a solve ran: p50 {s50:.1f} ms, p99 {s99:.1f} ms, max {smx:.1f} ms")
        job, solve = r["job_ms"], r["solve_ms"]
        print(
            f"  {r['solves']} solves ({r['failures']} failed): job p50 {job[0]:.0f} ms, max {job[1]:.0f} ms,"
            f" HiGHS p50 {solve[0]:.0f} ms, max {solve[1]:.0f} ms; read-out {r['view_ms']:.3f} ms"
            f" (slots built once per slot: {r['slots_ms']:.2f} ms);"
            f" last reason: {r['reason']}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", type=float, default=60.0)
    ap.add_argument("--seconds", type=float, default=60.0, help="real seconds per run")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        for enabled in (True, False):
            show(asyncio.run(run(enabled, a.speed, a.seconds, Path(d))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
