"""The ramp bound's reference: the meter's last second, estimated (agent.control.ramp_reference)."""

from __future__ import annotations

import math

import pytest

from agent.control.ramp_reference import meter_average_grid, meter_share


@pytest.mark.parametrize(
    ("dt", "share"),
    [(1.0, 0.5), (0.2, 0.02), (0.5, 0.125), (0.1, 0.005), (2.0, 0.75), (4.0, 0.875)],
)
def test_meter_share_of_a_change_in_the_last_cycle(dt: float, share: float) -> None:
    assert meter_share(dt) == pytest.approx(share, rel=1e-12)


@pytest.mark.parametrize(
    ("prev", "now", "dt", "aligned", "ref"),
    [
        (3e6, 4e6, 1.0, False, 3.5e6),  # a 1 MW rise at an unknown instant of the last second
        (3e6, 1e6, 1.0, False, 2e6),  # and a fall
        (3e6, 4e6, 0.2, False, 3.02e6),  # at 0.2 s the next cycle cancels it within the same second
        (3e6, 4e6, 1.0, True, 3e6),  # a trace sampled at the cycle: the load changed just now
        (3e6, math.nan, 1.0, False, 3e6),  # grid reading unknown: the plan
        (math.nan, 4e6, 1.0, False, math.nan),  # no plan: no reference (the ramp bound is off)
    ],
)
def test_meter_average_grid(prev: float, now: float, dt: float, aligned: bool, ref: float) -> None:
    got = meter_average_grid(prev, now, dt, aligned)
    assert (math.isnan(got) and math.isnan(ref)) or got == pytest.approx(ref, rel=1e-12)
