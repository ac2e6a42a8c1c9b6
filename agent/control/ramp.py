"""Power support / ramp limiting (controller 5): the grid import may change by at most
`ramp_limit_w_per_s` x dt between cycles, in both directions, however fast the GPU load swings.

The reference is the grid import the previous cycle planned (net load - battery setpoint then),
so with a battery that can follow, the grid ramp is within the limit from the cycle after a load
step. The battery takes the difference and gives it back as the grid catches up at the limit;
lower-priority controllers choose where inside the window the grid goes, so the battery returns
to their planned trajectory at the ramp limit itself and cannot drift to empty or full.

After a discontinuity the reference is where the plant is, not where the plan put it: the
measured grid when the meters put the battery where the PCS cannot be on its way between the last
two plans, give or take the lag margin (on_its_way; an override by someone else, the PCS reverted
to 0 W while the agent was frozen, devices restarted), when there is no plan to refer to (the first
cycle, the cycle after a lost measurement) or after a long gap. A cycle's step counts at most
STEP_S_MAX (1 s): the setpoint lands at once, in the utility's next 1 s average, however long the
agent was away (frozen 9 s with the PCS holding, the plan's grid has been where it is for 9 s: 9 s
x the limit in one step would be 9 steps in one).
With the load or PV unknown there is no grid to refer to: the battery's own change is held within
the limit instead (from its measured output, else the plan), so the failsafe ramps out too. Where a
higher-priority bound (a safety trip: BMS fault, lost PCS, no export) leaves no room inside the
ramp window, the step is taken and the plan's ramp bound says which controller forced it.

There is no slower, first-order return (a `ramp_return_s` setting existed unused and was removed):
returning at the ramp limit is the fastest return the limit allows, so it drifts least and costs
the economic controllers nothing; a slower return would only hold the battery off their plan longer.
(PCS in grid-power control are different: there the reference's slope shares the limit with the
PCS loop's own tracking error, and it approaches the target in proportion to the battery's use of
its window: pcc.py says why. Holding it still while that error spends a second's budget is a slower
return too: measured, the move it defers lands in the seconds after, so only an operator's command,
handed over at the full ramp, waits for the budget: pcc.reference_ramp.)
"""

from __future__ import annotations

import math
from typing import Final

from agent.control.begin import finite
from agent.control.cycle import Cycle
from agent.control.ramp_reference import BETWEEN_READINGS_RAMP_FRACTION, meter_average_grid
from agent.control.window import Window
from agent.model.plan import Bound

NAN: Final = math.nan
MAX_GAP_S: Final = 10.0  # a longer gap between cycles (restart, stall) starts the ramp reference afresh
STEP_S_MAX: Final = 1.0  # the longest time one cycle's step may count (above)

# Grid-power (PCC) control: the PCS move their grid reference at up to this fraction of the limit
# (agent.control.pcc.reference_ramp: in proportion to the battery's use of its window). The
# utility sees 1 s averages; the reference's own slope adds up to this fraction of the limit to one
# second's change, and the local loop's tracking error adds the rest: its response time (60 ms for
# the simulator's PCS: 3 samples of 20 ms, agent.offline.pcc_loop) times the load's own slope, 64-80
# kW/s when the load slews at 1.2-1.5 MW/s the way the reference is already moving
# (tests/test_pcc_slew.py). A 25 % margin (0.75) was not enough for that: 213-224 kW/s in those
# cases, 0.17 % of seconds over the limit on 200stepsync x 600 and 3.2-3.7 % at 1,000 nodes
# (bench/ramp_bench.py); at half the limit, the fraction the 1 s plan and the fast lane use when the
# load moves between their readings (ramp_reference.BETWEEN_READINGS_RAMP_FRACTION), 0.00 % and
# 1.7-2.3 % (most of it with the battery at its power limit). At 1,000 nodes the load slews at up to
# 3.3 MW/s, whose ~200 kW of tracking error take the whole limit: what is left over 0.1 % there, and
# what a slower reference does about it, is in BENCHMARKS.md ("Issue 14: PCC at 1,000 nodes").
PCC_RAMP_FRACTION: Final = BETWEEN_READINGS_RAMP_FRACTION
# Setpoint mode: the plan moves the grid by at most this fraction of the limit per cycle. A PCS
# follows a new setpoint with a first-order lag (~0.1 s), so about tau/cycle of every setpoint change
# leaks into that second's grid average: planned at exactly the limit, every second in which the grid
# catches up after a swing ends just over it. On the month's savings bench (1 s, 200 kW/s) planning at
# the limit put 15.5 % of seconds over it, more than the 6.4 % without a battery; at 0.9 x, 1.9 %.
SETPOINT_RAMP_FRACTION: Final = 0.75
# When the site may export, the PCS's grid floor is this far below anything a site exports
# (the floor of the vendor register): effectively none.
PCC_NO_FLOOR_W: Final = -10_000_000.0


def counted_s(dt: float) -> float:
    """Seconds one cycle's step counts for: the cycle, at most STEP_S_MAX (the setpoint lands at once,
    in the meter's next 1 s average); STEP_S_MAX when the cycle's length is unknown (NaN, <= 0)."""
    return dt if 0.0 < dt <= STEP_S_MAX else STEP_S_MAX


def ramp_window(net_w: float, prev_grid_w: float, dt: float, limit_w_per_s: float) -> tuple[float, float] | None:
    """Battery window [lo, hi] keeping |grid - prev_grid| <= limit x dt, or None when not applicable."""
    if limit_w_per_s <= 0 or not math.isfinite(prev_grid_w) or not 0.0 < dt <= MAX_GAP_S:
        return None
    step = limit_w_per_s * dt
    # grid = net - battery  =>  battery in [net - prev - step, net - prev + step]
    base = net_w - prev_grid_w
    return base - step, base + step


