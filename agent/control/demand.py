"""Peak / demand shaving (controller 6).

Utilities bill the month's highest average import over a demand interval (15 min, aligned to
the wall clock), per demand window. The target is economic: a peak already billed this month
costs nothing more to reach again, so the policy never spends energy shaving below it; and it
never aims below the level the fleet could have held over the last day's load profile, so it
does not empty the battery on the first intervals of a month (with less than half a day of
history, the highest baseline interval seen stands in for that level). A fixed `demand_target_w` > 0
replaces both. Windows with a demand rate of 0 are not shaved.

Within an interval the policy plans the remaining energy, not only the instant: import saved
earlier in the interval (credit) lets the grid run above the target later, so energy stays in
the battery; a deficit must be recovered in the time left. The import allowed for the rest of the
interval is compared with a forecast of the load over that same rest (rest_net_forecast_w), never
with a forecast of the whole interval's average: after 780 s at low load a step 2 min before the
end hardly moves the whole interval's average, and comparing it with the rest's allowance only
stopped charging while the interval closed above the billed peak (issue 13).
"""

from __future__ import annotations

import math
from typing import Final

from agent.control.cycle import Cycle
from agent.control.limit_reserve import short_of_reserve
from agent.control.state import ROLE_CHARGE, IntervalState, month_peak, rate_key
from agent.control.window import AUTO, Window
from agent.model.plan import Bound

INF: Final = math.inf
# Aim this fraction under the target: the load moves between a reading and the next setpoint, so an
# interval held exactly at the target ends above it half the time, and every such overshoot would
# ratchet the month's billed peak (and with it the next day's charging headroom) upward. Not more:
# every kW of margin is a kW of charging headroom lost under the billed peak for the whole flat
# period of every day. 1 % covers most of the tracking error at 1 s on a swinging GPU load (a month's
# flat-period intervals: 99 % end within ~0.6 % above the aim, the worst ~1.2 %); 2 % gave away
# ~600 kWh a day of charge on the savings bench.
MARGIN: Final = 0.01
# The interval's running mean is a noisy forecast of its rest while the GPU load swings by megawatts
# within seconds: early in the interval a few swings move it by hundreds of kW, and the demand bound
# (which scales the forecast's changes by length / time left) then flips the battery between charge
# and discharge, paying wear and losses for nothing. Blending in the previous interval's average as
# if it were this many seconds of data steadies the forecast until the interval has its own.
FORECAST_PRIOR_S: Final = 300.0
# Charging fills the headroom under the demand target greedily (tou.py); what it takes cannot be
# given back if the load then steps up late in the interval, so it keeps this much further below
# the target than shaving does (MARGIN).
CHARGE_MARGIN: Final = 0.02
MIN_COVERAGE: Final = 0.5  # an interval with less good data than this does not set a peak or profile
_BISECT_STEPS = 40


def target_w(peaks: tuple[tuple[float, float], ...], floor: float, rate: float, fixed_w: float) -> float:
    """Highest average import (W) the policy defends in the running interval; inf = no shaving."""
    if rate <= 0.0:
        return INF
    if fixed_w > 0.0:
        return fixed_w
    t = month_peak(peaks, rate)
    if floor > t:  # NaN compares False: no history, no floor
        t = floor
    return t if t > 0.0 else INF  # nothing billed and no history yet: nothing to defend


def allowed_grid_w(target: float, grid_ws: float, covered_s: float, left_s: float, length_s: float) -> float:
    """Import allowed now so the interval's average can still end at or below `target`.

    The part of the interval without data counts as if it sat at the target. Credit is spread
    over at least half an interval so the grid does not jump near the interval's end: the
    allowance for charging, which would otherwise fill a late credit in the last seconds.
    """
    credit = target * covered_s - grid_ws
    if credit >= 0.0:
        return target + credit / max(left_s, 0.5 * length_s)
    return rest_allowed_w(target, grid_ws, covered_s, left_s)


