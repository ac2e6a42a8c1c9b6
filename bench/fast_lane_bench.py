"""Issue 14 bench: the fast lane's budget (Modbus requests/s, CPU, tick latency, missed ticks).

The simulated site runs in this process (real time, ticking every 50 ms, real pymodbus servers, one
per device; bench/loop_bench.py's site: one 630 kW PCS per 4 clusters, a grid and a load meter).
The agent runs in a child process (this script with --child): the real AgentLoop at 1 s and, unless
the lane is off, the real FastLane (agent/live/fast_lane.py) on the same device objects, over
loopback TCP. The child measures its own process CPU and the lane's counters over `--seconds`
after a warm-up, and prints them as JSON. Each size (clusters) runs with the lane off and at each
period, `--runs` times; the figures are medians. The lane's CPU is the child's with the lane less
the child's without.

    .venv/bin/python bench/fast_lane_bench.py [--clusters 16 64] [--fast-lane-s 0.2 0.1] \
        [--seconds 20] [--runs 3]

`--live-ramp S`: instead, the grid ramp live, in real time, over Modbus TCP: the site's load is the
measured 8xH100 trace x `--nodes` (simulators' "trace" load, PUE 1), 16 clusters, 200 kW/s, the
agent with the lane off and at each period for S seconds each; the share of seconds whose 1 s
average grid import (from the simulated meter's energy counters at every physics tick) moved by
more than the limit, and the same of the load (no battery).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from agent.economics.tariff import load_tariff
from agent.live.audit import AuditLog
from agent.live.fast_lane import FastLane
from agent.live.hub import Hub
from agent.live.loop import AgentLoop
from agent.logs import setup_logging
from agent.model.config import load_site
from agent.model.ramp_metrics import ramp_stats
from simulators.site import SimulatedSite

# the sibling bench's site (run as a script, as below, its own directory comes first on the import path)
from loop_bench import CLUSTERS_PER_PCS, free_port, site_toml  # isort: skip

ROOT = Path(__file__).resolve().parent.parent
WARMUP_S = 3.0
LIMIT_W_PER_S = 200_000.0  # loop_bench's site


def bench_site(clusters: int, fast_lane_s: float, work: Path, nodes: int = 0) -> Path:
    """loop_bench's site of `clusters`, with the fast lane at `fast_lane_s` (0: off) and, with
    `nodes`, the measured training trace x nodes as its load."""
    text = site_toml(clusters, 1.0, free_port(), 21000 + clusters * 3)
    if nodes:
        text = text.replace('load = "inference"', f'load = "trace"\nnodes = {nodes}')
    if fast_lane_s > 0.0:
        limit = "ramp_limit_w_per_s = 200_000"
        text = text.replace(limit, f"{limit}\nfast_lane_s = {fast_lane_s}")
    path = work / f"site-{clusters}-{fast_lane_s:g}.toml"
    path.write_text(text)
    return path


async def child(site_file: Path, seconds: float) -> dict[str, Any]:
    """The agent's loop (and lane) against the site for WARMUP_S + `seconds`; its own figures."""
    site = load_site(site_file)
    hub = Hub(site, AuditLog(site_file.parent / f"audit-{os.getpid()}.jsonl"), clock=time.monotonic)
    assert site.tariff_path is not None
    loop = AgentLoop(site, hub, load_tariff(site.tariff_path))
    lane = FastLane(loop) if site.control.fast_lane_s > 0.0 else None
    tasks = [asyncio.create_task(loop.run())]
    if lane is not None:
        tasks.append(asyncio.create_task(lane.run()))
    await asyncio.sleep(WARMUP_S)
    proc = psutil.Process()
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
    s0 = lane.stats.as_dict() if lane is not None else {}
    cycles0 = hub.stats.cycles
    if lane is not None:
        lane.stats.tick_ms.clear()
    hub.stats.window.clear()
    await asyncio.sleep(seconds)
    cpu, wall = sum(proc.cpu_times()[:2]) - cpu0, time.monotonic() - t0
    s1 = lane.stats.as_dict() if lane is not None else {}
    cyc = hub.stats.summary()
    out: dict[str, Any] = {
        "cpu_pct": 100.0 * cpu / wall,
        "wall_s": wall,
        "cycles": hub.stats.cycles - cycles0,
        "cycle_p99_ms": cyc["p99_ms"],
        "overruns": cyc["overruns"],
    }
    if lane is not None:
        ticks = s1["ticks"] - s0["ticks"]
        out |= {
            "ticks": ticks,
            "ticks_per_s": ticks / wall,
            "requests_per_s": (s1["requests"] - s0["requests"]) / wall,
            "wrote_share": (s1["wrote"] - s0["wrote"]) / ticks if ticks else 0.0,
            "missed": s1["missed"] - s0["missed"],
            "write_failures": s1["write_failures"] - s0["write_failures"],
            "tick_ms_p50": s1["tick_ms_p50"],
            "tick_ms_p99": s1["tick_ms_p99"],
        }
        lane.stop()
    loop.stop()
    await asyncio.gather(*tasks)
    return out


