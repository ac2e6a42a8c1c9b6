"""The PCS writer's pure parts: which grid-power (PCC) registers a PCS gets, and the revert timer.
(The writes themselves go over real Modbus TCP in test_loop_integration.py and
test_pcc_integration.py.)"""

from __future__ import annotations

import math

import pytest

from agent.live.pcs_writer import pcc_values
from agent.model.clock import revert_s
from agent.model.plan import GridControl, PccLimits, Plan
from drivers import keys as k

GC = GridControl(
    target_w=1_000_000.0,
    ramp_w_per_s=150_000.0,
    grid_min_w=0.0,
    pcs={"pcs1": PccLimits(0.25, 800_000.0, 600_000.0)},
)


def plan_with(gc: GridControl | None) -> Plan:
    return Plan(1, "auto", 0.0, 0.0, "test", "", (), {"pcs1": 0.0}, {}, grid_control=gc)


def test_a_pcs_in_the_plans_grid_control_gets_every_mode_register() -> None:
    assert pcc_values(plan_with(GC), "pcs1") == (
        True,
        {
            k.PCC_ENABLE: 1.0,
            k.PCC_TARGET_W: 1_000_000.0,
            k.PCC_RAMP_W_PER_S: 150_000.0,
            k.PCC_SHARE: 0.25,
            k.PCC_MAX_DISCHARGE_W: 800_000.0,
            k.PCC_MAX_CHARGE_W: 600_000.0,
            k.PCC_GRID_MIN_W: 0.0,
        },
    )


@pytest.mark.parametrize(
    "gc",
    [
        None,  # every PCS follows its setpoint
        GridControl(1e6, 1.5e5, 0.0, {"pcs2": PccLimits(1.0, 1.0, 1.0)}),  # another PCS regulates
        GridControl(math.nan, 1.5e5, 0.0, {"pcs1": PccLimits(1.0, 1.0, 1.0)}),  # never a NaN target
        GridControl(1e6, math.inf, 0.0, {"pcs1": PccLimits(1.0, 1.0, 1.0)}),
        GridControl(1e6, 1.5e5, -math.inf, {"pcs1": PccLimits(1.0, 1.0, 1.0)}),
    ],
)
def test_otherwise_it_is_told_to_leave_the_mode(gc: GridControl | None) -> None:
    assert pcc_values(plan_with(gc), "pcs1") == (False, {k.PCC_ENABLE: 0.0})


@pytest.mark.parametrize(("cycle_s", "expected"), [(0.1, 2.0), (0.25, 2.0), (1.0, 5.0), (2.0, 10.0)])
def test_the_revert_timer_outlasts_one_missed_write(cycle_s: float, expected: float) -> None:
    assert revert_s(cycle_s, 1.0) == expected