def rest_allowed_w(target: float, grid_ws: float, covered_s: float, left_s: float) -> float:
    """Average import over the rest of the interval at which its average ends exactly at `target`.

    The allowance shaving holds: credit and deficit are both spread over the time left. Held
    against a forecast of that same rest (rest_net_forecast_w), the interval ends at the target
    when the forecast is right; keeping credit back as the charging allowance does would shave
    the interval below the target for nothing, now that the forecast follows a late step up.
    """
    return target + (target * covered_s - grid_ws) / max(left_s, 1.0)


def shave_floor_w(profile: tuple[float, ...], length_s: float, energy_wh: float, power_w: float) -> float:
    """Lowest level L with sum(max(0, p - L)) x interval <= energy and max(p) - L <= power (NaN: no data)."""
    vals = [v for v in profile if v == v]
    if not vals or 2 * len(vals) < len(profile):
        return math.nan
    top = max(vals)
    h = length_s / 3600.0

    def need_wh(level: float) -> float:
        s = 0.0
        for v in vals:
            if v > level:
                s += v - level
        return s * h

    lo = top - max(power_w, 0.0)  # infeasible below this: the fleet cannot give more power
    if need_wh(lo) <= energy_wh:
        return lo
    hi = top
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if need_wh(mid) <= energy_wh:
            hi = mid
        else:
            lo = mid
    return hi


def economic_floor_w(profile: tuple[float, ...], length_s: float, hours_above: float) -> float:
    """The level the profile exceeds for `hours_above` hours a day (NaN: no data or no limit).

    Shaving 1 kW deeper costs one more kWh for every hour the load spends above the level, every
    day; it pays only while that energy is worth less in arbitrage than the demand charge saved.
    """
    vals = sorted((v for v in profile if v == v), reverse=True)
    if not vals or not hours_above > 0.0:  # also NaN
        return math.nan
    k = int(hours_above * 3600.0 / length_s)
    return vals[k] if k < len(vals) else math.nan


def keep_wh(profile: tuple[float, ...], slot: int, target: float, length_s: float, eta_d: float) -> float:
    """Stored energy the rest of today's profile needs to stay at or below `target`."""
    if not target < INF:
        return 0.0
    s = 0.0
    for v in profile[slot:]:
        if v > target:  # NaN compares False
            s += v - target
    return s * length_s / 3600.0 / eta_d


def headroom_wh(
    profile: tuple[float, ...], slot: int, n_slots: int, level: float, max_w: float, length_s: float
) -> float:
    """Energy (AC side) chargeable under `level` over `n_slots` slots from `slot` of the day profile.

    Unknown slots count as no headroom; an infinite level (nothing to defend) as unlimited.
    """
    if not level < INF:
        return INF
    n = len(profile)
    if n == 0:
        return 0.0
    s = 0.0
    for k in range(slot, slot + min(n_slots, n)):
        v = profile[k % n]
        if v < level:  # NaN compares False
            room = level - v
            s += room if room < max_w else max_w
    return s * length_s / 3600.0


