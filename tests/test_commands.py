"""The one translation of a plan into PCS commands (agent.control.commands), used live and by the replay."""

from __future__ import annotations

import math

import pytest

from agent.control.commands import pcc_command, setpoint_w
from agent.model.plan import GridControl, PccLimits, Plan

LIM = PccLimits(0.25, 600e3, 500e3)


def plan(setpoints: dict[str, float], gc: GridControl | None = None) -> Plan:
    return Plan(1, "auto", 0.0, 0.0, "balance", "r", (), setpoints, {}, grid_control=gc)


@pytest.mark.parametrize(
    ("setpoints", "expected"),
    [({"p1": 1e5}, 1e5), ({"p1": -2e5}, -2e5), ({"p1": math.nan}, 0.0), ({"p1": math.inf}, 0.0), ({}, 0.0)],
)
def test_setpoint_is_the_plans_or_zero(setpoints: dict[str, float], expected: float) -> None:
    assert setpoint_w(plan(setpoints), "p1") == expected


@pytest.mark.parametrize(
    ("gc", "expected"),
    [
        (GridControl(3e6, 150e3, 0.0, {"p1": LIM}), (3e6, 150e3, 0.25, 600e3, 500e3, 0.0)),
        (GridControl(3e6, 150e3, -1e7, {"p1": LIM}), (3e6, 150e3, 0.25, 600e3, 500e3, -1e7)),
        (None, None),  # no grid-power control this cycle: follow the setpoint
        (GridControl(3e6, 150e3, 0.0, {"p2": LIM}), None),  # not for this PCS
        (GridControl(math.nan, 150e3, 0.0, {"p1": LIM}), None),  # never a non-finite target
        (GridControl(3e6, math.inf, 0.0, {"p1": LIM}), None),
        (GridControl(3e6, 150e3, math.nan, {"p1": LIM}), None),
    ],
)
def test_grid_command(gc: GridControl | None, expected: tuple[float, ...] | None) -> None:
    c = pcc_command(plan({"p1": 0.0}, gc), "p1")
    if expected is None:
        assert c is None
    else:
        assert c is not None
        assert (c.target_w, c.ramp_w_per_s, c.share, c.max_discharge_w, c.max_charge_w, c.grid_min_w) == expected
