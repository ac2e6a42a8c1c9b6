"""Readings -> snapshot: ages, qualities, statuses, limits in W, grid outage, load source."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from agent.live.assemble import build_snapshot
from agent.model.config import load_site
from agent.model.snapshot import ClusterStatus, PcsStatus
from drivers import keys as k
from drivers.reading import Quality, Reading

SITE = load_site(Path(__file__).resolve().parents[1] / "agent" / "sites" / "demo.toml")
NOW = 1000.0
WALL = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
STATES = {1: k.STATE_ONLINE, 2: k.STATE_STANDBY, 3: k.STATE_FAULT, 4: k.STATE_OFF}


def namer(dev: str, code: int) -> str | None:
    return STATES.get(code)


def good(v: float, t: float = NOW) -> Reading:
    return Reading(v, Quality.GOOD, t)


def bms(soc: float = 50.0, state: int = 1, t: float = NOW) -> dict[str, Reading]:
    return {
        k.SOC_PCT: good(soc, t),
        k.VOLTAGE_V: good(1331.0, t),
        k.MAX_CHARGE_A: good(157.0, t),
        k.MAX_DISCHARGE_A: good(100.0, t),
        k.STATE: good(state, t),
        k.POWER_W: good(0.0, t),
    }


def pcs(power: float = 0.0, state: int = 1) -> dict[str, Reading]:
    return {k.POWER_W: good(power), k.STATE: good(state), k.RATED_W: good(700_000.0)}


def readings(**over: dict[str, Reading]) -> dict[str, dict[str, Reading]]:
    r: dict[str, dict[str, Reading]] = {c.id: bms() for c in SITE.clusters}
    r.update({p.id: pcs(100_000.0) for p in SITE.pcs})
    r["grid"] = {k.POWER_W: good(4_000_000.0), k.VOLTAGE_V: good(230.0)}
    r["gpu"] = {k.POWER_W: good(4_500_000.0)}
    r["pv"] = {k.POWER_W: good(100_000.0)}
    r.update(over)
    return r


def snap(r: dict[str, dict[str, Reading]]):  # type: ignore[no-untyped-def]
    return build_snapshot(SITE, r, 7, NOW, WALL, namer)


def test_healthy_site() -> None:
    s = snap(readings())
    assert s.seq == 7 and s.grid_up and s.grid_w.value == 4_000_000.0
    assert s.load_w.value == 4_500_000.0 and s.pv_w.value == 100_000.0
    c = s.cluster("c01")
    assert c is not None and c.trusted and c.status is ClusterStatus.ONLINE
    assert c.max_charge_w.value == 157.0 * 1331.0 and c.max_discharge_w.value == 133_100.0
    assert all(p.status is PcsStatus.ONLINE for p in s.pcs)
    assert s.pcs[0].rated_w == 630_000.0  # device's 700 kW cannot raise the configured 630 kW
    assert s.battery_w == 400_000.0


def test_fault_stale_and_comm() -> None:
    r = readings(
        c01=bms(state=3),
        c02=bms(t=NOW - 10.0),  # last good read 10 s ago, stale after 3 s
        c03={key: Reading(None, Quality.COMM_ERROR, NOW) for key in bms()},
        c05=bms(state=4),
    )
    s = snap(r)
    status = {c.id: c.status for c in s.clusters}
    assert status["c01"] is ClusterStatus.FAULT
    assert status["c02"] is ClusterStatus.OFFLINE
    c02 = s.cluster("c02")
    assert c02 is not None and c02.soc_pct.quality is Quality.STALE and c02.soc_pct.age_s == 10.0
    assert status["c03"] is ClusterStatus.OFFLINE
    assert status["c04"] is ClusterStatus.ONLINE
    assert status["c05"] is ClusterStatus.OFFLINE
    assert [c.id for c in s.clusters if c.trusted] == ["c04"] + [f"c{i:02d}" for i in range(6, 13)]


def test_bad_limit_makes_cluster_untrusted() -> None:
    b = bms()
    b[k.MAX_DISCHARGE_A] = Reading(1e9, Quality.OUT_OF_RANGE, NOW)
    c = snap(readings(c07=b)).cluster("c07")
    assert c is not None and not c.trusted and c.max_discharge_w.quality is Quality.OUT_OF_RANGE


def test_grid_outage_and_lost_grid_meter() -> None:
    s = snap(readings(grid={k.POWER_W: good(0.0), k.VOLTAGE_V: good(0.0)}))
    assert not s.grid_up
    lost = snap(readings(grid={k.POWER_W: Reading(None, Quality.COMM_ERROR, NOW)}))
    assert lost.grid_up and not lost.grid_w.ok and lost.grid_w.quality is Quality.COMM_ERROR


def test_pcs_trip_and_offline() -> None:
    r = readings(pcs1=pcs(state=3), pcs2={k.POWER_W: Reading(None, Quality.COMM_ERROR, NOW)})
    s = snap(r)
    assert s.pcs[0].status is PcsStatus.FAULT and s.pcs[1].status is PcsStatus.OFFLINE
    assert s.battery_w == 200_000.0  # offline PCS is not counted; the tripped one reports 0 W


def test_load_from_energy_balance_without_load_meter() -> None:
    from dataclasses import replace

    site = replace(SITE, meters=tuple(m for m in SITE.meters if m.role != "load"))
    s = build_snapshot(site, readings(), 1, NOW, WALL, namer)
    assert s.load_w.value == 4_000_000.0 + 100_000.0 + 400_000.0
    r = readings(pcs1={k.POWER_W: good(math.nan)})
    s2 = build_snapshot(site, r, 1, NOW, WALL, namer)
    assert not s2.load_w.ok and s2.pcs[0].power_w.quality is Quality.INVALID


def test_switchable_when_the_profile_can_open_the_contactor() -> None:
    """The snapshot says whether the agent can open a cluster's contactor; an operator's maintenance
    hold is no part of it (decide()'s OperatorState.maintenance input)."""
    s = snap(readings(c02={**bms(), k.CONNECT_CMD: good(float(k.CONNECT))}))
    assert [c.id for c in s.clusters if c.switchable] == ["c02"]
