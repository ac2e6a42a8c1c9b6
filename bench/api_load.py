"""Does API load slow the control loop? The real agent on the simulators, loaded from another process.

    .venv/bin/python -m bench.api_load [--rate 200] [--sse 20] [--seconds 15] [--runs 3] [--cycle-s 0.25]

Three processes on loopback, as in a deployment where the plant is elsewhere:
- the simulated demo site (12 clusters, 4 PCS, 3 meters over Modbus TCP on free ports), a child;
- the agent: the real Runtime (control loop, ledger, telemetry spool), this process, with
  `demo=True` (open reads, as `ems-agent demo`) and its devices rewired to the simulator's ports,
  and its API process (uvicorn, a child of this one: agent/api/process.py);
- the load, a child: an open-loop schedule of GETs over the read endpoints at --rate (latency counted
  from the scheduled send time, so a stall cannot hide itself) plus --sse clients on /api/stream
  counting the cycles they receive.

Each run measures a baseline window (no load, --seconds) and then a loaded window (--seconds), in the
same agent, back to back; the cycle time is the loop's own `cycle_ms` (poll + decide + write) of
every cycle that started inside the window. Reported: per-run p50/p99 and the loaded/baseline ratio,
and the median over runs (the issue's target: p99 unchanged within 10 %), and the CPU each process
used per window (% of one core: agent, API process, simulator, load client; 2 cores on the
reference machine, so the client and the simulator compete with the agent here, unlike on a site).
Bounded: every child has a deadline and the simulator exits when this process's pipe to it closes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

PATHS = ["/api/site", "/api/live", "/api/clusters", "/api/demand", "/api/alarms", "/metrics", "/healthz"]
DRAIN_S = 10.0  # after the last scheduled request, wait at most this long for the stragglers
CLIENT_SLACK_S = DRAIN_S + 20.0  # the load process's own deadline: --seconds + this
SIM_LIFETIME_S = 1500.0  # the simulator child stops by itself after this, whatever happens here


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


def summary(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50": pct(xs, 0.5), "p99": pct(xs, 0.99), "max": max(xs, default=float("nan"))}


# --- child 1: the simulated site -------------------------------------------------------------
async def simulate(cycle_s: float) -> None:
    from simulators.site import SimulatedSite
    from tests.agent_harness import sim_site

    sim = SimulatedSite(sim_site(cycle_s=cycle_s), any_port=True, control_port=0)
    await sim.start()
    print(json.dumps({"ports": sim.ports}), flush=True)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin.read(), SIM_LIFETIME_S)  # EOF: the agent side is done
    finally:
        await sim.stop()


# --- child 2: the load -----------------------------------------------------------------------
# A small raw HTTP/1.1 keep-alive client: httpx's connection pool spends CPU per waiting request,
# and on a busy machine the load generator (not the agent) became the bottleneck.
async def http_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def sse_client(host: str, port: int, counts: list[int], i: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        await writer.drain()
        while line := await reader.readline():
            if line.startswith(b"event: cycle"):
                counts[i] += 1
    finally:
        writer.close()


async def load(url: str, rate: float, n_sse: int, seconds: float, conns: int = 32) -> dict[str, Any]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    counts = [0] * n_sse
    sse = [asyncio.create_task(sse_client(host, int(port), counts, i)) for i in range(n_sse)]
    lat: list[float] = []
    service: list[float] = []
    errors: dict[str, int] = {}
    queue: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while True:
                path, sched = await queue.get()
                t0 = time.monotonic()
                try:
                    status = await http_get(reader, writer, path)
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, int(port))
                    continue
                finally:
                    queue.task_done()
                t1 = time.monotonic()
                if status == 200:
                    lat.append((t1 - sched) * 1000)
                    service.append((t1 - t0) * 1000)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(conns)]
    start = time.monotonic() + 1.0  # let the connections open first
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    counts[:] = [0] * n_sse  # count only the events of the measured window
    n_total = int(rate * seconds)
    for k in range(n_total):
        sched = start + k / rate
        delay = sched - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((PATHS[k % len(PATHS)], sched))
    end = time.monotonic()  # the window the agent side measures: while requests were being sent
    sse_events = list(counts)
    with contextlib.suppress(TimeoutError):  # an agent that cannot keep up must not hang the bench
        await asyncio.wait_for(queue.join(), DRAIN_S)
    if queue.qsize():
        errors[f"unsent after +{DRAIN_S:g} s"] = queue.qsize()
    drained = time.monotonic()
    cpu_s = time.process_time()
    for t in workers + sse:
        t.cancel()
    await asyncio.gather(*workers, *sse, return_exceptions=True)
    return {
        "t_start": start,  # CLOCK_MONOTONIC: the same clock in every process on this machine
        "t_end": end,
        "requests": n_total,
        "ok": len(lat),
        "errors": errors,
        "achieved_rps": round(len(lat) / (drained - start), 1),  # answered / (first send .. last answer)
        "latency_ms": summary(lat),  # from the scheduled send time (open loop)
        "service_ms": summary(service),  # from the actual send on a free connection
        "sse_clients": n_sse,
        "sse_events_min": min(sse_events, default=0),
        "sse_events_max": max(sse_events, default=0),
        "sse_events_total": sum(sse_events),
        "client_cpu_s": cpu_s,
    }


# --- this process: the agent -----------------------------------------------------------------
def cpu_s(pid: int | None) -> float:
    """CPU time (user + system) of a process so far, s; 0 if it is gone."""
    if pid is None:
        return 0.0
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


class Cycles:
    """Every cycle's start (monotonic) and cycle_ms, from the loop's own callback."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float]] = []

    def __call__(self, rec: Any) -> None:
        self.rows.append((rec.snapshot.t_mono - rec.poll_ms / 1000.0, rec.cycle_ms))

    def window(self, t0: float, t1: float) -> list[float]:
        return [ms for t, ms in self.rows if t0 <= t < t1]


