"""API latency under load: ~200 requests/s plus 20 SSE clients, from a second process on loopback.

    .venv/bin/python bench/api_load.py [--rate 200] [--sse 20] [--seconds 15]

The parent process runs what the agent runs: a Hub, a 1 s publisher of real SiteSnapshot/Plan
objects (demo site, H100 trace; the API tests' feed) and the API on uvicorn on a free loopback
port. It measures how late each cycle's publish was (does API load slow the loop?) and its own
CPU time. The child process is the load: an open-loop schedule of GETs over the read endpoints
(latency counted from the scheduled send time, so a stall cannot hide itself) and N SSE
clients counting the cycles they receive. Bounded: --seconds of load, then everything stops.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATHS = ["/api/site", "/api/live", "/api/clusters", "/api/demand", "/api/alarms", "/metrics", "/healthz"]


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))] if s else float("nan")


# --- child: the load -------------------------------------------------------------------------
async def sse_client(url: str, until: float, counts: list[int], i: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=None) as c, c.stream("GET", "/api/stream") as r:
        async for line in r.aiter_lines():
            if line.startswith("event: cycle"):
                counts[i] += 1
            if time.monotonic() > until:
                return


async def load(url: str, rate: float, n_sse: int, seconds: float) -> dict[str, Any]:
    counts = [0] * n_sse
    start = time.monotonic() + 1.0  # let the SSE clients connect first
    until = start + seconds
    sse = [asyncio.create_task(sse_client(url, until, counts, i)) for i in range(n_sse)]
    lat: list[float] = []
    service: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as c:

        async def one(path: str, sched: float) -> None:
            t0 = time.monotonic()
            try:
                r = await c.get(path)
                ok = r.status_code == 200
                key = str(r.status_code)
            except httpx.HTTPError as e:
                ok, key = False, type(e).__name__
            t1 = time.monotonic()
            if ok:
                lat.append((t1 - sched) * 1000)
                service.append((t1 - t0) * 1000)
            else:
                errors[key] = errors.get(key, 0) + 1

        await asyncio.sleep(max(0.0, start - time.monotonic()))
        tasks: list[asyncio.Task[None]] = []
        n_total = int(rate * seconds)
        for k in range(n_total):
            sched = start + k / rate
            delay = sched - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(PATHS[k % len(PATHS)], sched)))
        await asyncio.gather(*tasks)
        sent_s = time.monotonic() - start
    for t in sse:
        t.cancel()
    await asyncio.gather(*sse, return_exceptions=True)
    return {
        "requests": n_total,
        "ok": len(lat),
        "errors": errors,
        "achieved_rps": round(len(lat) / sent_s, 1),
        "latency_ms": {
            "p50": pct(lat, 0.5),
            "p90": pct(lat, 0.9),
            "p99": pct(lat, 0.99),
            "max": max(lat, default=0),
        },
        "service_ms": {"p50": pct(service, 0.5), "p99": pct(service, 0.99)},
        "sse_clients": n_sse,
        "sse_cycles_min": min(counts, default=0),
        "sse_cycles_max": max(counts, default=0),
    }


# --- parent: the agent side ------------------------------------------------------------------
async def agent_side(args: argparse.Namespace) -> dict[str, Any]:
    from agent.api import ApiServer, create_app
    from agent.audit import AuditLog
    from agent.config import load_site
    from agent.hub import Hub
    from tests.test_api_feed import DEMO, SiteFeed

    site = load_site(DEMO)
    hub = Hub(site, AuditLog(None), clock=time.monotonic)
    feed = SiteFeed(hub, datetime.now(site.timezone))
    feed.publish()
    srv = ApiServer(create_app(hub, None, open_read=True), "127.0.0.1", 0)
    server = asyncio.create_task(srv.run())
    await srv.started()
    late: list[float] = []
    publish_ms: list[float] = []

    async def loop() -> None:
        period = site.cycle_s
        nxt = time.monotonic() + period
        while True:
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))
            late.append((time.monotonic() - nxt) * 1000)
            t0 = time.perf_counter()
            feed.publish()
            publish_ms.append((time.perf_counter() - t0) * 1000)
            nxt += period

    publisher = asyncio.create_task(loop())
    cpu0, wall0 = time.process_time(), time.monotonic()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        srv.url,
        "--rate",
        str(args.rate),
        "--sse",
        str(args.sse),
        "--seconds",
        str(args.seconds),
        stdout=subprocess.PIPE,
    )
    try:
        out, _ = await asyncio.wait_for(child.communicate(), args.seconds + 60)
    finally:
        if child.returncode is None:
            child.kill()
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    publisher.cancel()
    srv.stop()
    await asyncio.wait_for(server, 10)
    result: dict[str, Any] = json.loads(out)
    result["server"] = {
        "cpu_pct_of_one_core": round(100 * cpu / wall, 1),
        "cycle_late_ms": {"p50": pct(late, 0.5), "p99": pct(late, 0.99), "max": max(late, default=0)},
        "publish_ms": {"p50": pct(publish_ms, 0.5), "max": max(publish_ms, default=0)},
        "cycles": len(late),
    }
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0, help="GET requests per second")
    ap.add_argument("--sse", type=int, default=20, help="concurrent SSE clients")
    ap.add_argument("--seconds", type=float, default=15.0, help="duration of the load (bounded: <= 120)")
    ap.add_argument("--client", help=argparse.SUPPRESS)  # internal: run as the load process
    args = ap.parse_args()
    if not 0 < args.seconds <= 120 or not 0 < args.rate <= 2000 or not 0 <= args.sse <= 200:
        ap.error("--seconds in (0, 120], --rate in (0, 2000], --sse in [0, 200]")
    if args.client:
        print(json.dumps(asyncio.run(load(args.client, args.rate, args.sse, args.seconds))))
        return 0
    res = asyncio.run(agent_side(args))
    print(json.dumps(res, indent=2, default=lambda x: round(x, 2)))
    lat = res["latency_ms"]
    print(
        f"\n{res['achieved_rps']} req/s + {res['sse_clients']} SSE clients: "
        f"p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms; "
        f"errors {sum(res['errors'].values())}; "
        f"cycle lateness p99 {res['server']['cycle_late_ms']['p99']:.1f} ms",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
