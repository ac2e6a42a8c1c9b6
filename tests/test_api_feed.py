"""A small publisher for the API tests: real SiteSnapshot/Plan objects from the demo site, one per cycle.

The GPU load is the measured H100 training trace (/work/shared/data, grantwilkins/training_profile)
scaled to 400 nodes; the battery takes the fast swings so the grid ramps at most `ramp_w_per_s`,
as the ramp controller would. This module holds no tests; test_api*.py and the browser test use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from agent.api.bridge import ApiBridge
from agent.api.mirror import Mirror
from agent.live.hub import CycleRecord, Hub
from agent.model.plan import Bound, Plan
from agent.model.snapshot import ClusterSnapshot, ClusterStatus, Measured, PcsSnapshot, PcsStatus, SiteSnapshot

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "agent" / "sites" / "demo.toml"
TRACE = Path("/work/shared/data/h100-node-training-100stepsync.csv")
NODES = 400
BASE_W = 300_000.0  # cooling and the rest of the site
PV_W = 120_000.0


def load_trace() -> list[float]:
    """The node trace resampled to 1 s (every value at the first sample of each second)."""
    out: list[float] = []
    with TRACE.open() as f:
        for row in csv.DictReader(f):
            t = float(row["time_seconds"])
            if t >= len(out):
                out.append(float(row["power_watts"]))
    return out


class FakeClock:
    """Injected monotonic clock: tests move time, nothing sleeps to expire an override."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@dataclass
class SiteFeed:
    hub: Hub
    start: datetime
    ramp_w_per_s: float = 200_000.0
    faulted: set[str] = field(default_factory=set)
    seq: int = 0
    grid_w: float | None = None
    soc: dict[str, float] = field(default_factory=dict)
    trace: list[float] = field(default_factory=load_trace)
    trace_offset: int = 150  # start where the training job is running

    def record(self, t_mono: float) -> CycleRecord:
        site = self.hub.site
        self.seq += 1
        n = self.seq
        load = BASE_W + NODES * self.trace[(self.trace_offset + n) % len(self.trace)]
        pv = PV_W
        net = load - pv
        # Ramp-limited grid: the battery covers the difference (positive = discharge).
        g = (
            net
            if self.grid_w is None
            else min(max(net, self.grid_w - self.ramp_w_per_s), self.grid_w + self.ramp_w_per_s)
        )
        self.grid_w = g
        battery = net - g
        op = self.hub.operator
        clusters: list[ClusterSnapshot] = []
        statuses: dict[str, ClusterStatus] = {}
        for c in site.clusters:
            if c.id in op.maintenance:
                st = ClusterStatus.MAINTENANCE
            elif c.id in self.faulted:
                st = ClusterStatus.FAULT
            else:
                st = ClusterStatus.ONLINE
            statuses[c.id] = st
        trusted = [c.id for c in site.clusters if statuses[c.id] is ClusterStatus.ONLINE]
        share = battery / len(trusted) if trusted else 0.0
        for i, c in enumerate(site.clusters):
            soc = self.soc.setdefault(c.id, 60.0 + 2.0 * i)
            p = share if c.id in trusted else 0.0
            soc -= 100.0 * p / 3600.0 / c.capacity_wh
            self.soc[c.id] = soc
            volts = 1331.0 + 0.5 * soc
            clusters.append(
                ClusterSnapshot(
                    id=c.id,
                    pcs_id=next(pc.id for pc in site.pcs if c.id in pc.clusters),
                    status=statuses[c.id],
                    capacity_wh=c.capacity_wh,
                    soc_pct=Measured(soc, age_s=0.2),
                    max_charge_w=Measured(209_000.0),
                    max_discharge_w=Measured(209_000.0 if soc > 25 else 50_000.0),
                    power_w=Measured(p),
                    soh_pct=Measured(98.5 - 0.3 * i),
                    voltage_v=Measured(volts),
                    current_a=Measured(p / volts),
                    cell_v_max=Measured(3.335 + 0.001 * i),
                    cell_v_min=Measured(3.318),
                    temp_max_c=Measured(31.0 + 0.5 * i),
                    temp_min_c=Measured(24.0),
                    cycles=Measured(412.0 + i),
                    alarms=1 if statuses[c.id] is ClusterStatus.FAULT else 0,
                )
            )
        setpoints = {c.id: c.power_w.value for c in clusters}
        pcs = tuple(
            PcsSnapshot(
                id=pc.id,
                cluster_ids=pc.clusters,
                status=PcsStatus.ONLINE,
                rated_w=pc.rated_w,
                power_w=Measured(sum(setpoints[x] for x in pc.clusters)),
                setpoint_w=Measured(sum(setpoints[x] for x in pc.clusters)),
            )
            for pc in site.pcs
        )
        t_wall = self.start + timedelta(seconds=n * site.cycle_s)
        snap = SiteSnapshot(
            seq=n,
            t_mono=t_mono,
            t_wall=t_wall,
            grid_w=Measured(g),
            load_w=Measured(load),
            pv_w=Measured(pv),
            grid_up=True,
            clusters=tuple(clusters),
            pcs=pcs,
        )
        cap = 209_000.0 * len(trusted)
        plan = Plan(
            seq=n,
            mode=op.mode,
            site_setpoint_w=battery,
            requested_w=battery,
            decided_by="ramp",
            reason=f"holding grid import ramp to {self.ramp_w_per_s / 1000:g} kW/s",
            bounds=(
                Bound("device_limits", -cap, cap, f"{len(trusted)} clusters online"),
                Bound("reserve", -cap, cap, "reserve 300 kW for 15 min is covered"),
                Bound("ramp", battery, battery, "grid ramp limit"),
                Bound("peak", -cap, cap, "demand below the month's peak"),
            ),
            pcs_setpoints_w={p.id: p.setpoint_w.value for p in pcs},
            cluster_setpoints_w=setpoints,
        )
        # The loop raises these alarms from the snapshot; the feed does the same minimal thing.
        for cs in clusters:
            if cs.status is ClusterStatus.FAULT:
                self.hub.alarms.raise_("cluster_fault", cs.id, "BMS reports a fault", t_wall)
            else:
                self.hub.alarms.clear("cluster_fault", cs.id, t_wall)
        return CycleRecord(
            snapshot=snap, plan=plan, cycle_ms=12.0 + (n % 7), poll_ms=9.0, write_ms=2.0, overruns=0
        )

    def publish(self) -> CycleRecord:
        rec = self.record(self.hub.clock())
        self.hub.publish(rec)
        return rec

    async def run(self, period_s: float, advance: FakeClock | None = None) -> None:
        """Publish one cycle every `period_s` of real time until cancelled."""
        while True:
            if advance is not None:
                advance.t += self.hub.site.cycle_s
            self.publish()
            await asyncio.sleep(period_s)


