"""Where the ramp bound measures the grid's change from: the meter's last second, not the last plan.

The utility meter judges the change between consecutive 1 s averages of the grid import. The
agent writes a setpoint once a cycle and the PCS hold it until the next, so a load step at a
random instant inside a cycle reaches the grid until the next cycle cancels it. Measured from the
previous plan, as the ramp bound first did, the battery cancels the whole step a cycle late: at a
1 s cycle the meter sees the step's share in the second it happened and the same share again,
backwards, in the next: two ramps where the load made one. On 8xH100 training traces at a 1 s
cycle that put more seconds over the limit than no battery at all (issue 14, item 1).

Measured from the meter's estimated average instead, the next second continues from where the
meter already is: the battery cancels only the part of the step the meter has not yet seen and
the grid goes on from there at the ramp step. What a cycle cannot follow (a swing inside one
cycle) reaches the grid as the load made it, once, instead of twice; what it can follow (the
slower part) the battery still holds. At short cycles the next cycle cancels a step within the
meter's same second and the reference is, nearly, the plan again (see meter_share).

With the grid measurement not good, the previous plan is the reference (the ramp bound as before).

`tally` keeps the grid readings of the meter's running second (a whole second of the wall clock, as
the meter's 1 s averages are aligned with its clock) and the average of the second before: how much
of this second's ramp budget the grid has already used (`second_budget_w`). PCS in grid-power control
spend it with their loop's tracking error, and their reference may only have what is left
(agent.control.pcc.reference_ramp).
"""

from __future__ import annotations

import math
from typing import Final

from agent.control.state import MeterSecond

METER_S: Final = 1.0  # the utility's averaging window
# When the load changes between readings, the plan moves the grid by at most this fraction of the
# limit per cycle (agent.control.ramp.SETPOINT_RAMP_FRACTION, 0.75, when it changes only at them).
# The rest is the margin for what the load does inside the next cycle, which the meter sees and no
# setpoint written at its start can cancel, on top of the PCS's lag: the 8xH100 plateaus at 1000
# nodes wander by ~100 kW between seconds, and with the plan moving 150 kW/s (0.75 x 200 kW/s) the
# battery put more seconds over the limit than no battery on both traces (bench/ramp_bench.py); at
# 0.5 x on none of them, and fewer at 0.2 s cycles too.
BETWEEN_READINGS_RAMP_FRACTION: Final = 0.5
# A reading this close before a whole second belongs to that second: wall times carry rounding (a
# replay's 0.1 s steps from epoch timestamps land 1 us either side of the boundary).
SECOND_EDGE_S: Final = 1e-3
MIN_READINGS: Final = 2  # the fewest readings of a second that stand for its average (tally)


def meter_share(dt: float) -> float:
    """Expected share of a load change during the last cycle (dt s) that the meter's last second
    already averaged in, the change landing at a random instant of the cycle: for dt <= 1 s it fell
    in the meter's previous second with probability dt and then made up dt / 2 of it on average
    (0.5 dt^2: half at 1 s, 2 % at 0.2 s, where the next cycle cancels nearly every change within
    the same meter second); for a longer cycle, 1 - 1 / (2 dt)."""
    x = dt / METER_S
    return 0.5 * x * x if x <= 1.0 else 1.0 - 0.5 / x


def meter_average_grid(prev_plan_w: float, grid_now_w: float, dt: float, changes_at_readings: bool) -> float:
    """Estimate of the grid's average over the meter's last second (W): the grid the last cycle
    planned, moved toward the grid measured now by meter_share(dt). The plan alone when either is
    unknown, or when the load changes only at the agent's readings (`changes_at_readings`: an
    offline replay of a trace sampled at the cycle), where the meter's last second was the plan."""
    if changes_at_readings or not (math.isfinite(grid_now_w) and math.isfinite(prev_plan_w) and dt > 0.0):
        return prev_plan_w
    return prev_plan_w + meter_share(dt) * (grid_now_w - prev_plan_w)


def tally(m: MeterSecond, t_wall_s: float, grid_w: float, good: bool) -> MeterSecond:
    """The meter's running second with the grid reading `grid_w` at wall time `t_wall_s` (s since the
    epoch) counted when `good`. A reading in a later second closes the running one: its readings'
    average becomes the previous second's when it is the second right before and was read at least
    twice, else none is known: one reading is a point of the second, not its average (an agent at a
    1 s cycle reads each second once; its readings moved with the PCS loop's error at that instant
    and, taken for the average, held the reference back after a slew: p99 ramp 1-8 kW/s higher on 5
    of the 8 1 s runs of bench/ramp_bench.py at 600 and 1,000 nodes)."""
    if not math.isfinite(t_wall_s):
        return MeterSecond()
    key = math.floor(t_wall_s + SECOND_EDGE_S)
    if key == m.key:
        return MeterSecond(key=key, sum_w=m.sum_w + grid_w, n=m.n + 1, prev_avg_w=m.prev_avg_w) if good else m
    prev = m.sum_w / m.n if key == m.key + 1 and m.n >= MIN_READINGS else math.nan
    return MeterSecond(key=key, sum_w=grid_w if good else 0.0, n=1 if good else 0, prev_avg_w=prev)


def second_budget_w(m: MeterSecond, grid_w: float, dt: float, limit_w_per_s: float, up: bool) -> float:
    """What is left of the running second's ramp budget (W) for the grid's 1 s average to move further
    `up` (else down): the limit less the change already made against the second before, the second
    projected to its end with the present reading `grid_w` held (readings `dt` s apart); inf when the
    second before was not read or `grid_w` is not a number."""
    a = m.prev_avg_w
    if m.n == 0 or not (math.isfinite(a) and math.isfinite(grid_w)):
        return math.inf
    per_s = round(METER_S / dt) if 0.0 < dt < METER_S else 1
    rest = per_s - m.n if per_s > m.n else 0
    used = (m.sum_w + rest * grid_w) / (m.n + rest) - a
    return limit_w_per_s - used if up else limit_w_per_s + used
