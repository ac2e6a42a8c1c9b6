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
the battery; a deficit must be recovered in the time left.
"""

from __future__ import annotations

import math

from agent.control.state import ControllerState, month_peak, rate_key

INF = math.inf
DAY_S = 86400.0
# Aim this fraction under the target: the load moves between a reading and the next setpoint, so an
# interval held exactly at the target ends above it half the time, and every such overshoot would
# ratchet the month's billed peak (and with it the next day's charging headroom) upward. Not more:
# every kW of margin is a kW of charging headroom lost under the billed peak for the whole flat
# period of every day. 1 % covers most of the tracking error at 1 s on a swinging GPU load (a month's
# flat-period intervals: 99 % end within ~0.6 % above the aim, the worst ~1.2 %); 2 % gave away
# ~600 kWh a day of charge on the savings bench.
MARGIN = 0.01
MIN_COVERAGE = 0.5  # an interval with less good data than this does not set a peak or profile
_BISECT_STEPS = 40


def slots_per_day(length_s: float) -> int:
    return math.ceil(DAY_S / length_s)


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
    over at least half an interval so the grid does not jump near the interval's end.
    """
    credit = target * covered_s - grid_ws
    if credit >= 0.0:
        return target + credit / max(left_s, 0.5 * length_s)
    return target + credit / max(left_s, 1.0)


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
    st: ControllerState,
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
    covered = st.iv_covered_s
    if st.iv_key >= 0 and covered >= MIN_COVERAGE * length_s:
        avg = st.iv_grid_ws / covered
        if st.iv_rate > 0.0:
            key = rate_key(st.iv_rate)
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
        prof[st.iv_key % spd] = st.iv_net_ws / covered
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