def expected_soc(hub: Hub, rec: CycleRecord) -> float:
    """Capacity-weighted SoC over clusters with a good SoC (what the API must report)."""
    good = [c for c in rec.snapshot.clusters if c.soc_pct.ok]
    return 100.0 * sum(c.energy_wh for c in good) / sum(c.capacity_wh for c in good)


class ApiPair:
    """The API's two ends in one event loop, joined by a socketpair: the Hub's ApiBridge (as in the
    control process) and the Mirror the app reads (as in the API process). The same channel, frames
    and requests as between the two processes, without spawning one; `attach()` in the loop that
    runs the app."""

    def __init__(self, hub: Hub, wall: Callable[[], datetime], clock: Callable[[], float] | None = None) -> None:
        self.bridge = ApiBridge(hub, wall=wall)
        self.mirror = Mirror(hub.site, clock=clock or hub.clock)
        self._tasks: list[asyncio.Task[None]] = []

    async def attach(self) -> None:
        a, b = socket.socketpair()
        ra, wa = await asyncio.open_unix_connection(sock=a)
        rb, wb = await asyncio.open_unix_connection(sock=b)
        self._tasks = [
            asyncio.create_task(self.bridge.serve(ra, wa)),
            asyncio.create_task(self.mirror.serve(rb, wb)),
        ]
        await asyncio.wait_for(self.bridge.started.wait(), 10)
        await self.sync()

    async def sync(self, timeout_s: float = 10.0) -> None:
        """Mirror the Hub now (a state change that is not a cycle) and wait until it arrived."""
        self.bridge.push()
        deadline = time.monotonic() + timeout_s
        while self.bridge.pending or self.mirror.frames < self.bridge.frames_sent:
            assert time.monotonic() < deadline, "the mirror did not catch up"
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
