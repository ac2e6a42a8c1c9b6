"""The live loop against the simulated site over Modbus TCP: what issue 3 promises operators.

Each test drives the real AgentLoop (real drivers, real pymodbus servers on loopback) one cycle
at a time with the simulator's physics advanced between cycles (tests/loop_rig.py), except the
kill test, which runs `ems-agent run` as a process against a real-time simulator.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import signal
import time
from pathlib import Path

import pytest

from agent.control.ramp_reference import BETWEEN_READINGS_RAMP_FRACTION
from agent.control.reserve import reserve_floor_pct
from agent.model.operator import parse_command
from agent.model.snapshot import ClusterStatus, shown_status
from simulators.physics import Pcs
from tests.agent_process import kill_and_time, overridden_agent
from tests.loop_rig import NOON, Rig

RAMP_W_PER_S = 200_000.0  # demo.toml [control] ramp_limit_w_per_s


def override(rig: Rig, setpoint_w: float) -> int:
    """Submit an override; the cycles the ramp takes to bring the battery there from 0 W (the agent
    starts from the measured output: agent/control/ramp.py)."""
    cmd = parse_command({"command": "override", "setpoint_w": setpoint_w, "duration_s": 3600})
    rig.hub.submit(cmd, "test", "test", NOON)
    return math.ceil(abs(setpoint_w) / (RAMP_W_PER_S * BETWEEN_READINGS_RAMP_FRACTION * rig.site.cycle_s))


async def test_load_step_of_half_the_battery_power_is_absorbed_within_the_ramp_limit(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path)
    try:
        before = await rig.run(5)
        assert max(abs(r.plan.site_setpoint_w) for r in before) < 1_000.0  # a flat load: nothing to do
        battery_w = sum(p.rated_w for p in rig.site.pcs)  # 4 x 630 kW
        rig.sim.load_offset(0.5 * battery_w)  # +1.26 MW from the next physics tick on
        before.append(await rig.step())  # this poll still read the meters from before the step
        after = await rig.run(20)
        grid = [before[-1].snapshot.grid_w.value] + [r.snapshot.grid_w.value for r in after]
        # The cycle that first sees the step reads the spike (the battery has not answered yet) ...
        assert grid[1] - grid[0] == pytest.approx(0.5 * battery_w, rel=0.02)
        assert after[0].plan.decided_by == "ramp"
        # ... and from the next cycle on the grid moves at the planned 50 % of the limit per cycle from
        # where the utility meter's last second stood: the step came at an unknown instant of it, on
        # average halfway (agent/control/ramp_reference.py); the PCS's lag (a few % of each setpoint
        # change shows in the next reading) stays inside the limit.
        half = 0.5 * (grid[1] - grid[0])
        assert grid[2] - grid[0] == pytest.approx(half + RAMP_W_PER_S * BETWEEN_READINGS_RAMP_FRACTION, abs=5_000)
        steps = [b - a for a, b in itertools.pairwise(grid[2:])]
        assert max(abs(s) for s in steps) <= RAMP_W_PER_S
        # The battery hands the load back to the grid gradually and ends idle, not drained.
        assert grid[-1] == pytest.approx(grid[0] + 0.5 * battery_w, rel=0.01)
        assert abs(after[-1].plan.site_setpoint_w) < 10_000
    finally:
        await rig.close()


async def test_a_cluster_fault_is_isolated_and_its_share_moves_to_the_others_in_one_cycle(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path)
    try:
        ramp = override(rig, 900_000.0)  # below the 1.12 MW load: no export
        steady = (await rig.run(ramp + 3))[-1]
        assert steady.plan.site_setpoint_w == pytest.approx(900_000.0)
        assert steady.plan.cluster_setpoints_w["c05"] == pytest.approx(75_000.0, rel=0.05)
        rig.sim.cluster_fault("c05")
        rig.sim.refresh()  # the BMS shows it now (a ticking simulator does within 50 ms)
        rec = await rig.step()
        c05 = next(c for c in rec.snapshot.clusters if c.id == "c05")
        assert c05.status is ClusterStatus.FAULT
        assert rec.plan.cluster_setpoints_w["c05"] == 0.0
        assert rec.plan.site_setpoint_w == pytest.approx(900_000.0)  # the others took its share
        assert rec.plan.shortfall_w < 1.0
        # pcs2 now drives only c04 and c06, at their share of the same total
        pcs2 = rec.plan.pcs_setpoints_w["pcs2"]
        assert pcs2 == pytest.approx(rec.plan.cluster_setpoints_w["c04"] + rec.plan.cluster_setpoints_w["c06"])
        assert pcs2 == pytest.approx(2 * 900_000.0 / 11, rel=0.05)
        assert any(a.code == "cluster_fault" and a.source == "c05" for a in rig.hub.alarms.active())
        # The plant followed: the faulted cluster carries no current, the site still gets 900 kW.
        await rig.step()
        assert rig.sim.model.plant.clusters["c05"].power_w == 0.0
        assert rig.sim.model.battery_w == pytest.approx(900_000.0, rel=0.01)
    finally:
        await rig.close()


async def test_maintenance_opens_the_cluster_contactor_and_returning_to_service_closes_it(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path)
    try:
        ramp = override(rig, 900_000.0)
        await rig.run(ramp + 2)
        plant = rig.sim.model.plant
        assert plant.clusters["c04"].power_w == pytest.approx(75_000.0, rel=0.05)
        rig.hub.submit(parse_command({"command": "maintenance", "cluster_id": "c04", "on": True}), "t", "test", NOON)
        # its PCS (pcs2, ~225 kW, one DC bus) ramps out first, at most 100 kW a cycle (the live ramp
        # step at 200 kW/s), the others taking its share; then c04 gets no share and its current dies away
        before, steps = 225_000.0, 0
        while True:
            rec = await rig.step()
            now = rec.plan.pcs_setpoints_w.get("pcs2", 0.0)
            assert before - now <= 100_000.0 * 1.05 and not plant.clusters["c04"].disconnected
            before, steps = now, steps + 1
            if now == 0.0 or steps == 5:
                break
        assert steps >= 2 and rec.plan.cluster_setpoints_w["c04"] == 0.0
        assert rec.plan.site_setpoint_w == pytest.approx(900_000.0, rel=0.01)  # the site never stepped
        rec = await rig.step()  # ... and now, with no current through it, the contactor opens
        assert plant.clusters["c04"].disconnected
        await rig.step()
        assert plant.clusters["c04"].power_w == 0.0  # nothing flows, whatever pcs2 does
        assert rig.sim.model.battery_w == pytest.approx(900_000.0, rel=0.01)  # the other 11 carry it
        rec = await rig.step()
        # the snapshot holds what the BMS reports (contactor open: off); the sinks show the hold
        c04 = rec.snapshot.cluster("c04")
        assert c04 is not None and c04.status is ClusterStatus.OFFLINE and rec.maintenance == {"c04"}
        assert shown_status(c04, rec.maintenance) is ClusterStatus.MAINTENANCE
        assert not [a for a in rig.hub.alarms.active() if a.source == "c04"]

        rig.hub.submit(parse_command({"command": "maintenance", "cluster_id": "c04", "on": False}), "t", "test", NOON)
        await rig.step()
        assert not plant.clusters["c04"].disconnected  # closed on the first cycle back
        recs = await rig.run(3)
        assert recs[-1].plan.cluster_setpoints_w["c04"] == pytest.approx(75_000.0, rel=0.05)
        assert plant.clusters["c04"].power_w == pytest.approx(75_000.0, rel=0.05)
        assert not [a for a in rig.hub.alarms.active() if a.source == "c04"]
    finally:
        await rig.close()


async def test_a_derated_cluster_caps_its_pcs_so_no_cluster_behind_it_exceeds_the_cap(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path)
    try:
        ramp = override(rig, -2_520_000.0)  # charge as hard as the four PCS allow
        rec = (await rig.run(ramp + 2))[-1]
        plant = rig.sim.model.plant
        full = rec.plan.pcs_setpoints_w["pcs2"]
        bms = sum(plant.clusters[c].max_charge_w for c in ("c04", "c05", "c06"))  # ~645 kW
        assert full == pytest.approx(-630_000.0, rel=0.001)  # the PCS rating binds first
        cmd = parse_command({"command": "derate", "cluster_id": "c05", "max_power_pct": 70})
        rig.hub.submit(cmd, "t", "test", NOON)
        rec = (await rig.run(2))[-1]
        assert rec.plan.pcs_setpoints_w["pcs2"] == pytest.approx(-0.7 * bms, rel=0.02)
        assert rec.plan.pcs_setpoints_w["pcs1"] == pytest.approx(full, rel=0.02)  # other PCS untouched
        c05 = plant.clusters["c05"]
        assert abs(c05.power_w) <= 0.7 * c05.max_charge_w * 1.01  # physically held to the cap
        rig.hub.submit(parse_command({"command": "derate", "cluster_id": "c05", "max_power_pct": 100}), "t", "t", NOON)
        rec = (await rig.run(2))[-1]
        assert rec.plan.pcs_setpoints_w["pcs2"] == pytest.approx(full, rel=0.02)
    finally:
        await rig.close()


async def test_a_cluster_added_at_run_time_takes_load_within_two_cycles(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path, drop=("c12",))
    try:
        ramp = override(rig, -660_000.0)  # charge at 60 kW per cluster
        rec = (await rig.run(ramp + 3))[-1]
        assert "c12" not in rec.plan.cluster_setpoints_w
        assert rec.plan.cluster_setpoints_w["c11"] == pytest.approx(-60_000.0, rel=0.05)
        rig.rewrite(drop=())
        rig.loop.reload()  # what SIGHUP does in `ems-agent run`
        recs = await rig.run(2)
        assert recs[-1].plan.cluster_setpoints_w["c12"] == pytest.approx(-55_000.0, rel=0.1)
        assert recs[-1].plan.pcs_setpoints_w["pcs4"] == pytest.approx(3 * -55_000.0, rel=0.1)
        await rig.step()
        assert rig.sim.model.plant.clusters["c12"].power_w < -40_000.0  # the plant really charges it
    finally:
        await rig.close()


async def test_a_grid_outage_is_carried_from_the_reserve_and_raises_an_alarm(tmp_path: Path) -> None:
    # SoC a little below the reserve floor: in normal operation the battery must not discharge.
    rig = await Rig.open(tmp_path, soc=21.0)
    try:
        floor = reserve_floor_pct(rig.site.control, rig.hub.operator, 12 * 418_000.0)
        assert 21.0 < floor < 22.0
        normal = await rig.run(3)
        assert all(r.plan.site_setpoint_w <= 0.0 for r in normal)
        rig.sim.grid(False)
        out = await rig.run(5)
        assert all(r.plan.mode == "outage" for r in out[1:])
        load = out[-1].snapshot.load_w.value
        assert out[-1].plan.site_setpoint_w == pytest.approx(load, rel=0.02)
        assert rig.sim.model.unserved_w < 1.0 and rig.sim.model.battery_w == pytest.approx(load, rel=0.02)
        assert [a.code for a in rig.hub.alarms.active() if a.source == "grid"] == ["grid_outage"]
        rig.sim.grid(True)
        back = await rig.run(3)
        assert back[-1].plan.mode == "auto" and back[-1].plan.site_setpoint_w <= 0.0
        assert not [a for a in rig.hub.alarms.active() if a.code == "grid_outage"]
    finally:
        await rig.close()


async def test_losing_the_grid_meter_falls_back_to_conservative_and_a_tripped_pcs_is_isolated(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await Rig.open(tmp_path, timeout_s=None)  # the meter times out on purpose: the demo's timeout
    try:
        ramp = override(rig, 900_000.0)
        await rig.run(ramp + 2)
        rig.sim.pcs_trip("pcs3")
        rig.sim.refresh()
        rec = await rig.step()
        assert rec.plan.pcs_setpoints_w["pcs3"] == 0.0
        assert [rec.plan.cluster_setpoints_w[c] for c in ("c07", "c08", "c09")] == [0.0, 0.0, 0.0]
        assert rec.plan.site_setpoint_w == pytest.approx(900_000.0)  # three PCS carry it now
        assert rec.plan.pcs_setpoints_w["pcs1"] == pytest.approx(300_000.0, rel=0.02)
        assert any(a.code == "pcs_fault" and a.source == "pcs3" for a in rig.hub.alarms.active())
        await rig.run(3)  # the fault persists: one log line when it was raised, none after
        raised = [r for r in caplog.records if r.getMessage() == "alarm raised"]
        assert [r.__dict__["fields"]["source"] for r in raised] == ["pcs3"]

        rig.sim.silent("grid")  # the grid meter stops answering
        recs = await rig.run(int(rig.site.stale_after_s / rig.site.cycle_s) + 2)
        first = next(i for i, r in enumerate(recs) if r.plan.mode == "conservative")
        assert recs[first].snapshot.grid_w.quality.value != "good"
        # The operator's override does not outrank the failsafe; the battery backs off at the planned
        # ramp (900 kW in 100 kW steps) rather than dropping 900 kW onto the grid at once.
        recs += await rig.run(10)
        backing_off = [r.plan.site_setpoint_w for r in recs[first:]]
        assert backing_off[:10] == pytest.approx([800e3 - 100e3 * i for i in range(8)] + [0.0, 0.0], abs=20_000)
        last = recs[-1]
        assert (last.plan.mode, last.plan.decided_by, last.plan.site_setpoint_w) == ("conservative", "failsafe", 0.0)
        assert {a.code for a in rig.hub.alarms.active() if a.source in ("control", "grid")} >= {
            "measurement_invalid",
            "device_comm",
        }
        rig.sim.silent("grid", on=False)
        recs = await rig.run(12)  # reconnect backoff doubled to 4 s while the meter was silent
        back = next(i for i, r in enumerate(recs) if r.plan.mode == "manual")
        assert back <= 8 and all(r.plan.mode == "manual" for r in recs[back:])
        assert not [a for a in rig.hub.alarms.active() if a.source == "grid" or a.code == "measurement_invalid"]
    finally:
        await rig.close()


async def test_killing_the_agent_returns_the_pcs_to_zero_within_the_revert_time(tmp_path: Path) -> None:
    cycle_s = 0.5
    revert_s = max(2.0, 5 * cycle_s)  # agent.live.loop.REVERT_FACTOR cycles

    def charging(pcs: dict[str, Pcs]) -> bool:
        return sum(p.power_w for p in pcs.values()) <= -790_000.0

    def at_zero(pcs: dict[str, Pcs]) -> bool:
        return all(abs(p.power_w) <= 1_000.0 for p in pcs.values())

    async with overridden_agent(tmp_path, cycle_s, -800_000.0, charging) as (sim, agent):
        back_to_zero_s = await kill_and_time(agent, sim, at_zero, revert_s + 2.0)
        # Not before the revert time (one missed write must not drop the plant) ...
        assert back_to_zero_s > revert_s - 2 * cycle_s
        # ... and within it plus the PCS's ramp-down and the simulator's tick.
        assert back_to_zero_s < revert_s + 1.0
        assert all(p.reverted for p in sim.model.plant.pcs.values())


async def test_a_frozen_agent_is_covered_by_the_revert_timer_and_takes_control_again_when_it_thaws(
    tmp_path: Path,
) -> None:
    # SIGSTOP: the process hangs (swapped out, a debugger, a stuck disk) without dying. The PCS must
    # not hold the last setpoint; when it runs again it resumes its cycles without a restart.
    cycle_s = 0.5
    revert_s = max(2.0, 5 * cycle_s)

    def charging(pcs: dict[str, Pcs]) -> bool:
        return sum(p.power_w for p in pcs.values()) <= -790_000.0

    def at_zero(pcs: dict[str, Pcs]) -> bool:
        return all(abs(p.power_w) <= 1_000.0 for p in pcs.values())

    async with overridden_agent(tmp_path, cycle_s, -800_000.0, charging) as (sim, agent):
        pcs = sim.model.plant.pcs
        agent.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            while not at_zero(pcs):
                assert time.monotonic() - frozen < revert_s + 2.0, {p.id: p.power_w for p in pcs.values()}
                await asyncio.sleep(0.05)
            assert all(p.reverted for p in pcs.values())
            await asyncio.sleep(2 * cycle_s)
            assert at_zero(pcs)  # and it stays there while the agent is frozen
        finally:
            agent.send_signal(signal.SIGCONT)
        thawed = time.monotonic()
        # the override (10 min) is still on: the agent writes it again, ramping from the measured 0 W
        back_s = 790_000.0 / (RAMP_W_PER_S * BETWEEN_READINGS_RAMP_FRACTION) + 5.0
        while not charging(pcs):
            assert time.monotonic() - thawed < back_s, {p.id: p.power_w for p in pcs.values()}
            await asyncio.sleep(0.05)
        assert agent.poll() is None and not any(p.reverted for p in pcs.values())
        agent.send_signal(signal.SIGTERM)
        _, err = agent.communicate(timeout=15)
        assert agent.returncode == 0, err.decode()[-2000:]
        assert b"Traceback" not in err