def reference(c: Cycle) -> tuple[float, float, bool]:
    """(grid import W the ramp refers to, seconds its step counts, whether that is the plan's), or
    NaN W for none.

    The previous plan, unless the meters put the battery outside where the PCS can be on its way
    to that plan (between the two plans before, widened by the lag margin the plan leaves: the
    limit's remaining (1 - SETPOINT_RAMP_FRACTION) x dt), or there is none, or the gap is long:
    then the measured grid. Either counts at most STEP_S_MAX.

    Why between the two plans: a PCS follows a new setpoint with a first-order lag (~0.1 s), so
    at the next reading it is still part of the way from the setpoint before (e^-2, 14 % of the
    step, at a 0.2 s cycle). Checked against the last plan alone with the margin, that lag (100 kW
    and more after a 1 MW load step) read as a discontinuity almost every 0.2 s cycle and the
    reference became the measured grid: the battery then ramped from where the lag left it instead
    of cancelling the step (5.7 % of seconds over the limit against 1.2 % on the shared trace,
    bench/ramp_bench.py). An override, a PCS reverted to 0 W or a restart puts it outside both."""
    dt, prev = c.dt, c.prev_grid_w
    # Live, a setpoint step lands at once, so it counts one second at most. In a replay of a trace
    # sampled at the cycle the load changes only at the readings and the grid's average may move
    # over the whole step (a 60 s or 15 min trace: longer than MAX_GAP_S, no ramp bound at all, as
    # the limit lies below what such a trace resolves).
    short = dt if c.cfg.load_changes_at_readings and dt > 0.0 else counted_s(dt)
    if not c.meas_ok:  # the grid meter is bad: the plan, unless it is stale
        return (prev, short, True) if dt <= MAX_GAP_S else (NAN, short, False)
    meas = c.grid_w
    if not finite(prev) or not dt <= MAX_GAP_S:  # (NaN dt too)
        return meas, short, False
    planned_b = c.prev_battery_w
    if finite(planned_b):
        margin = c.cfg.ramp_limit_w_per_s * (1.0 - SETPOINT_RAMP_FRACTION) * short
        # A PCS's lag (~0.1 s) is over within a second: after that (a 1 s cycle, a late one, a
        # freeze with the PCS reverted to the setpoint before) it must be at the last plan itself.
        from_w = c.prev_from_w if dt < STEP_S_MAX else NAN
        if not on_its_way(c.net - meas, from_w, planned_b, margin):
            return meas, short, False
    return prev, short, True


def on_its_way(battery_w: float, from_w: float, to_w: float, margin_w: float) -> bool:
    """Whether a PCS measured at `battery_w` can be on its way from setpoint `from_w` (NaN: none)
    to `to_w` with its lag: between the two, widened by `margin_w`. Otherwise the plant is not where
    the plans put it (an override, a revert to 0 W, a restart)."""
    a = from_w if finite(from_w) else to_w
    lo, hi = (a, to_w) if a < to_w else (to_w, a)
    return lo - margin_w <= battery_w <= hi + margin_w


def _battery_ramp(w: Window, c: Cycle) -> Window:
    """Load or PV unknown: no grid to refer to; keep the battery's own change within the limit,
    from its measured output (else the plan)."""
    ref = c.snap.battery_w
    if not finite(ref):
        ref = c.prev_battery_w
    dt = c.dt
    if not finite(ref) or not 0.0 < dt <= MAX_GAP_S:
        return w
    step = c.cfg.ramp_limit_w_per_s * SETPOINT_RAMP_FRACTION * counted_s(dt)
    why = "battery change within ramp_limit_w_per_s x dt (load or PV unknown: no grid reference)"
    return _narrow(w, ref - step, ref + step, why)


def _narrow(w: Window, a: float, b: float, why: str) -> Window:
    """The window narrowed to its overlap with [a, b]; with none, held at the nearer edge of the
    higher-priority window, the bound naming the controller that forced the step."""
    lo, hi = w.lo, w.hi
    if not (a > lo or b < hi):
        return w
    lo_src, hi_src = w.lo_src, w.hi_src
    forced = ""
    if a > hi:
        lo_src, lo, forced = hi_src, hi, hi_src
    elif b < lo:
        hi_src, hi, forced = lo_src, lo, lo_src
    else:
        if a > lo:
            lo, lo_src = a, "ramp"
        if b < hi:
            hi, hi_src = b, "ramp"
    if forced:
        why = f"{why}; step beyond it forced by {forced}"
    return w.bound(lo, hi, lo_src, hi_src, Bound("ramp", lo, hi, why, forced))


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
        why = f"delegated: PCS in grid-power control move their reference at up to {pcc_ramp:.0f} W/s"
        return w.bound(lo, hi, w.lo_src, w.hi_src, Bound("ramp", lo, hi, why))
    if c.cfg.ramp_limit_w_per_s <= 0.0:
        return w
    if not c.net_ok:
        return _battery_ramp(w, c)
    ref, dt, from_plan = reference(c)
    if from_plan:  # the meter has already averaged part of this cycle's step
        grid_now = c.grid_w if c.meas_ok else math.nan  # a stale or bad grid reading says nothing of the meter
        ref = meter_average_grid(ref, grid_now, dt, c.cfg.load_changes_at_readings)
    frac = SETPOINT_RAMP_FRACTION if c.cfg.load_changes_at_readings else BETWEEN_READINGS_RAMP_FRACTION
    win = ramp_window(c.net, ref, dt, c.cfg.ramp_limit_w_per_s * frac)
    if win is None:
        return _battery_ramp(w, c)
    return _narrow(w, win[0], win[1], "grid import change within ramp_limit_w_per_s x dt")