class MeterLog(SimulatedSite):
    """The simulated site, noting (plant time s, grid Wh, load Wh) each time it refreshes its
    register images (after every physics tick, or batch of ticks when it catches up)."""

    def refresh(self) -> None:
        super().refresh()
        m = self.model
        if not hasattr(self, "rows"):  # (the constructor refreshes once)
            self.rows: list[tuple[float, float, float]] = []
        self.rows.append((m.plant.t, m.grid.import_wh - m.grid.export_wh, m.load_meter.import_wh))

    def over_limit(self, skip_s: float) -> dict[str, float]:
        """Share of seconds over LIMIT (1 s averages of the grid and of the load from the counters,
        interpolated at whole seconds of plant time), after `skip_s`."""
        a = np.asarray(self.rows)
        secs = np.arange(np.ceil(a[0, 0] + skip_s), np.floor(a[-1, 0]) + 1.0)
        out: dict[str, float] = {"seconds": float(len(secs) - 2)}
        for name, col in (("grid", 1), ("load", 2)):
            avg = np.diff(np.interp(secs, a[:, 0], a[:, col])) * 3600.0  # W over each second
            r = ramp_stats(secs[1:], avg, LIMIT_W_PER_S)
            out[f"{name}_over_limit_share"] = r.over_limit_s / r.samples if r.samples else 0.0
            out[f"{name}_p99_w_per_s"] = r.p99_w_per_s
        return out


async def one_run(clusters: int, fast_lane_s: float, seconds: float, work: Path, nodes: int = 0) -> dict[str, Any]:
    """The site served here, the agent in a child process; the child's JSON (and with `nodes`, the
    trace load x nodes and the grid ramp the simulated meter saw)."""
    site_file = bench_site(clusters, fast_lane_s, work, nodes)
    sim = MeterLog(load_site(site_file), control_port=0)
    await sim.start(ticking=True)
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(site_file), "--seconds", str(seconds)]
        p = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, stdout=subprocess.PIPE)
        out, _ = await p.communicate()  # the simulator keeps answering on this event loop meanwhile
        if p.returncode != 0:
            raise RuntimeError(f"child for {site_file} exited with {p.returncode}")
        res = dict(json.loads(out))
        if nodes:
            res |= sim.over_limit(WARMUP_S + 5.0)  # the child starting up, then its warm-up
        return res
    finally:
        await sim.stop()


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0] if isinstance(runs[0][k], (int, float))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, nargs="*", default=[16, 64])
    ap.add_argument("--fast-lane-s", type=float, nargs="*", default=[0.2, 0.1])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--live-ramp", type=float, default=0.0, help="seconds per run of the live ramp check")
    ap.add_argument("--nodes", type=int, default=600, help="8xH100 nodes of the live ramp check's load")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    setup_logging("WARNING")
    if args.child is not None:
        print(json.dumps(asyncio.run(child(args.child, args.seconds))))
        return 0
    if args.live_ramp > 0.0:
        with tempfile.TemporaryDirectory() as d:
            live = [
                {"fast_lane_s": fast, **asyncio.run(one_run(16, fast, args.live_ramp, Path(d), args.nodes))}
                for fast in [0.0, *args.fast_lane_s]
            ]
        print(json.dumps({"nodes": args.nodes, "runs": live}, indent=2))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in args.clusters:
            base: dict[str, Any] = {}
            for fast in [0.0, *args.fast_lane_s]:
                runs = []
                for r in range(args.runs):
                    runs.append(asyncio.run(one_run(n, fast, args.seconds, Path(d))))
                    print(f"  {n} clusters, lane {fast or 'off'}: run {r + 1}/{args.runs}: {runs[-1]}", file=sys.stderr)
                m = median_of(runs)
                if fast == 0.0:
                    base = m
                row = {
                    "clusters": n,
                    "pcs": (n + CLUSTERS_PER_PCS - 1) // CLUSTERS_PER_PCS,
                    "fast_lane_s": fast,
                    "runs": args.runs,
                    "seconds": args.seconds,
                    **m,
                }
                if fast > 0.0:
                    row["lane_cpu_pct"] = m["cpu_pct"] - base["cpu_pct"]
                rows.append(row)
    machine = f"{os.cpu_count()} cpu, {psutil.virtual_memory().total / 2**30:.0f} GiB, load {os.getloadavg()[0]:.1f}"
    print(json.dumps({"machine": machine, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