def close_interval(
    st: IntervalState,
    length_s: float,
    spd: int,
    month: int,
    energy_wh: float,
    power_w: float,
    hours_above: float = math.nan,
) -> tuple[tuple[tuple[float, float], ...], tuple[float, ...], float]:
    """Peaks, day profile and shave floor after the state's running interval ends (in `month`).

    The floor is the higher of what the fleet can hold (energy, power) and what pays to hold
    (`hours_above`: the daily hours above the level at which shaving deeper stops paying).
    """
    peaks = st.peaks  # they belong to st.month, the month of the interval being closed
    profile = st.profile if len(st.profile) == spd else (math.nan,) * spd
    covered = st.covered_s
    if st.key >= 0 and covered >= MIN_COVERAGE * length_s:
        avg = st.grid_ws / covered
        if st.rate > 0.0:
            key = rate_key(st.rate)
            found = False
            out: list[tuple[float, float]] = []
            for k, v in peaks:
                if k == key:
                    found = True
                    v = max(v, avg)
                out.append((k, v))
            if not found:
                out.append((key, avg))
            peaks = tuple(out)
        prof = list(profile)
        prof[st.key % spd] = st.net_ws / covered
        profile = tuple(prof)
    if st.month != month:  # a new billing month starts with nothing billed
        peaks = ()
    floor = shave_floor_w(profile, length_s, energy_wh, power_w)
    econ = economic_floor_w(profile, length_s, hours_above)
    if econ > floor:
        floor = econ
    if floor != floor:
        # Less than half a day of history: do not aim below the highest load seen so far, so the
        # battery is not emptied defending a level it cannot know it can hold (nor charged above it).
        seen = [v for v in profile if v == v]
        floor = max(seen) if seen else math.nan
    return peaks, profile, floor


def interval_net_forecast_w(c: Cycle) -> float:
    """The running interval's average net load as forecast now: the load seen so far this interval,
    the reading now for the cycle it stands for, and the last interval's average for the rest of
    FORECAST_PRIOR_S (see there). Shared with the plan tracker (track.py)."""
    iv, dt, net, slot = c.iv, c.dt, c.net, c.slot
    profile = iv.profile
    now_s = dt if 0.0 < dt < FORECAST_PRIOR_S else (FORECAST_PRIOR_S if dt >= FORECAST_PRIOR_S else 0.0)
    prior = profile[slot - 1] if 0 < slot <= len(profile) else (profile[-1] if profile else math.nan)
    prior_s = FORECAST_PRIOR_S - now_s if prior == prior else 0.0  # NaN: no prior
    wsum = iv.covered_s + now_s + prior_s
    return (iv.net_ws + net * now_s + (prior * prior_s if prior_s > 0.0 else 0.0)) / wsum if wsum > 0.0 else net


def raise_cap_w(peaks: tuple[tuple[float, float], ...], rate: float, profile: tuple[float, ...]) -> float:
    """The highest import charging may raise the interval to: the month's billed peak in this demand
    window or the highest baseline interval of the last day, whichever is higher (0: neither known).

    The battery promises never to bill a peak the site without it would not have: only charging can
    take the import above the load, and charging held under a level the load itself billed or
    reached keeps the month's billed peak at or under the no-battery peak, interval after interval.
    A raise above it (tou.py prices one per kW of charge, as if every kW of peak bought a kW of
    charge for the rest of the month) set a new peak on a flat load sitting at its own top (the
    policy suite's flat load at 60 s: 4,664 kW against 4,537 kW without the battery). The last
    day may reach into the previous month on the 1st: a level the site's load did reach.
    """
    top = month_peak(peaks, rate)
    for v in profile:
        if v > top:  # NaN compares False
            top = v
    return top


def rest_net_forecast_w(c: Cycle, steady: float) -> float:
    """The average net load over the rest of the running interval, as forecast now.

    The setpoint decided now holds until the next reading, `dt` from now: for that part of the rest
    the reading now is the forecast. For the part after it, `steady` (the interval's average as
    interval_net_forecast_w forecasts it): a swing of the GPU load now says little about the
    minutes after the next reading, and chasing swings cycles the battery for nothing (at 1 s,
    weighing the reading over the last FORECAST_PRIOR_S of every interval cost the savings bench's
    4 days 28 % of their net savings). While more than FORECAST_PRIOR_S remain after the next
    cycle the steady forecast alone stands, as the prior intends. The reading thus weighs more as
    the rest shrinks, all of it when the next cycle is all that is left: a 60 s replay's last two
    readings act on a step 2 min before the end (issue 13: only stopping charging there billed
    150 kW over the no-battery peak); at 1 s the energy accounting (rest_allowed_w) recovers a
    late step within the fleet's power. Without this the whole interval's average stood for the
    rest, and a step late in the interval hardly moved it.
    """
    left = c.iv_len - c.into
    dt = c.dt if c.dt > 0.0 else 0.0  # NaN (first cycle): no reading before this one
    if dt >= left:
        return c.net
    if left - dt >= FORECAST_PRIOR_S:
        return steady
    return steady + (c.net - steady) * dt / left


