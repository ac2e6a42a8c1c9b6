"""Plan tracking (controller 6p): the running interval of a dispatch plan, held in real time.

While a plan covers the cycle's time (the caller passes only a usable one: schedule.usable), it
replaces the heuristic economic controllers (time-of-use, balancing, demand shaving; compose.py):
- a target, the planned battery power of the running interval, corrected towards the planned
  state of charge at this point of the interval (the gap closed over one interval), so the
  battery ends the interval where the plan has it even when the load differs from the forecast;
- a bound, the plan's grid-import cap on the interval's average, held with the demand
  controller's interval accounting (credit and deficit over the time left) and its margins, so a
  load above the forecast is shaved down to the cap, and charging never lifts the interval above
  the cap nor above the level the month bills so far (see track); where the plan charges up to
  its cap, the charge fills the room there is under it, not only the planned power;
- a giveback: where the energy charged in the running interval would close it above both its own
  load's average and that level (DispatchPlan.billed_w: per slot, the higher of the peak billed and
  the site's own load's highest this month), the excess is given back over the rest of the
  interval: every interval closes at or under the site's own peak so far or its own load, so the
  month's billed peak is never above the site's without the battery (what has happened only,
  never a forecast: the guarantee holds whatever the load does next, up to the last cycle's step).
The safety and grid-support bounds above it (device limits, outage, reserve, export, ramp) keep
their priority: it only narrows the window they leave, and its target is clamped into it.
"""

from __future__ import annotations

from typing import Final

from agent.control.cycle import Cycle
from agent.control.demand import (
    CHARGE_MARGIN,
    INF,
    MARGIN,
    allowed_grid_w,
    interval_net_forecast_w,
    rest_allowed_w,
    rest_net_forecast_w,
)
from agent.control.state import month_peak
from agent.control.window import AUTO, Window
from agent.model.plan import Bound

# a planned import this close to the cap is at it (the LP's solution, up to HiGHS's tolerance)
FILL_TOL_W: Final = 1.0
# a discharge bound under this is none: at the SoC floor the edges' ramp-out leaves rounding (4.9e-7 W
# on train200 / Shanghai's 30th, 14:50), not power to give a charge back with
STILL_W: Final = 1.0


