"""bench/ramp_bench.py's split of the seconds over the limit by cause: with the battery at its power
limit, beyond the PCS's own grid-power loop (its response to the load alone), and the rest."""

from __future__ import annotations

import numpy as np
import pytest

from bench.ramp_bench import LIMIT_W_PER_S, over_limit_causes

POWER_W = 2_500_000.0


def per_s(*values_w: float) -> np.ndarray:
    return np.repeat(np.asarray(values_w, dtype=np.float64), 10)  # 1 s of 0.1 s samples each


def test_each_second_over_the_limit_counts_under_one_cause() -> None:
    # 1 s averages 1000, 1300, 1300, 1050 kW: +300 and -250 kW/s are over the 200 kW/s limit
    grid = per_s(1.0e6, 1.3e6, 1.3e6, 1.05e6)
    battery = per_s(0.0, 1.0e6, 1.0e6, POWER_W)  # at its power limit in the last second only
    loop = per_s(0.0, 250e3, 250e3, 250e3)  # the PCS's loop alone moved the first change by 250 kW
    c = over_limit_causes(grid, battery, POWER_W, loop)
    assert LIMIT_W_PER_S == 200_000.0
    assert (c["over"], c["at_power_limit"], c["beyond_pcs_loop"], c["left"]) == pytest.approx((2 / 3, 1 / 3, 1 / 3, 0))
    assert c["seconds"] == [
        (0, pytest.approx(300e3), pytest.approx(250e3), False),
        (2, pytest.approx(-250e3), 0.0, True),
    ]
    # in setpoint mode (no PCS loop) the first second is left to the agent
    c = over_limit_causes(grid, battery, POWER_W, None)
    assert (c["beyond_pcs_loop"], c["left"]) == pytest.approx((0.0, 1 / 3))
    assert c["seconds"][0][2] is None


def test_a_loop_response_within_the_limit_leaves_the_second_to_the_agent() -> None:
    grid = per_s(1.0e6, 1.25e6)
    loop = per_s(0.0, 150e3)  # the PCS's share: 150 kW; the other 100 kW the reference's
    c = over_limit_causes(grid, per_s(0.0, 0.0), POWER_W, loop)
    assert (c["over"], c["beyond_pcs_loop"], c["left"]) == pytest.approx((1.0, 0.0, 1.0))
