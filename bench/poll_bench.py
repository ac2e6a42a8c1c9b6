"""Poll a whole simulated site through ModbusDevice and through bare pymodbus clients.

    .venv/bin/python -m bench.poll_bench [--clusters 64] [--pcs 8] [--rounds 15] [--json]

Site: N clusters (bms_sunspec_802), K PCS (half pcs_sunspec_70x, half pcs_vendor_acme) and three
meters (meter_sunspec_203, rack_load_vendor, pv_sunspec_103), each served from a static register
image (drivers.imageserver) on its OWN loopback port (as in agent/sites/demo.toml), by a child
process so the servers' CPU does not count against the poller's event loop (both share the
machine's cores, as the real agent and the real network would not).

Each round polls every device concurrently (asyncio.gather, one connection per device):
- driver: ModbusDevice.poll() -> decoded Readings for every point;
- bare: the same blocks read with bare AsyncModbusTcpClient calls, no decoding.
Rounds alternate driver/bare (and which goes first); medians are reported, with the ratio
driver/bare of the medians and the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusTcpClient

from agent.model.config import DeviceConfig
from drivers.device import ModbusDevice
from drivers.imageserver import ImageServer
from drivers.profile import Profile, load_profile
from tests.test_device import SAMPLES as SAMPLE  # engineering values for every point of every profile

ROOT = Path(__file__).resolve().parent.parent  # the child server runs as `-m bench.poll_bench` from here


def site(clusters: int, pcs: int) -> list[tuple[str, str]]:
    """(device id, profile name) for the whole site."""
    devs = [("grid", "meter_sunspec_203"), ("gpu", "rack_load_vendor"), ("pv", "pv_sunspec_103")]
    devs += [(f"pcs{i + 1}", "pcs_sunspec_70x" if i % 2 == 0 else "pcs_vendor_acme") for i in range(pcs)]
    devs += [(f"c{i + 1:02d}", "bms_sunspec_802") for i in range(clusters)]
    return devs


async def serve(devs: list[tuple[str, str]]) -> None:
    """Child process: one server per device; print the ports as JSON; run until stdin closes."""
    servers = []
    ports = []
    for _, prof in devs:
        p = load_profile(prof)
        srv = ImageServer({1: p.encode_image(SAMPLE[prof])})
        ports.append(await srv.start())
        servers.append(srv)
    print(json.dumps(ports), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for s in servers:
        await s.stop()


async def bare_poll(clients: list[tuple[AsyncModbusTcpClient, Profile]]) -> None:
    async def one(c: AsyncModbusTcpClient, p: Profile) -> None:
        for b in p.blocks:
            if b.table == "holding":
                rr = await c.read_holding_registers(b.start, count=b.count, device_id=1)
            else:
                rr = await c.read_input_registers(b.start, count=b.count, device_id=1)
            assert not rr.isError()

    await asyncio.gather(*(one(c, p) for c, p in clients))


async def bench(clusters: int, pcs: int, rounds: int) -> dict[str, Any]:
    devs = site(clusters, pcs)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.poll_bench",
        "--serve",
        "--clusters",
        str(clusters),
        "--pcs",
        str(pcs),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=ROOT,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        ports: list[int] = json.loads(line)
        profiles = [load_profile(prof) for _, prof in devs]
        devices = [
            ModbusDevice(DeviceConfig(d, "x", prof, "127.0.0.1", port, 1, 0.5, 1), p, stale_after_s=3.0)
            for (d, prof), port, p in zip(devs, ports, profiles, strict=True)
        ]
        clients = []
        for port, p in zip(ports, profiles, strict=True):
            c = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.5, retries=1, reconnect_delay=0)
            await c.connect()
            clients.append((c, p))
        # warm up: connect the drivers, check every value decodes
        first = await asyncio.gather(*(d.poll() for d in devices))
        bad = [(d.id, k) for d, r in zip(devices, first, strict=True) for k, v in r.items() if not v.ok]
        await bare_poll(clients)
        requests = sum(len(p.blocks) for p in profiles)
        t_drv: list[float] = []
        t_bare: list[float] = []

        async def drv() -> None:
            await asyncio.gather(*(d.poll() for d in devices))

        async def timed(fn: Any, out: list[float]) -> None:
            t0 = time.perf_counter()
            await fn()
            out.append(time.perf_counter() - t0)

        for i in range(rounds):  # alternate which goes first: other load on the machine hits both
            if i % 2 == 0:
                await timed(drv, t_drv)
                await timed(lambda: bare_poll(clients), t_bare)
            else:
                await timed(lambda: bare_poll(clients), t_bare)
                await timed(drv, t_drv)
        # the decode share alone (CPU, no I/O): all devices' blocks from their images
        images = {prof: load_profile(prof).encode_image(SAMPLE[prof]) for prof in SAMPLE}
        words = [
            {b: [images[p.name].table(b.table).get(a, 0) for a in range(b.start, b.end)] for b in p.blocks}
            for p in profiles
        ]
        t0 = time.perf_counter()
        n_dec = 20
        for _ in range(n_dec):
            for p, w in zip(profiles, words, strict=True):
                p.decode_blocks(w, {})
        t_decode = (time.perf_counter() - t0) / n_dec
        for d in devices:
            await d.close()
        for c, _ in clients:
            c.close()
    finally:
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
    med_d, med_b = statistics.median(t_drv), statistics.median(t_bare)
    return {
        "devices": len(devs),
        "clusters": clusters,
        "pcs": pcs,
        "meters": 3,
        "servers": "one loopback port per device, in a child process",
        "requests_per_poll": requests,
        "points_per_poll": sum(len(p.points) for p in profiles),
        "rounds": rounds,
        "driver_ms_median": round(med_d * 1000, 2),
        "driver_ms_max": round(max(t_drv) * 1000, 2),
        "bare_ms_median": round(med_b * 1000, 2),
        "bare_ms_max": round(max(t_bare) * 1000, 2),
        "ratio_driver_over_bare": round(med_d / med_b, 3),
        "ratio_paired_median": round(statistics.median(d / b for d, b in zip(t_drv, t_bare, strict=True)), 3),
        "driver_reads_per_s": round(requests / med_d),
        "bare_reads_per_s": round(requests / med_b),
        "decode_ms_whole_site": round(t_decode * 1000, 3),
        "not_good_points_at_warmup": len(bad),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--clusters", type=int, default=64)
    ap.add_argument("--pcs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--json", action="store_true", help="write the results as JSON to stdout")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        asyncio.run(serve(site(a.clusters, a.pcs)))
        return
    r = asyncio.run(asyncio.wait_for(bench(a.clusters, a.pcs, a.rounds), 300))
    if a.json:
        print(json.dumps(r, indent=2))
        return
    print(f"site: {r['devices']} devices ({r['clusters']} clusters, {r['pcs']} PCS, 3 meters), {r['servers']}")
    print(f"{r['requests_per_poll']} requests, {r['points_per_poll']} points per poll; {r['rounds']} rounds")
    print(f"{'':10s} {'median ms':>10s} {'max ms':>8s} {'reads/s':>8s}")
    print(f"{'driver':10s} {r['driver_ms_median']:10.1f} {r['driver_ms_max']:8.1f} {r['driver_reads_per_s']:8d}")
    print(f"{'bare':10s} {r['bare_ms_median']:10.1f} {r['bare_ms_max']:8.1f} {r['bare_reads_per_s']:8d}")
    print(f"driver/bare = {r['ratio_driver_over_bare']:.2f}; decode alone {r['decode_ms_whole_site']:.2f} ms/site")
    if r["not_good_points_at_warmup"]:
        print(f"WARNING: {r['not_good_points_at_warmup']} points not GOOD at warm-up")


if __name__ == "__main__":
    main()
