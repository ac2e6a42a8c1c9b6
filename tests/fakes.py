"""Test fakes in one place: an injected clock, and sites made of real SiteSnapshot/Plan objects
without devices (a healthy demo site per cycle, and a GPU hall fed by a measured trace).

The GPU load of `SiteFeed` is the measured H100 training trace (/work/shared/data,
grantwilkins/training_profile) scaled to 400 nodes; the battery takes the fast swings so the grid
ramps at most `ramp_w_per_s`, as the ramp controller would. (No tests in this module.)
"""

from __future__ import annotations

import asyncio
import csv
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent.control import decide, initial_state
from agent.live.hub import CycleRecord, Hub
from agent.model.config import SiteConfig, load_site
from agent.model.plan import Bound, Plan
from agent.model.snapshot import ClusterSnapshot, ClusterStatus, Measured, PcsSnapshot, PcsStatus, SiteSnapshot

ROOT = Path(__file__).resolve().parent.parent
DEMO_SITE = ROOT / "agent" / "sites" / "demo.toml"


class FakeClock:
    """Injected monotonic clock: tests move time (`clock.t += s`), nothing sleeps for it."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# --- the demo site, healthy, one cycle at a time ----------------------------------------------
def demo_site(sections: dict[str, Any] | None = None) -> SiteConfig:
    site = load_site(DEMO_SITE)
    if sections:
        site = replace(site, sections={**site.sections, **sections})
    return site


def snapshot_for(
    site: SiteConfig, seq: int, t_mono: float, t_wall: datetime, load_w: float = 2_000_000.0
) -> SiteSnapshot:
    """A healthy site: every cluster online at 60 % with 200 kW limits, grid importing the load."""
    clusters = tuple(
        ClusterSnapshot(
            id=c.id,
            pcs_id=next(p.id for p in site.pcs if c.id in p.clusters),
            status=ClusterStatus.ONLINE,
            capacity_wh=c.capacity_wh,
            soc_pct=Measured(60.0),
            max_charge_w=Measured(200_000.0),
            max_discharge_w=Measured(200_000.0),
            power_w=Measured(0.0),
            soh_pct=Measured(98.5),
            voltage_v=Measured(1331.0),
            current_a=Measured(0.0),
            cell_v_max=Measured(3.33),
            cell_v_min=Measured(3.31),
            temp_max_c=Measured(31.0),
            temp_min_c=Measured(27.5),
            cycles=Measured(120.0),
        )
        for c in site.clusters
    )
    pcs = tuple(
        PcsSnapshot(p.id, p.clusters, PcsStatus.ONLINE, p.rated_w, Measured(0.0), Measured(0.0))
        for p in site.pcs
    )
    return SiteSnapshot(
        seq=seq,
        t_mono=t_mono,
        t_wall=t_wall,
        grid_w=Measured(load_w),
        load_w=Measured(load_w),
        pv_w=Measured(0.0),
        grid_up=True,
        clusters=clusters,
        pcs=pcs,
    )


class Cycles:
    """Runs the real control policy over synthetic snapshots and publishes through a real Hub."""

    def __init__(self, hub: Hub, start: datetime) -> None:
        self.hub = hub
        self.start = start
        self.state = initial_state(hub.site.control)
        self.seq = 0
        # Snapshot monotonic times follow the hub's clock, so operator expiry times compare with them.
        self.t0_mono = hub.clock()

    def next(self, load_w: float = 2_000_000.0, publish: bool = True) -> CycleRecord:
        self.seq += 1
        t_wall = self.start + timedelta(seconds=self.seq)
        snap = snapshot_for(self.hub.site, self.seq, self.t0_mono + self.seq, t_wall, load_w)
        op = self.hub.operator
        plan, self.state = decide(snap, self.state, self.hub.site.control, op, None, self.hub.site.allow_export)
        rec = CycleRecord(snap, plan, 12.5, 8.0, 3.0, 0, op.maintenance)
        if publish:
            self.hub.publish(rec)
        return rec


# --- a GPU hall on a measured training trace ---------------------------------------------------
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
        for c in site.clusters:  # what the BMS report; the operator's hold is the record's
            statuses[c.id] = ClusterStatus.FAULT if c.id in self.faulted else ClusterStatus.ONLINE
        trusted = [
            c.id for c in site.clusters if statuses[c.id] is ClusterStatus.ONLINE and c.id not in op.maintenance
        ]
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
            snapshot=snap,
            plan=plan,
            cycle_ms=12.0 + (n % 7),
            poll_ms=9.0,
            write_ms=2.0,
            overruns=0,
            maintenance=op.maintenance,
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
