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
from typing import Final

from agent.control.cycle import Cycle
from agent.control.ramp_reference import BETWEEN_READINGS_RAMP_FRACTION, meter_average_grid
from agent.control.window import Window
from agent.model.plan import Bound

MAX_GAP_S: Final = 10.0  # a longer gap between cycles (restart, stall) starts the ramp reference afresh

# Grid-power (PCC) control: the PCS move their grid reference at this fraction of the limit. The
# utility sees 1 s averages; the reference's own slope adds up to the ramp setting to one second's
# change, and the local loop's tracking error (the inverter's lag, ~0.1 s, times the load's own
# slope: ~140 kW at 1.4 MW/s, mostly cancelled between neighbouring seconds) adds the rest. A 25 %
# margin (50 kW/s at 200 kW/s) covers that error without tuning it to any particular trace.
PCC_RAMP_FRACTION: Final = 0.75
# Setpoint mode: the plan moves the grid by at most this fraction of the limit per cycle. A PCS
# follows a new setpoint with a first-order lag (~0.1 s), so about tau/cycle of every setpoint change
# leaks into that second's grid average: planned at exactly the limit, every second in which the grid
# catches up after a swing ends just over it. On the month's savings bench (1 s, 200 kW/s) planning at
# the limit put 15.5 % of seconds over it, more than the 6.4 % without a battery; at 0.9 x, 1.9 %.
SETPOINT_RAMP_FRACTION: Final = 0.75
# When the site may export, the PCS's grid floor is this far below anything a site exports
# (the floor of the vendor register): effectively none.
PCC_NO_FLOOR_W: Final = -10_000_000.0


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


def ramp(w: Window, c: Cycle) -> Window:
    """Controller 5: keep the grid import's change within the limit (or record that the PCS in
    grid-power control hold it: agent.control.pcc)."""
    if not c.snap.grid_up:
        return w
    lo, hi = w.lo, w.hi
    if c.pcc_off:  # the PCS watch took these out of grid-power control: they follow setpoints
        off = ", ".join(sorted(c.pcc_off))
        why = f"{off}: out of grid-power control (its grid meter disagrees with the site's), following setpoints"
        w = w.bound(lo, hi, w.lo_src, w.hi_src, Bound("pcc_latch", lo, hi, why))
    if c.pcc:
        pcc_ramp = c.cfg.ramp_limit_w_per_s * PCC_RAMP_FRACTION
        why = f"delegated: PCS in grid-power control hold {pcc_ramp:.0f} W/s"
        return w.bound(lo, hi, w.lo_src, w.hi_src, Bound("ramp", lo, hi, why))
    if not c.net_ok:
        return w
    grid_now = c.grid_w if c.meas_ok else math.nan  # a stale or bad grid reading says nothing of the meter
    ref = meter_average_grid(c.prev_grid_w, grid_now, c.dt, c.cfg.load_changes_at_readings)
    frac = SETPOINT_RAMP_FRACTION if c.cfg.load_changes_at_readings else BETWEEN_READINGS_RAMP_FRACTION
    win = ramp_window(c.net, ref, c.dt, c.cfg.ramp_limit_w_per_s * frac)
    if win is None or not (win[0] > lo or win[1] < hi):
        return w
    a, b = win
    lo_src, hi_src = w.lo_src, w.hi_src
    if a > hi:
        lo_src = hi_src
        lo = hi
    elif b < lo:
        hi_src = lo_src
        hi = lo
    else:
        if a > lo:
            lo, lo_src = a, "ramp"
        if b < hi:
            hi, hi_src = b, "ramp"
    return w.bound(lo, hi, lo_src, hi_src, Bound("ramp", lo, hi, "grid import change within ramp_limit_w_per_s x dt"))