async def run_load(url: str, args: argparse.Namespace) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.api_load", "--client", url, "--rate", str(args.rate), "--sse", str(args.sse),
        "--seconds", str(args.seconds), stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(child.communicate(), args.seconds + CLIENT_SLACK_S + 30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    result: dict[str, Any] = json.loads(out)
    return result


async def agent_side(args: argparse.Namespace) -> dict[str, Any]:
    from agent.live.runtime import ANY_PORT, Runtime
    from tests.agent_harness import sim_site, wired

    sim = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.api_load", "--simulate", "--cycle-s", str(args.cycle_s),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert sim.stdin is not None and sim.stdout is not None
    try:
        ports = json.loads(await asyncio.wait_for(sim.stdout.readline(), 30))["ports"]
        with tempfile.TemporaryDirectory(prefix="ems-bench-") as state:
            rt = Runtime(wired(sim_site(cycle_s=args.cycle_s), ports), Path(state), api_port=ANY_PORT, demo=True)
            cycles = Cycles()
            rt.loop.on_cycle.append(cycles)
            task = asyncio.create_task(rt.run())
            try:
                await asyncio.sleep(args.warmup)
                assert rt.api is not None and rt.hub.latest is not None, "the agent did not start"
                runs: list[dict[str, Any]] = []
                for i in range(args.runs):
                    api_pid = rt.api.pid
                    over0, cpu0, b0 = rt.hub.stats.overruns, time.process_time(), time.monotonic()
                    others0 = (cpu_s(api_pid), cpu_s(sim.pid))
                    await asyncio.sleep(args.seconds)
                    b1, cpu1, over1 = time.monotonic(), time.process_time(), rt.hub.stats.overruns
                    others1 = (cpu_s(api_pid), cpu_s(sim.pid))
                    res = await run_load(rt.api.url, args)
                    cpu2, over2, b2 = time.process_time(), rt.hub.stats.overruns, time.monotonic()
                    others2 = (cpu_s(api_pid), cpu_s(sim.pid))
                    base = summary(cycles.window(b0, b1))
                    loaded = summary(cycles.window(res["t_start"], res["t_end"]))
                    res["cycles_in_window"] = loaded["n"]
                    runs.append(
                        {
                            "baseline_cycle_ms": base,
                            "loaded_cycle_ms": loaded,
                            "p99_ratio": loaded["p99"] / base["p99"],
                            "p50_ratio": loaded["p50"] / base["p50"],
                            "overruns": {"baseline": over1 - over0, "loaded": over2 - over1},
                            "agent_cpu_pct_of_one_core": {
                                "baseline": round(100 * (cpu1 - cpu0) / (b1 - b0), 1),
                                "loaded": round(100 * (cpu2 - cpu1) / (b2 - b1), 1),
                            },
                            "cpu_pct_of_one_core_loaded": {
                                "agent": round(100 * (cpu2 - cpu1) / (b2 - b1), 1),
                                "api_process": round(100 * (others2[0] - others1[0]) / (b2 - b1), 1),
                                "simulator": round(100 * (others2[1] - others1[1]) / (b2 - b1), 1),
                                "load_client": round(100 * res["client_cpu_s"] / (b2 - b1), 1),
                            },
                            "api_process_cpu_pct_baseline": round(100 * (others1[0] - others0[0]) / (b1 - b0), 1),
                            "api_process_restarts": rt.api.restarts,
                            "load": res,
                        }
                    )
                    r = runs[-1]
                    cpu = r["cpu_pct_of_one_core_loaded"]
                    print(
                        f"run {i + 1}: cycle p50/p99 {base['p50']:.1f}/{base['p99']:.1f} ms -> "
                        f"{loaded['p50']:.1f}/{loaded['p99']:.1f} ms under load (p99 x{r['p99_ratio']:.2f}); "
                        f"API p50/p99 {res['latency_ms']['p50']:.1f}/{res['latency_ms']['p99']:.1f} ms at "
                        f"{res['achieved_rps']} req/s, SSE events {res['sse_events_total']}; CPU % agent "
                        f"{cpu['agent']}, api {cpu['api_process']}, sim {cpu['simulator']}, "
                        f"client {cpu['load_client']}",
                        file=sys.stderr,
                        flush=True,
                    )
            finally:
                rt.stop()
                await asyncio.wait_for(task, 20)
    finally:
        sim.stdin.close()  # the simulator's cue to stop
        try:
            await asyncio.wait_for(sim.wait(), 10)
        except TimeoutError:
            sim.kill()
            await sim.wait()

    def med(key: str, sub: str | None = None) -> float:
        return float(statistics.median(r[key][sub] if sub else r[key] for r in runs))

    return {
        "config": {
            "rate": args.rate, "sse": args.sse, "seconds": args.seconds, "runs": args.runs,
            "cycle_s": args.cycle_s, "site": "demo (12 clusters, 4 PCS, 3 meters = 19 devices)",
        },
        "median": {
            "baseline_cycle_p50_ms": med("baseline_cycle_ms", "p50"),
            "baseline_cycle_p99_ms": med("baseline_cycle_ms", "p99"),
            "loaded_cycle_p50_ms": med("loaded_cycle_ms", "p50"),
            "loaded_cycle_p99_ms": med("loaded_cycle_ms", "p99"),
            "p99_ratio": med("p99_ratio"),
            "p50_ratio": med("p50_ratio"),
            "api_latency_p50_ms": statistics.median(r["load"]["latency_ms"]["p50"] for r in runs),
            "api_latency_p99_ms": statistics.median(r["load"]["latency_ms"]["p99"] for r in runs),
            "achieved_rps": statistics.median(r["load"]["achieved_rps"] for r in runs),
        },
        "runs": runs,
    }  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="GET requests per second")
    ap.add_argument("--sse", type=int, default=20, help="concurrent SSE clients")
    ap.add_argument("--seconds", type=float, default=15.0, help="length of each window (bounded: <= 120)")
    ap.add_argument("--runs", type=int, default=3, help="baseline + loaded window pairs (<= 10)")
    ap.add_argument("--cycle-s", type=float, default=0.25, help="the agent's control period (demo site: 1.0)")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds before the first window")
    ap.add_argument("--client", help=argparse.SUPPRESS)  # internal: run as the load process
    ap.add_argument("--simulate", action="store_true", help=argparse.SUPPRESS)  # internal: the simulators
    args = ap.parse_args()
    if not (0 < args.seconds <= 120 and 0 < args.rate <= 2000 and 0 <= args.sse <= 200 and 1 <= args.runs <= 10):
        ap.error("--seconds in (0, 120], --rate in (0, 2000], --sse in [0, 200], --runs in [1, 10]")
    if not (0.2 <= args.cycle_s <= 5.0 and 0 <= args.warmup <= 60):
        ap.error("--cycle-s in [0.2, 5], --warmup in [0, 60]")
    if args.simulate:
        asyncio.run(simulate(args.cycle_s))
        return 0
    if args.client:
        work = load(args.client, args.rate, args.sse, args.seconds)
        print(json.dumps(asyncio.run(asyncio.wait_for(work, args.seconds + CLIENT_SLACK_S))))
        return 0
    res = asyncio.run(agent_side(args))
    print(json.dumps(res, indent=2, default=lambda x: round(x, 2)))
    m = res["median"]
    print(
        f"\nmedian of {args.runs} runs, {args.rate:g} req/s + {args.sse} SSE clients, cycle_s {args.cycle_s:g}: "
        f"cycle p50 {m['baseline_cycle_p50_ms']:.1f} -> {m['loaded_cycle_p50_ms']:.1f} ms, "
        f"p99 {m['baseline_cycle_p99_ms']:.1f} -> {m['loaded_cycle_p99_ms']:.1f} ms (x{m['p99_ratio']:.2f}); "
        f"API p50 {m['api_latency_p50_ms']:.1f} ms, p99 {m['api_latency_p99_ms']:.1f} ms at {m['achieved_rps']} req/s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
