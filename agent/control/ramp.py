"""Power support / ramp limiting (controller 5): the grid import may change by at most
`ramp_limit_w_per_s` x dt between cycles, in both directions, however fast the GPU load swings.

The reference is the grid import the previous cycle planned (net load - battery setpoint then),
so with a battery that can follow, the grid ramp is within the limit from the cycle after a load
step. The battery takes the difference and gives it back as the grid catches up at the limit;
lower-priority controllers choose where inside the window the grid goes, so the battery returns
to their planned trajectory at the ramp limit itself and cannot drift to empty or full.

There is no slower, first-order return (a `ramp_return_s` setting existed unused and was removed):
returning at the ramp limit is the fastest return the limit allows, so it drifts least and costs
the economic controllers nothing; a slower return would only hold the battery off their plan longer.
"""

from __future__ import annotations

import math

MAX_GAP_S = 10.0  # a longer gap between cycles (restart, stall) starts the ramp reference afresh

# Grid-power (PCC) control: the PCS move their grid reference at this fraction of the limit. The
# utility sees 1 s averages; the reference's own slope adds up to the ramp setting to one second's
# change, and the local loop's tracking error (the inverter's lag, ~0.1 s, times the load's own
# slope: ~140 kW at 1.4 MW/s, mostly cancelled between neighbouring seconds) adds the rest. A 25 %
# margin (50 kW/s at 200 kW/s) covers that error without tuning it to any particular trace.
PCC_RAMP_FRACTION = 0.75
# Setpoint mode: the plan moves the grid by at most this fraction of the limit per cycle. A PCS
# follows a new setpoint with a first-order lag (~0.1 s), so about tau/cycle of every setpoint change
# leaks into that second's grid average: planned at exactly the limit, every second in which the grid
# catches up after a swing ends just over it. On the month's savings bench (1 s, 200 kW/s) planning at
# the limit put 15.5 % of seconds over it, more than the 6.4 % without a battery; at 0.9 x, 1.9 %.
SETPOINT_RAMP_FRACTION = 0.75
# When the site may export, the PCS's grid floor is this far below anything a site exports
# (the floor of the vendor register): effectively none.
PCC_NO_FLOOR_W = -10_000_000.0


def ramp_window(
    net_w: float, prev_grid_w: float, dt: float, limit_w_per_s: float
) -> tuple[float, float] | None:
    """Battery window [lo, hi] keeping |grid - prev_grid| <= limit x dt, or None when not applicable."""
    if limit_w_per_s <= 0 or not math.isfinite(prev_grid_w) or not 0.0 < dt <= MAX_GAP_S:
        return None
    step = limit_w_per_s * dt
    # grid = net - battery  =>  battery in [net - prev - step, net - prev + step]
    base = net_w - prev_grid_w
    return base - step, base + step