def track(w: Window, c: Cycle) -> Window:
    """The plan's target and grid cap for this cycle (auto mode, a plan slot covering now)."""
    p, k = c.schedule, c.plan_slot
    if w.mode != AUTO or p is None or k < 0:
        return w
    f = c.fleet
    share = c.into / c.iv_len if c.iv_len > 0.0 else 0.0
    gap_pct = f.soc_pct - p.soc_at(k, share)  # positive: above the plan -> discharge more
    target = float(p.battery_w[k])
    if gap_pct == gap_pct:  # NaN: no trusted cluster (pv_surplus then holds)
        target += gap_pct * 0.01 * f.capacity_wh * 3600.0 / c.length_s
    w = w.decided(AUTO, target, "plan")
    if not c.net_ok:
        return w
    iv = c.iv
    cap = float(p.grid_cap_w[k])
    # Charging never lifts the interval above the level the month bills so far in its window (less
    # the demand controller's charge margin): the plan's peak level allows for the forecast's
    # spread, a risk it accepts, not headroom to fill. The level is the plan's (DispatchPlan.billed_w:
    # per slot, over the charges covering it, the higher of the peak billed and the site's own load's
    # highest this month; 0 in the month's first interval, whose own load is then the only room),
    # else this window's own billed peak, where nothing billed yet is no bound (the plan's cap then).
    billed = month_peak(iv.peaks, iv.rate) if iv.rate > 0.0 else INF
    lvl = float(p.billed_w[k]) if k < len(p.billed_w) else billed
    level = lvl if k < len(p.billed_w) or billed > 0.0 else cap
    charge_cap = (level if level < cap else cap) * (1.0 - CHARGE_MARGIN)
    shave_cap = cap * (1.0 - MARGIN)
    # The margin under the cap is for a plan that keeps the grid below it; where the plan itself
    # imports at the cap (a load the battery cannot hold lower day after day: a flat one), shaving
    # the margin off would drain the battery for nothing, the month's peak coming back at the cap
    # once it is empty: there the cap is held at the planned import.
    planned = float(p.grid_w[k])
    if planned > shave_cap:
        shave_cap = planned if planned < cap else cap
    if not charge_cap < INF:
        return w
    # Where the plan imports at the bound it charges to (the cap or the charge level, both less the
    # charge margin: the planner's programme charges only so far, planner.charge_room) or discharges
    # down to its cap (within the margin), that bound is what the plan holds there, not the planned
    # power. Charging, it is what limits the charge: the plan would take more at this price if the
    # load left room. There the charge fills the room there is (under the charge level, margin kept:
    # filled to the cap itself, the load's noise ratcheted the billed peak up interval after interval,
    # the plan's floor following it), not only the planned power: the planned charge was lost whenever
    # the load ran above the forecast and never made up when it ran below, and on a load the forecast
    # cannot phase (the HPL loop) the battery never filled (7.6 MWh planned a day, ~2 MWh done). The
    # next plan starts from the fuller battery. Discharging down to the cap, the planned power was sized on the
    # forecast: where the load runs under it (a job restart's dip) it is not needed, and where the plan
    # is short of energy for its levels the room is filled instead, as the plan's scenarios refill in
    # their own dips. Short: a kWh charged now is worth more to the plan (DispatchPlan.stored_value)
    # than the horizon's highest price, more than any energy it could save: its worth is a demand
    # level's. Kept to the planned power, the tracker discharged into a 37-minute restart at 2.2 MW
    # under a 4.9 MW cap, charged nothing there, and the battery ran empty half an hour before the end
    # of the month's first peak window, which set the month's level (train200 / PG&E E-20, BENCHMARKS
    # 13x). Filled wherever the energy was worth its price now, a swinging load's dips were charged and
    # given back in the same interval at that price (flat / Shanghai 55.6 -> 35.4 % of the optimum).
    b0 = float(p.battery_w[k])
    fill = (b0 < 0.0 and planned >= charge_cap - FILL_TOL_W) or (
        b0 > 0.0 and planned >= shave_cap - FILL_TOL_W and p.short
    )
    left = c.iv_len - c.into
    fc = interval_net_forecast_w(c)
    # Shaving holds the cap on the interval's ENERGY, as demand.py does: the interval's average
    # import is what is billed, so a swing inside it rides on the steady forecast instead of being
    # chased (holding the cap against the load of the instant cycled the battery on every GPU swing
    # and spent at night the energy the day's peak needed). Charging fills only the headroom there
    # is now: the higher of the steady forecast and the load now (energy taken in cannot be given
    # back if the load steps up late in the interval).
    # Like with like, as demand.py: the rest of the interval's forecast against the allowance for
    # that rest (the whole interval's forecast hardly moves on a plateau that starts late in it, and
    # the tracker missed minute-long plateaus over the cap, each one raising the billed peak).
    rest = rest_net_forecast_w(c, fc)
    a = rest - rest_allowed_w(shave_cap, iv.grid_ws, iv.covered_s, left) if shave_cap < INF else -INF
    src, level = "plan_cap", shave_cap
    if a < 0.0:  # no shaving needed: charging only into the headroom there is now
        hi_fc = c.net if c.net > fc else fc
        allowed = allowed_grid_w(charge_cap, iv.grid_ws, iv.covered_s, left, c.iv_len)
        if not w.hi > STILL_W:
            # The battery cannot discharge now (at its floor: the reserve, the edges' last register
            # step), so a charge taken now cannot be given back if the load comes back up (the guard
            # below): no room from the interval's credit so far (a dip's) and none under the plan's
            # own forecast for the interval. (train200 / PG&E, day 1, 18:45: 22 kWh charged at 19.8 %
            # in a job restart's minutes, the load back at 5.7 MW, 10 kWh given back before the floor
            # again: the part-peak window closed at 5,081.4 kW, over its own load, the level and no
            # battery.)
            p50 = planned + float(p.battery_w[k])
            if p50 > hi_fc:
                hi_fc = p50
            if charge_cap < allowed:
                allowed = charge_cap
        a = min(0.0, hi_fc - allowed)
        level = charge_cap
        if fill and a < w.target:
            w = w.decided(AUTO, a, "plan")
    why = f"plan cap {level:.0f} W on the interval average"
    # Never a billed peak the site would not have without the battery (the target), by
    # construction: where the energy charged in this interval would close it above both `lvl` and
    # its own load's average, the battery gives that excess back over the rest of it. Each
    # interval's average import is then at most the higher of the site's own peak so far in each
    # window covering it and its own load: the month's billed peak at most the site's own. (Charging
    # stays under the level on the forecast, but a load that rose after a charge carried the
    # interval over it: the flat HPL loop's first plateau, +2 kW on PG&E.) Only the excess: giving
    # back the whole charge whenever the interval neared the level cycled the battery at every swing
    # of a training load (with the envelope scenario of BENCHMARKS' 13p section: train100 / PG&E
    # 16.2 -> 12.6 %). The level is what has happened, never a forecast: the plan's level where its
    # median reached it let train200 / Shanghai bill 5.1 kW over no battery (13r). (The plan's level
    # matters on E-20: IntervalState keys peaks by the slot's total rate, a night's is the nights'
    # highest, under the all-hours maximum the day set.)
    charged_ws = iv.grid_ws - iv.net_ws
    if charged_ws > 0.0 and left > 0.0 and lvl < INF:
        # the room the level leaves over the interval's own load (as energy), the rest of the
        # interval at least the load now: a charge taken in a dip is given back when the load comes
        # back up (the rest's forecast, the average so far with the dip in it, kept a charge taken
        # in a restart's minutes while the load ran at 5.8 MW after it: train200 / Shanghai closed
        # an interval 3.9 kW over the level, 1.4 kW over no battery)
        r = rest if rest > c.net else c.net
        room = lvl * c.iv_len - (iv.net_ws + r * left)
        give = (charged_ws - (room if room > 0.0 else 0.0)) / left
        if give > a:
            a = give
            why = f"giving back {give * left / 3600.0:.0f} Wh charged: the interval over its load and the billed peak"
    if not a > w.lo:
        return w
    lo, lo_src = (w.hi, w.hi_src) if a > w.hi else (a, src)
    return w.bound(lo, w.hi, lo_src, w.hi_src, Bound(src, lo, w.hi, why))