def demand(w: Window, c: Cycle) -> Window:
    """Controller 6, demand shaving: a lower bound on discharge (auto mode).

    Only the interval's average is billed: the load seen so far this interval (steadied by the last
    interval's average) is the forecast for the rest of it, so swings inside the interval are not
    chased (that would cycle the battery for nothing); deficits still show up in the energy
    accounting. The reading now counts for the cycle it stands for, the last interval's average
    for the rest of FORECAST_PRIOR_S (so a slow replay, one reading per interval, uses the reading).
    Near the interval's end the reading now takes over the forecast of the rest (rest_net_forecast_w),
    so a late step up is shaved in the time left instead of setting a new peak.
    """
    if w.mode != AUTO:
        return w
    iv, tp = c.iv, c.tou
    net = c.net
    cov, rate = iv.covered_s, iv.rate
    net_fc = interval_net_forecast_w(c)  # the interval's average: the level targets are set from
    tgt = target_w(iv.peaks, iv.shave_floor_w, rate, c.cfg.demand_target_w)
    rest_fc = net_fc
    if tgt < INF:
        tgt -= MARGIN * tgt
        rest_fc = rest_net_forecast_w(c, net_fc)
    elif rate > 0.0:
        tgt = net_fc  # nothing known yet: no shaving (the interval held at its own level), no charging above the load
    if not tgt < INF:
        return w
    raise_w = tp.raise_w
    if tp.role == ROLE_CHARGE and raise_w > 0.0:  # charging here is worth a higher peak...
        # ... up to a level the load itself billed or reached, less the charge margin (raise_cap_w)
        cap = raise_cap_w(iv.peaks, rate, iv.profile)
        if c.cfg.campus_target and cap > c.cfg.demand_target_w:  # a campus share: never above it (config.py)
            cap = c.cfg.demand_target_w
        tgt = max(tgt, min(net_fc + raise_w, cap - CHARGE_MARGIN * cap))
    iv_len, left = c.iv_len, c.iv_len - c.into
    # Like with like: what the rest of the interval may import against what the load will be over it.
    allow = rest_allowed_w(tgt, iv.grid_ws, cov, left)
    a = rest_fc - allow
    if a < 0.0:
        # Charging: only into the headroom there is now. The steady forecast is steady on purpose
        # (no discharge chasing swings), but a load stepping up (a job restarting) would
        # otherwise keep a greedy charge running until the interval's peak is set.
        # Charging is discretionary, shaving is not: it stays CHARGE_MARGIN further below
        # the target, unless the target was raised for it (that peak is priced in).
        charge_tgt = tgt - CHARGE_MARGIN * tgt if raise_w <= 0.0 else tgt
        if c.cfg.campus_target:  # a campus share's credit is what the coordinator gives it now (config.py)
            allow = rest_allowed_w(charge_tgt, iv.grid_ws, cov, left)
        else:
            allow = allowed_grid_w(charge_tgt, iv.grid_ws, cov, left, iv_len)
        a = min(0.0, (net if net > net_fc else net_fc) - allow)
    if a > 0.0 and short_of_reserve(c):
        a = 0.0  # the grid limit's reserve is not for shaving (limit_reserve.py): only the limit draws on it
    lo, hi = w.lo, w.hi
    if not a > lo:
        return w
    if a > hi:
        lo, lo_src = hi, w.hi_src
    else:
        lo, lo_src = a, "demand"
    why = f"demand target {tgt:.0f} W, allowed now {allow:.0f} W"
    return w.bound(lo, hi, lo_src, w.hi_src, Bound("demand", lo, hi, why))
