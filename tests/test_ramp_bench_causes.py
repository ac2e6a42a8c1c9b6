"""bench/ramp_bench.py's split of the seconds over the limit by cause: with the battery at its power
limit, beyond the PCS's own grid-power loop (its response to the load alone), over with the
reference held (that loop at the battery's power), and the rest."""

from __future__ import annotations

import numpy as np
import pytest

from agent.offline.pcc_loop import held_reference_change, loop_residual, second_changes
from bench.ramp_bench import DT, LIMIT_W_PER_S, over_limit_causes

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
        (0, pytest.approx(300e3), pytest.approx(250e3), False, None),
        (2, pytest.approx(-250e3), 0.0, True, None),
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


def drop(battery_before_w: float) -> tuple[np.ndarray, np.ndarray]:
    """(load, battery): 4.4 MW for 2 s, then 2.7 MW less within 0.1 s, the battery at
    `battery_before_w` before it and taking the drop after."""
    load = per_s(4.4e6, 4.4e6, 1.7e6)
    return load, np.r_[np.full(20, battery_before_w), np.full(10, battery_before_w - 2.7e6)]


@pytest.mark.parametrize(
    ("battery_before_w", "power_w", "change_w"),
    [
        (0.3e6, 1e12, -162e3),  # no power limit: the loop's response alone, 2.7 MW x 60 ms
        (1.2e6, POWER_W, -177.2e3),  # the battery ends at -1.5 MW: its command saturates briefly
        (0.3e6, POWER_W, -265.6e3),  # at -2.4 MW of its 2.5 MW: the loop reaches it later
    ],
)
def test_the_pcs_at_its_power_with_its_reference_held_leaves_more_of_a_drop_than_its_loop_alone(
    battery_before_w: float, power_w: float, change_w: float
) -> None:
    load, _ = drop(battery_before_w)
    loop = second_changes(loop_residual(load, DT, 0.1, 0.02), DT)
    assert loop[1] == pytest.approx(-162e3, abs=1.0)
    assert held_reference_change(load[10:], battery_before_w, DT, power_w, 0.1, 0.02) == pytest.approx(
        change_w, abs=100.0
    )


@pytest.mark.parametrize(("battery_before_w", "cause"), [(0.3e6, "beyond_held"), (1.2e6, "left")])
def test_a_second_over_the_limit_with_the_reference_held_is_not_the_references(
    battery_before_w: float, cause: str
) -> None:
    # the grid's 1 s average fell by 236 kW in the drop's second; the loop alone: -162 kW, within the
    # limit; the PCS at the battery's power with its reference held: -266 kW (over: the reference's
    # part is +30 kW) from +0.3 MW, -177 kW (within: the reference's, -59 kW) from +1.2 MW
    load, battery = drop(battery_before_w)
    grid = per_s(3.0e6, 3.0e6, 2.764e6)
    loop = loop_residual(load, DT, 0.1, 0.02)
    c = over_limit_causes(grid, battery, POWER_W, loop, load)
    assert c["over"] == pytest.approx(0.5)
    assert (c["at_power_limit"], c["beyond_pcs_loop"]) == (0.0, 0.0)
    assert c[cause] == pytest.approx(0.5)
    (s, dg, dl, at_limit, held) = c["seconds"][0]
    assert (s, at_limit) == (1, False)
    assert (dg, dl) == pytest.approx((-236e3, -162e3), abs=1.0)
    assert held == pytest.approx(-265.6e3 if cause == "beyond_held" else -177.2e3, abs=100.0)
