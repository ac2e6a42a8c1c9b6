"""PCS in grid-power (PCC) control, over real Modbus TCP: the agent sets target and ramp, the PCS
hold the grid ramp on their own meter (simulated local loop, 20 ms samples, inside the physics).

The deterministic rig (tests/loop_rig.py) runs one agent cycle, then advances the physics by one
cycle; the grid as a utility sees it is taken from the simulated meter's energy counters (the
average over each second). The kill test runs `ems-agent run` against a real-time simulator.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from agent.control.ramp import PCC_RAMP_FRACTION
from agent.live.pcc_watch import WINDOW_CYCLES
from agent.model.config import load_site
from drivers import keys as k
from simulators.physics import Pcs
from tests.agent_process import kill_and_time, overridden_agent
from tests.loop_rig import Rig, site_text

RAMP_W_PER_S = 200_000.0  # demo.toml [control] ramp_limit_w_per_s


def _meter_wh(rig: Rig) -> float:
    g = rig.sim.model.grid
    return g.import_wh - g.export_wh


async def test_a_load_step_is_absorbed_by_the_pcs_in_grid_control_within_the_ramp_limit(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path, pcc=True)
    try:
        before = await rig.run(3)
        e0 = _meter_wh(rig)
        before += await rig.run(1)
        plant = rig.sim.model.plant
        # The agent put every PCS into the mode, with shares that add up, and reads the mode back.
        gc = before[-1].plan.grid_control
        assert gc is not None and set(gc.pcs) == {p.id for p in rig.site.pcs}
        assert sum(lim.share for lim in gc.pcs.values()) == pytest.approx(1.0)
        assert gc.grid_min_w == 0.0  # demo.toml: no export
        assert all(p.pcc_on for p in plant.pcs.values())
        assert all(p.pcc_active.value == 1.0 for p in before[-1].snapshot.pcs)
        assert not [a for a in rig.hub.alarms.active() if a.code in ("pcc_inactive", "write_failed")]

        battery_w = sum(p.rated_w for p in rig.site.pcs)  # 4 x 630 kW
        step_w = 0.5 * battery_w
        e = _meter_wh(rig)
        pre = (e - e0) * 3600.0 / rig.site.cycle_s  # the second before the step
        avg = []  # grid import averaged over each second, as a utility meter sees it
        rig.sim.load_offset(step_w)  # +1.26 MW from the next physics tick on
        first_battery = None
        for i in range(20):
            await rig.step()
            e1 = _meter_wh(rig)
            avg.append((e1 - e) * 3600.0 / rig.site.cycle_s)
            e = e1
            if i == 0:
                first_battery = rig.sim.model.battery_w
        assert first_battery is not None
        # The PCS took the step within the second it came in (the agent had not even seen it) ...
        assert first_battery > 0.8 * step_w
        steps = [b - a for a, b in itertools.pairwise([pre, *avg])]
        # ... so no second's average moved by more than the limit, the step's own second included.
        assert max(abs(s) for s in steps) <= RAMP_W_PER_S, [round(s) for s in steps]
        assert steps[0] < 0.5 * RAMP_W_PER_S  # the step itself shows as a small blip
        # The battery hands the load back to the grid as fast as its use of its window asks
        # (agent.control.pcc.reference_ramp): from half its window at half the PCS's full ramp,
        # closing in with the time constant window / full ramp, ~25 s: 45 % of the step left at 20 s.
        tau_s = battery_w / (RAMP_W_PER_S * PCC_RAMP_FRACTION)
        assert rig.sim.model.battery_w == pytest.approx(step_w * math.exp(-20.0 / tau_s), rel=0.05)
        assert all(b > a for a, b in itertools.pairwise(avg[1:]))  # the grid takes it over steadily
        assert min(avg) >= 0.0
    finally:
        await rig.close()


async def test_losing_the_grid_meter_takes_the_pcs_out_of_grid_control(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path, pcc=True, timeout_s=None)  # the meter times out on purpose
    try:
        await rig.run(3)
        assert all(p.pcc_on for p in rig.sim.model.plant.pcs.values())
        rig.sim.silent("grid")
        recs = await rig.run(6)  # the meter's readings go stale after 3 cycles
        last = recs[-1]
        assert last.plan.grid_control is None
        assert last.plan.mode == "conservative"
        assert not any(p.pcc_on for p in rig.sim.model.plant.pcs.values())
        for p in last.snapshot.pcs:
            assert p.pcc_active.value == 0.0
    finally:
        await rig.close()


async def test_a_tripped_pcs_is_isolated_and_the_others_keep_holding_the_grid(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path, pcc=True)
    try:
        await rig.run(3)
        e0 = _meter_wh(rig)
        await rig.run(1)
        e = _meter_wh(rig)
        avg = [(e - e0) * 3600.0 / rig.site.cycle_s]
        rig.sim.load_offset(600_000.0)
        rig.sim.pcs_trip("pcs1")
        recs = []
        for _ in range(3):
            recs.append(await rig.step())
            e1 = _meter_wh(rig)
            avg.append((e1 - e) * 3600.0 / rig.site.cycle_s)
            e = e1
        last = recs[-1]
        assert last.plan.grid_control is not None
        assert set(last.plan.grid_control.pcs) == {"pcs2", "pcs3", "pcs4"}
        assert sum(lim.share for lim in last.plan.grid_control.pcs.values()) == pytest.approx(1.0)
        assert last.plan.pcs_setpoints_w["pcs1"] == 0.0
        assert rig.sim.model.plant.pcs["pcs1"].power_w == 0.0
        # the step came in with pcs1 tripped: the other three took it, the grid moved at the ramp
        assert max(abs(b - a) for a, b in itertools.pairwise(avg)) <= RAMP_W_PER_S, avg
        assert sum(p.power_w for p in rig.sim.model.plant.pcs.values()) > 200_000.0  # still carrying most of it
    finally:
        await rig.close()


async def test_a_pcs_that_does_not_report_the_mode_raises_an_alarm(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path, pcc=True)
    try:
        await rig.run(3)
        assert not [a for a in rig.hub.alarms.active() if a.code == "pcc_inactive"]
        rig.sim.corrupt("pcs2", k.PCC_ACTIVE, 0.0)  # its read-back says setpoint mode
        await rig.run(1)
        active = {(a.code, a.source) for a in rig.hub.alarms.active()}
        assert ("pcc_inactive", "pcs2") in active
        assert ("pcc_inactive", "pcs1") not in active
        rig.sim.corrupt("pcs2", k.PCC_ACTIVE, None)
        await rig.run(1)
        assert not [a for a in rig.hub.alarms.active() if a.code == "pcc_inactive"]
    finally:
        await rig.close()


async def test_a_pcs_whose_ct_is_reversed_leaves_grid_control_until_an_operator_acknowledges(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path, pcc=True)
    try:
        await rig.run(3)
        rig.sim.pcs_ct("pcs2", -1.0)  # its meter now reads minus the grid: its loop pushes the wrong way
        recs = await rig.run(WINDOW_CYCLES + 2)
        active = {a.id: a for a in rig.hub.alarms.active()}
        assert "pcc_meter_mismatch@pcs2" in active, sorted(active)
        assert "CT wiring" in active["pcc_meter_mismatch@pcs2"].message
        assert not [a for a in active if a.startswith("pcc_meter_mismatch@") and a != "pcc_meter_mismatch@pcs2"]
        gc = recs[-1].plan.grid_control
        assert gc is not None and set(gc.pcs) == {"pcs1", "pcs3", "pcs4"}  # the others hold the grid
        assert not rig.sim.model.plant.pcs["pcs2"].pcc_on  # back on its setpoint
        planned = recs[-1].plan.pcs_setpoints_w["pcs2"]
        assert rig.sim.model.plant.pcs["pcs2"].setpoint_w == pytest.approx(planned, abs=1000.0)  # register resolution
        # still out after more cycles: latched, not retried behind the operator's back
        await rig.run(3)
        assert not rig.sim.model.plant.pcs["pcs2"].pcc_on
        # the CT is fixed and the alarm acknowledged: back into grid-power control, alarm cleared
        rig.sim.pcs_ct("pcs2", 1.0)
        assert rig.hub.alarms.ack("pcc_meter_mismatch@pcs2", "operator")
        recs = await rig.run(2)
        gc = recs[-1].plan.grid_control
        assert gc is not None and "pcs2" in gc.pcs and rig.sim.model.plant.pcs["pcs2"].pcc_on
        assert not [a for a in rig.hub.alarms.active() if a.code == "pcc_meter_mismatch"]
        await rig.run(WINDOW_CYCLES + 2)  # and its meter now agrees: nothing found
        assert not [a for a in rig.hub.alarms.active() if a.code == "pcc_meter_mismatch"]
    finally:
        await rig.close()


async def test_a_pcc_site_needs_a_profile_with_the_mode(tmp_path: Path) -> None:
    text = site_text(pcc=True).replace('profile = "pcs_vendor_acme_pcc"', 'profile = "pcs_sunspec_70x"', 1)
    (tmp_path / "site.toml").write_text(text)
    from common.tomlcheck import ConfigError

    with pytest.raises(ConfigError, match=r"\[\[pcs\]\].*grid_control.*pcs_sunspec_70x.*pcc_enable"):
        load_site(tmp_path / "site.toml")


async def test_killing_the_agent_takes_the_pcs_out_of_grid_control_and_to_zero_within_the_revert_time(
    tmp_path: Path,
) -> None:
    cycle_s = 0.5
    revert_s = max(2.0, 5 * cycle_s)  # agent.live.loop.REVERT_FACTOR cycles

    # In grid control the PCS bring the battery to the override at their ramp (100 kW/s).
    def charging(pcs: dict[str, Pcs]) -> bool:
        return all(p.pcc_on for p in pcs.values()) and sum(p.power_w for p in pcs.values()) < -590_000.0

    def out_and_at_zero(pcs: dict[str, Pcs]) -> bool:
        return not any(p.pcc_on or abs(p.power_w) > 1_000.0 for p in pcs.values())

    async with overridden_agent(tmp_path, cycle_s, -600_000.0, charging, pcc=True) as (sim, agent):
        back_to_zero_s = await kill_and_time(agent, sim, out_and_at_zero, revert_s + 2.0)
        assert back_to_zero_s > revert_s - 2 * cycle_s  # one missed write does not drop the plant
        assert back_to_zero_s < revert_s + 1.0
        assert all(p.reverted and not p.pcc_on for p in sim.model.plant.pcs.values())
        values = sim.values(sim.site.pcs[0])
        assert values[k.PCC_ACTIVE] == 0  # and the PCS says so on its registers
