"""Telemetry throughput on this machine, against a real VictoriaMetrics (InfluxDB v2 write API).

    .venv/bin/python -m bench.telemetry_bench [--cycles 600] [--clusters 128]

Measures, for a site of `--clusters` clusters with the full schema:
1. the caller's cost of `submit()` (what a control cycle pays), p50/p99/max;
2. sustained write rate into VictoriaMetrics: cycles pushed as fast as the writer takes them,
   read back and counted (none lost or duplicated);
3. spool write rate (database down) and replay rate (database back), read back and counted.
Bounded: at most `--cycles` cycles per phase and `--timeout` seconds per wait.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.live.audit import AuditLog
from agent.live.hub import CycleRecord, Hub
from agent.telemetry import InfluxSink, start_telemetry
from tests.conftest import VictoriaMetrics
from tests.fakes import Cycles, demo_site


def wait(cond: object, timeout_s: float) -> float:
    t0 = time.monotonic()
    while not cond():  # type: ignore[operator]
        if time.monotonic() - t0 > timeout_s:
            raise SystemExit(f"timed out after {timeout_s} s")
        time.sleep(0.002)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=600)
    ap.add_argument("--clusters", type=int, default=128)
    ap.add_argument("--timeout", type=float, default=60.0)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ems-tbench-"))
    vm = VictoriaMetrics("/usr/bin/victoria-metrics", tmp / "vm", tmp / "vm.log")
    vm.start()
    try:
        site = demo_site().with_clusters(a.clusters)
        site = replace(site, control=replace(site.control, ramp_limit_w_per_s=0.0))
        tel = {
            "url": vm.url,
            "org": "ems",
            "bucket": "ems",
            "token": "bench",
            "batch_points": 5000,
            "flush_interval_s": 0.2,
            "queue_records": 100_000,
            "retry_min_s": 0.05,
            "retry_max_s": 0.2,
        }
        hub = Hub(replace(site, sections={"telemetry": tel}), AuditLog(None), clock=time.monotonic)
        t0 = datetime.now(ZoneInfo("UTC")).replace(microsecond=0) - timedelta(hours=2)
        cyc = Cycles(hub, t0)
        print(f"building {2 * a.cycles} records of a {a.clusters}-cluster site ...", flush=True)
        recs: list[CycleRecord] = [cyc.next(publish=False) for _ in range(2 * a.cycles)]
        sink = start_telemetry(hub.site, hub, tmp / "state")
        assert isinstance(sink, InfluxSink)

        # 1 + 2: live writes, as fast as possible.
        lat = []
        t_start = time.monotonic()
        for r in recs[: a.cycles]:
            t = time.perf_counter()
            sink.submit(r)
            lat.append((time.perf_counter() - t) * 1e6)
        n = a.cycles
        done = lambda: sink.cycles_in == n and sink.points_out == sink.points_in == sink.sent_points  # noqa: E731
        wait(done, a.timeout)
        live_s = time.monotonic() - t_start
        live_pts = sink.sent_points
        per_cycle = live_pts / a.cycles
        lat.sort()

        # 3: the database goes away, then comes back.
        vm.stop()
        t = time.monotonic()
        for r in recs[a.cycles :]:
            sink.submit(r)
        wait(lambda: sink.cycles_in == 2 * n and sink.points_out == sink.points_in, a.timeout)
        spool_s = time.monotonic() - t
        spooled = sink.spooled_points
        st = sink.spool.stats()
        vm.start()
        t = time.monotonic()
        replay_s = wait(lambda: sink.spool.empty, a.timeout)
        sink.close()

        rows = vm.export('site_seq{site="demo"}')
        seqs = rows[0]["values"] if rows else []
        n_series = len(vm.export('cluster_soc_pct{site="demo"}'))
        ok = seqs == [float(i) for i in range(1, 2 * a.cycles + 1)] and n_series == a.clusters
        print()
        print(f"site: {a.clusters} clusters, {per_cycle:.0f} points per cycle (full schema)")
        p50, p99 = lat[len(lat) // 2], lat[int(0.99 * len(lat))]
        print(
            f"submit() on the caller: p50 {p50:.1f} us, p99 {p99:.1f} us,"
            f" max {lat[-1]:.1f} us  (mean {statistics.fmean(lat):.1f} us)"
        )
        rate = live_pts / live_s
        print(
            f"live writes: {live_pts} points in {live_s:.2f} s = {rate:,.0f} points/s"
            f"  (need {per_cycle:.0f}/s at 1 s cycles; headroom {rate - per_cycle:,.0f} points/s)"
        )
        print(
            f"spool writes (database down): {spooled} points in {spool_s:.2f} s"
            f" = {spooled / spool_s:,.0f} points/s,"
            f" {st.bytes / 1e6:.2f} MB compressed ({st.bytes / max(st.points, 1):.1f} B/point)"
        )
        print(f"replay (database back): {spooled} points in {replay_s:.2f} s = {spooled / replay_s:,.0f} points/s")
        print(f"read back: {len(seqs)} cycles, {n_series} cluster series; every cycle once and in order: {ok}")
        return 0 if ok else 1
    finally:
        vm.stop()


if __name__ == "__main__":
    raise SystemExit(main())
