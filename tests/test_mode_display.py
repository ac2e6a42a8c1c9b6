"""A mode that says one thing and does another (issue 15, item 7).

With a bad grid meter the plan's mode is "conservative" (hold 0 W) while ramp support, a bound
above every mode, still discharges for a load step. That is kept (README: "Modes and the bounds
above them"); the API's `mode_bound` and the dashboard now name the bound that set the power.
Before, the site read-out said only "conservative". Real loop, real Modbus, stepped clock.
"""

from __future__ import annotations

from pathlib import Path

from agent.api.views import site_out
from agent.model.acting import mode_bound
from drivers import keys as k
from tests.loop_rig import Rig


async def test_conservative_mode_discharging_for_ramp_support_names_the_ramp_bound(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path, soc=60.0)
    try:
        calm = (await rig.run(4))[-1]
        assert calm.plan.mode == "auto"
        assert site_out(calm, rig.hub.operator, []).mode_bound is None  # the mode's own controller
        rig.sim.corrupt("grid", k.POWER_W, float("nan"))  # the grid meter goes bad
        held = (await rig.run(2))[-1]
        assert (held.plan.mode, held.plan.decided_by) == ("conservative", "failsafe")
        assert held.plan.site_setpoint_w == 0.0
        assert site_out(held, rig.hub.operator, []).mode_bound is None  # holding: what the mode says
        rig.sim.load_offset(2_000_000.0)  # a 2 MW GPU load step
        rec = (await rig.step())
        while rec.plan.decided_by != "ramp":  # the step reaches the load meter within a poll or two
            assert rec.snapshot.seq < held.snapshot.seq + 4
            rec = await rig.step()
        assert rec.plan.mode == "conservative"
        assert rec.plan.site_setpoint_w > 1_000_000.0  # discharging for ramp support
        out = site_out(rec, rig.hub.operator, [])
        assert (out.mode, out.decided_by, out.mode_bound) == ("conservative", "ramp", "ramp")
        assert out.reason == "smoothing the grid import within the ramp limit while the load swings"
        assert mode_bound(rec.plan) == "ramp"
    finally:
        await rig.close()
