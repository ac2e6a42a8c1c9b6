"""Plan tracking (controller 6p): the running interval of a dispatch plan, held in real time.

While a plan covers the cycle's time (the caller passes only a usable one: schedule.usable), it
replaces the heuristic economic controllers (time-of-use, balancing, demand shaving; compose.py):
- a target, the planned battery power of the running interval, corrected towards the planned
  state of charge at this point of the interval (the gap closed over one interval), so the
  battery ends the interval where the plan has it even when the load differs from the forecast;
- a bound, the plan's grid-import cap on the interval's average, held with the demand
  controller's interval accounting (credit and deficit over the time left), so a load above the
  forecast is shaved down to the cap and charging never lifts the interval above it.
The safety and grid-support bounds above it (device limits, outage, reserve, export, ramp) keep
their priority: it only narrows the window they leave, and its target is clamped into it.
"""

from __future__ import annotations

from agent.control.cycle import Cycle
from agent.control.demand import allowed_grid_w, interval_net_forecast_w
from agent.control.window import AUTO, Window
from agent.model.plan import Bound


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
    cap = float(p.grid_cap_w[k])
    if not cap < float("inf") or not c.net_ok:
        return w
    iv = c.iv
    allow = allowed_grid_w(cap, iv.grid_ws, iv.covered_s, c.iv_len - c.into, c.iv_len)
    fc = interval_net_forecast_w(c)
    a = fc - allow  # the least discharge that keeps the interval under the cap
    if a < 0.0 and c.net > fc:
        a = c.net - allow  # charging is discretionary: only into the headroom there is now (demand.py)
    if not a > w.lo:
        return w
    lo, lo_src = (w.hi, w.hi_src) if a > w.hi else (a, "plan_cap")
    return w.bound(
        lo, w.hi, lo_src, w.hi_src, Bound("plan_cap", lo, w.hi, f"plan cap {cap:.0f} W, allowed now {allow:.0f} W")
    )
