"""Cluster health: indicator arithmetic, trend and peer rules, persistence, sink, report, API."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from agent.api import TokenStore
from agent.api.app import create_app
from agent.health.assess import CONFIRM_DAYS, assess, theil_sen
from agent.health.indicators import DailyIndicators, DayAccumulator
from agent.health.report import write_report
from agent.health.sink import HealthSink, start_health
from agent.health.store import HealthStore
from agent.health.tracker import HealthTracker
from agent.live.hub import CycleRecord, Hub
from agent.model.plan import Plan
from agent.model.snapshot import ClusterSnapshot, ClusterStatus, Measured
from simulators.aging import AgingRun
from simulators.degradation import Degradation, effects
from simulators.physics import Cluster, ClusterParams

from .fakes import demo_site, snapshot_for
from .test_api_feed import ApiPair


# --- simulator side ------------------------------------------------------------------------------
def test_effects_grow_linearly_from_their_start_day() -> None:
    items = (
        Degradation("c1", "resistance", 10.0, 0.02),
        Degradation("c1", "cell_drift", 0.0, 0.003),
        Degradation("c2", "capacity_fade", 5.0, 0.01),
        Degradation("c2", "cooling", 5.0, 0.05),
    )
    e = effects(items, "c1", 20.0)
    assert (e.resistance_factor, e.cell_offset_v, e.capacity_factor, e.cooling_factor) == pytest.approx(
        (1.2, 0.06, 1.0, 1.0)
    )
    e = effects(items, "c2", 15.0)
    assert (e.resistance_factor, e.capacity_factor, e.cooling_factor) == pytest.approx((1.0, 0.9, 0.5))
    assert effects(items, "c2", 100.0).cooling_factor == 0.02  # floored: the physics stays finite
    assert effects(items, "c3", 50.0) == effects((), "c3", 50.0)
    with pytest.raises(ValueError, match="kind"):
        Degradation("c1", "rust", 0.0, 0.1)
    with pytest.raises(ValueError, match=">= 0"):
        Degradation("c1", "cooling", 0.0, -0.1)
    with pytest.raises(ValueError, match="unknown clusters: c99"):
        AgingRun(4, (Degradation("c99", "cooling", 0.0, 0.1),))


def test_cooling_fault_heats_the_same_duty_more() -> None:
    def run(factor: float) -> float:
        c = Cluster("c1", ClusterParams(), 80.0, noise=False)
        c.set_effects(effects((Degradation("c1", "cooling", 0.0, 1.0 - factor),), "c1", 1.0))
        for _ in range(36):
            c.step(150e3, 300.0)
        return c.temp_c - c.p.coolant_c

    healthy, half = run(1.0), run(0.5)
    assert 1.0 < healthy < half  # losses heat both; half the conductance, a hotter module
    assert half > 1.6 * healthy


def test_terminal_voltage_follows_the_end_of_step_soc() -> None:
    c = Cluster("c1", ClusterParams(), 60.0, noise=False)
    c.step(100e3, 600.0)
    assert c.voltage_v == pytest.approx(c.ocv_v - c.current_a * c.pack_resistance_ohm, rel=1e-12)


# --- indicators ----------------------------------------------------------------------------------
def _cs(i: float, v: float, soc: float, vmax: float = 3.300, vmin: float = 3.296, **kw: object) -> ClusterSnapshot:
    base = ClusterSnapshot(
        id="c1", pcs_id="p1", status=ClusterStatus.ONLINE, capacity_wh=100_000.0, soc_pct=Measured(soc),
        max_charge_w=Measured(1e5), max_discharge_w=Measured(1e5), soh_pct=Measured(99.0),
        voltage_v=Measured(v), current_a=Measured(i), cell_v_max=Measured(vmax), cell_v_min=Measured(vmin),
        temp_max_c=Measured(30.0), temp_min_c=Measured(27.0),
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def test_day_accumulator_exact_values() -> None:
    acc = DayAccumulator()
    acc.add(_cs(0.0, 1000.0, 50.0), 0.0)  # rest: spread 4 mV
    acc.add(_cs(100.0, 991.0, 50.0, vmax=3.31, vmin=3.29), 1.0)  # step: R = 9 V / 100 A; not rest
    # discharge 100 A at 1000 V for 0.5 h = 50 kWh over 50 % SoC: 100 kWh per 100 %
    acc.add(_cs(100.0, 1000.0, 0.0, temp_max_c=Measured(41.0)), 1800.0)
    acc.add(_cs(-100.0, 1000.0, 0.0), 1.0)  # reverse: new anchor (1 s of charge is not counted)
    acc.add(_cs(-100.0, 1000.0, 40.0, alarms=4), 1440.0)  # charge 40 kWh over 40 %: 100 kWh per 100 %
    acc.add(replace(_cs(0.0, 1000.0, 40.0), status=ClusterStatus.OFFLINE), 10.0)
    (row,) = acc.close(day=7)
    assert row.cluster_id == "c1" and row.day == 7 and row.samples == 6
    assert row.cell_spread_mv == pytest.approx(4.0)
    assert row.resistance_mohm == pytest.approx(90.0)
    assert row.capacity_pct == pytest.approx(100.0)
    assert row.temp_max_c == 41.0
    assert row.temp_spread_c == pytest.approx(3.0)
    assert row.soh_pct == 99.0
    assert row.alarm_rate == pytest.approx(1 / 6)
    assert row.comm_error_rate == pytest.approx(1 / 6)
    out_wh = (991.0 * 100.0 * 1.0 + 1000.0 * 100.0 * 1800.0) / 3600.0  # the step's second, then 0.5 h
    in_wh = 1000.0 * 100.0 * (1.0 + 1440.0) / 3600.0
    assert row.throughput_kwh == pytest.approx((out_wh + in_wh) / 1000.0, rel=1e-12)
    assert row.efc == pytest.approx(out_wh / 100_000.0, rel=1e-12)
    (empty,) = acc.close(day=8)  # the next day starts clean
    assert empty.samples == 0 and math.isnan(empty.cell_spread_mv) and math.isnan(empty.capacity_pct)


def test_soc_state_alarms_do_not_count_as_health_alarms() -> None:
    acc = DayAccumulator()
    acc.add(_cs(0.0, 1000.0, 3.0, alarms=1 << 14), 0.0)  # under-SoC warning: operation, not health
    acc.add(_cs(0.0, 1000.0, 99.0, alarms=1 << 16), 1.0)  # over-SoC warning
    acc.add(_cs(0.0, 1000.0, 50.0, alarms=(1 << 16) | (1 << 17)), 1.0)  # + imbalance warning: counts
    (row,) = acc.close(0)
    assert row.alarm_rate == pytest.approx(1 / 3)


def test_a_gap_or_a_slow_pair_is_not_a_load_step() -> None:
    acc = DayAccumulator()
    acc.add(_cs(0.0, 1000.0, 50.0), 0.0)
    acc.add(_cs(100.0, 991.0, 50.0), 60.0)  # a minute apart: the OCV may have moved
    acc.add(replace(_cs(0.0, 1000.0, 50.0), status=ClusterStatus.OFFLINE), 1.0)
    acc.add(_cs(100.0, 991.0, 50.0), 1.0)  # right after a gap
    (row,) = acc.close(0)
    assert math.isnan(row.resistance_mohm)


# --- trends and peers ----------------------------------------------------------------------------
def test_theil_sen_ignores_an_outlier_and_nan() -> None:
    x = np.arange(7.0)
    y = 2.0 * x + 1.0
    y[3], y[5] = 500.0, math.nan
    assert theil_sen(x, y) == 2.0
    assert math.isnan(theil_sen(np.array([1.0]), np.array([3.0])))


def _row(cid: str, day: int, spread: float, temp: float = 32.0) -> DailyIndicators:
    return DailyIndicators(cid, day, spread, temp, 3.0, 99.0, 100.0, 90.0, 0.0, 0.0, 800.0, 0.9, 80)


def _fleet(days: int, drift: dict[str, float], jump: dict[str, tuple[int, float]] | None = None) -> dict:
    jump = jump or {}
    hist = {}
    for k in range(8):
        cid = f"c{k}"
        base = 3.5 + 0.1 * k
        rows = []
        for d in range(days):
            v = base + 0.05 * ((d * 7 + k) % 3) + drift.get(cid, 0.0) * d
            if cid in jump and d == jump[cid][0]:
                v += jump[cid][1]
            rows.append(_row(cid, d, v))
        hist[cid] = rows
    return hist


def test_a_drifting_cluster_is_flagged_with_rate_ratio_and_lead_time() -> None:
    hist = _fleet(20, {"c3": 3.0})
    (r,) = assess(hist)
    assert (r.cluster_id, r.indicator, r.unit) == ("c3", "cell_spread_mv", "mV")
    assert r.slope_per_day == pytest.approx(3.0, abs=0.01)
    last3 = [row.cell_spread_mv for row in hist["c3"][-3:]]
    assert r.value == pytest.approx(float(np.median(last3)))
    assert r.days_to_limit == pytest.approx((100.0 - r.value) / r.slope_per_day, rel=0.01)
    assert r.proposal == {"kind": "inspect", "command": None}
    assert "cluster c3: cell spread rising 3 mV/day" in r.text
    assert "reach the limit (100 mV) in about" in r.text


def test_near_the_limit_isolation_is_proposed_as_the_maintenance_command() -> None:
    hist = _fleet(40, {"c3": 3.0})
    (r,) = assess(hist)
    assert r.value > 100.0 and r.days_to_limit == 0.0
    assert r.proposal == {"kind": "isolate", "command": {"command": "maintenance", "cluster_id": "c3", "on": True}}
    assert "at or past the limit" in r.text


def test_no_verdict_from_a_flat_fleet_a_single_bad_day_or_too_few_peers() -> None:
    assert assess(_fleet(30, {})) == []
    assert assess(_fleet(30, {}, jump={"c2": (29, 40.0)})) == []  # one day: CONFIRM_DAYS not met
    assert CONFIRM_DAYS >= 2
    two = {k: v for k, v in _fleet(30, {"c1": 3.0}).items() if k in ("c0", "c1")}
    assert assess(two) == []
    assert assess(_fleet(4, {"c1": 30.0})) == []  # fewer than MIN_DAYS


def test_a_step_change_that_stays_apart_but_does_not_move_is_not_a_trend() -> None:
    hist = _fleet(30, {})
    hist["c5"] = [replace(r, cell_spread_mv=r.cell_spread_mv + 20.0) for r in hist["c5"]]  # offset, flat
    assert assess(hist) == []


def test_peer_groups_are_assessed_separately() -> None:
    t = HealthTracker(group_of={f"c{k}": ("a" if k < 4 else "b") for k in range(8)})
    hist = _fleet(20, {"c3": 3.0})
    t.load([row for d in range(20) for row in (hist[c][d] for c in sorted(hist))])
    assert [r.cluster_id for r in t.recommendations] == ["c3"]
    assert t.recommendations[0].fleet_median < 4.5  # c3's peers are c0..c2 only


# --- persistence, sink, report, API --------------------------------------------------------------
def _feed_days(sink: HealthSink, days: int, report_dir: Path) -> None:
    run = AgingRun(4, (Degradation("c02", "cell_drift", 1.0, 0.004),), seed=5)
    for d in range(days):
        sink.report_dir = report_dir if d == days - 1 else None  # plots take time: only the last day's
        for s in run.day(d):
            sink.feed(s)


def test_store_round_trip_keeps_nan_and_is_idempotent(tmp_path: Path) -> None:
    st = HealthStore(tmp_path / "h.db")
    a = _row("c1", 5, math.nan)
    st.save([a], {("c1", "cell_spread_mv"): 5})
    st.save([replace(a, temp_max_c=33.0)], {("c1", "cell_spread_mv"): 9})  # same day again
    rows, since = st.load()
    assert len(rows) == 1 and rows[0].temp_max_c == 33.0 and math.isnan(rows[0].cell_spread_mv)
    assert replace(rows[0], cell_spread_mv=0.0) == replace(a, temp_max_c=33.0, cell_spread_mv=0.0)
    assert since == {("c1", "cell_spread_mv"): 5}  # first raised stays first
    st.close()


def test_restart_keeps_history_and_recommendations(tmp_path: Path) -> None:
    sink = HealthSink(HealthTracker(), HealthStore(tmp_path / "h.db"), None)
    _feed_days(sink, 14, tmp_path / "rep")
    before = sink.read()
    # each day's last sample is stamped 00:00 of the next and closes it: 14 days closed
    assert before["days"] == 14 and before["version"] == 14
    assert [r["cluster_id"] for r in before["recommendations"]] == ["c02"]
    assert before["clusters"]["c02"]["flagged"] == ["cell_spread_mv"]
    sink.stop()
    again = HealthSink(HealthTracker(), HealthStore(tmp_path / "h.db"), None)
    after = again.read()
    assert after["days"] == 14
    assert after["recommendations"] == before["recommendations"]
    assert after["clusters"]["c02"]["latest"] == before["clusters"]["c02"]["latest"]
    again.stop()
    md = (tmp_path / "rep" / "health-2026-01-14.md").read_text()
    assert "**c02** (inspect): cluster c02: cell spread rising" in md
    assert "![cell spread](health-2026-01-14-cell_spread_mv.png)" in md
    html = (tmp_path / "rep" / "health-2026-01-14.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    assert (tmp_path / "rep" / "health-2026-01-14-temp_max_c.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_recommendations(tmp_path: Path) -> None:
    hist = _fleet(10, {})
    md, html = write_report(tmp_path, "Cluster health day-9", "h", hist, [])
    assert "None: every cluster tracks its peers." in md.read_text()
    assert "| c0 | 3.5 | 90 | 100 | 99 | 32 | 0.9 | 0 |" in md.read_text()
    assert html.read_text().startswith("<!doctype html>")


def _rec(hub: Hub, seq: int, t_wall: datetime) -> CycleRecord:
    snap = snapshot_for(hub.site, seq, float(seq), t_wall)
    plan = Plan(seq=seq, site_setpoint_w=0.0, pcs_setpoints_w={}, cluster_setpoints_w={}, mode="auto",
                requested_w=0.0, shortfall_w=0.0, decided_by="idle", reason="", bounds=(), alarms=())  # fmt: skip
    return CycleRecord(snap, plan, 1.0, 1.0, 0.0, 0)


async def test_start_health_registers_sink_and_provider_served_by_the_api(make_hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    hub: Hub = make_hub()
    sink = start_health(hub.site, hub, tmp_path)
    try:
        assert sink in hub.sinks and hub.read("health") is sink.read()
        t0 = datetime(2026, 11, 24, 23, 59, 0, tzinfo=hub.site.timezone)
        t = time.perf_counter()
        for k in range(120):  # crosses midnight: one day closes
            hub.publish(_rec(hub, k + 1, t0 + timedelta(seconds=k)))
        assert time.perf_counter() - t < 1.0  # submit only queues
        deadline = time.monotonic() + 20
        while hub.read("health")["version"] < 1 and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.05)
        h = hub.read("health")
        assert h is not None and h["version"] == 1 and h["days"] == 1
        assert set(h["clusters"]) == {c.id for c in hub.site.clusters}
        c = next(iter(h["clusters"].values()))
        assert c["latest"]["cell_spread_mv"] == pytest.approx(20.0)  # 3.33 - 3.31 V at rest, 60 % SoC
        assert c["latest"]["samples"] == 60 and c["group"].endswith("Wh")
        assert (tmp_path / "health.db").exists() and h["report"].endswith("health-2026-11-24.html")
        tokens = tmp_path / "tokens.toml"
        tokens.write_text(f'[[token]]\nname = "v"\nrole = "viewer"\nsha256 = "{"0" * 64}"\n')
        pair = ApiPair(hub, wall=lambda: t0)
        app = create_app(pair.mirror, TokenStore.load(tokens), open_read=True)
        await pair.attach()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ems") as cl:
                r = await cl.get("/api/health")
        finally:
            await pair.close()
        assert r.status_code == 200 and r.json()["version"] == 1
    finally:
        sink.stop()
    assert sink.errors == 0 and sink.dropped == 0


def test_tracker_groups_default_to_nameplate() -> None:
    site = demo_site()
    t = HealthTracker()
    t.add(snapshot_for(site, 1, 0.0, datetime(2026, 1, 1, tzinfo=site.timezone)))
    assert set(t.group_of.values()) == {f"{site.clusters[0].capacity_wh:g}Wh"}
