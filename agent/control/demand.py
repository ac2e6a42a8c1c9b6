"""Peak / demand shaving (controller 6).

Utilities bill the month's highest average import over a demand interval (15 min, aligned to
the wall clock), per demand window. The target is economic: a peak already billed this month
costs nothing more to reach again, so the policy never spends energy shaving below it (at the
all-hours rate, below the month's highest billed peak in any window: billed_level_w); and each
demand window has its own level (levels.py: the fleet's energy split across the windows by one
marginal value, none deeper than pays), priced on the last week's days and sized so it is one
the fleet could have held on each of them (held_days: not on their envelope, envelope.py, a day
none of them was; issue 13z). With less than half a day of history, the highest baseline
interval seen stands in for them. At every interval the running window's level
is raised, if it must, to one the energy stored then holds at its aim to the window's end
(levels.within_energy, in interval.roll). A fixed `demand_target_w` > 0 replaces all of these.
Windows with a demand rate of 0 are not shaved. Where no round trip pays (or none from the slot
within 24 h), the battery is recharged for these levels (tou.demand_charge_now), never above
what the month bills anyway (slot_targets).

Within an interval the policy plans the remaining energy, not only the instant: import saved
earlier in the interval (credit) lets the grid run above the target later, so energy stays in
the battery; a deficit must be recovered in the time left. The import allowed for the rest of the
interval is compared with a forecast of the load over that same rest (rest_net_forecast_w), never
with a forecast of the whole interval's average: after 780 s at low load a step 2 min before the
end hardly moves the whole interval's average, and comparing it with the rest's allowance only
stopped charging while the interval closed above the billed peak (issue 13). That forecast is the
interval's average so far, which after a job restart's dip lags the plateau that follows: a bound on
top of it (persistence_w) keeps every interval one the fleet's power can still bring back to its aim
if the load stays at its last minute's average, discharging only what that needs from the moment
full power later would no longer suffice.
"""

from __future__ import annotations

import math
from typing import Final, NamedTuple

from agent.control.cycle import Cycle
from agent.control.envelope import ENVELOPE_DAYS, envelope
from agent.control.levels import base_rate, enough, shave_levels
from agent.control.limit_reserve import drawn_down, import_cap_w, short_of_reserve
from agent.control.state import ROLE_CHARGE, IntervalState, month_peak, rate_key, top_peak
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
# The time scale of "the load now" that the rest of an interval is assumed to stay at (persistence_w):
# the baseline's moving average over about this long, not the reading of the instant. A job restart's
# dip and a plateau after it last minutes, a GPU swing seconds. Held at the reading of the instant, the
# guard fired on every swing's top at 1 s and spent the peak window's energy on intervals that then
# dipped (train100 / PG&E E-20, 30 days at 1 s: 72.2 -> 66.0 % of the optimum); over a minute's
# average it catches the plateaus (BENCHMARKS.md, issue 13, the persistence guard).
PERSIST_S: Final = 60.0
MIN_COVERAGE: Final = 0.5  # an interval with less good data than this does not set a peak or profile


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


def keep_wh(profile: tuple[float, ...], slot: int, target: float, length_s: float, eta_d: float) -> float:
    """Stored energy the rest of today's profile needs to stay at or below `target`."""
    if not target < INF:
        return 0.0
    return need_wh(profile, (target,) * len(profile), slot, len(profile) - slot, length_s, eta_d)


def need_wh(
    profile: tuple[float, ...], targets: tuple[float, ...], slot: int, n_slots: int, length_s: float, eta_d: float
) -> float:
    """Stored energy the profile's `n_slots` slots from `slot` (wrapping past midnight, at most a
    day) need to stay at or below each slot's target."""
    n = len(profile)
    if n == 0 or len(targets) != n:
        return 0.0
    s = 0.0
    for k in range(slot, slot + min(n_slots, n)):
        v, t = profile[k % n], targets[k % n]
        if v > t:  # NaN compares False
            s += v - t
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


def billed_level_w(peaks: tuple[tuple[float, float], ...], rate: float, base: float) -> float:
    """What the month already bills at this rate: shaving under it saves nothing (0: nothing yet).

    At the all-hours charge's own rate (`base`, levels.base_rate), where no window charge adds to it,
    only the maximum demand is billed: that is the highest interval of the month in any window.
    """
    if base > 0.0 and rate == base:
        return top_peak(peaks)
    return month_peak(peaks, rate)


def slot_targets(
    peaks: tuple[tuple[float, float], ...],
    levels: tuple[float, ...],
    rates: tuple[float, ...],
    fallback: float,
    fixed_w: float = 0.0,
    env: tuple[float, ...] = (),
) -> tuple[float, ...]:
    """Per slot of the day: the level shaving defends there, the higher of what is already billed at
    the slot's rate and its share of the battery (`levels`; `fallback` for every slot without them,
    NaN: none); inf where the rate is 0 or nothing is known yet. A fixed target (`fixed_w` > 0, the
    site's demand_target_w) replaces both, as in target_w."""
    base = base_rate(rates)
    out = []
    for s, rate in enumerate(rates):
        if not rate > 0.0:
            out.append(INF)
            continue
        if fixed_w > 0.0:
            out.append(fixed_w)
            continue
        t = billed_level_w(peaks, rate, base)
        lvl = levels[s] if levels else fallback
        if lvl > t:  # NaN compares False
            t = lvl
        out.append(t if t > 0.0 else INF)
    if len(env) != len(out):
        return tuple(out)
    # No slot's import may be raised (charging) above the highest level the month will bill anyway:
    # what is billed already, or the load held at its targets (env: the load the next day may bring).
    # Above it a charge would set the maximum demand itself (a night charge under a high all-hours
    # level billed 5,285 kW where the day was held at 5,142: issue 13e). Shaving is unchanged: where
    # the load reaches a target, that target is at most this.
    held = top_peak(peaks)
    for t, v in zip(out, env, strict=True):
        x = t if t < v else v  # NaN load compares False: the target
        if held < x < INF:
            held = x
    return tuple(t if t < held else held for t in out) if held > 0.0 else tuple(out)


def held_days(profile: tuple[float, ...], past: tuple[float, ...]) -> tuple[float, ...]:
    """The days the levels' energy must hold, day after day by slot: the last days' averages (the
    ring envelope.py keeps) and the day profile (the last 24 h). Their envelope is none of them: a
    load whose plateau comes at another hour each day is at its plateau in every slot of it
    (levels.shave_levels, `fit`). A day's slot not known (today's still to come, in the ring's first
    week) is the profile's: its row is then the last 24 h, as today's is. A day with none known is
    left out (NaN)."""
    n = len(profile)
    if not n:
        return ()
    out = list(profile)
    if len(past) == ENVELOPE_DAYS * n:
        for d in range(0, len(past), n):
            row = past[d : d + n]
            known = any(v == v for v in row)
            out.extend(v if v == v or not known else p for v, p in zip(row, profile, strict=True))
    return tuple(out)


class Closed(NamedTuple):
    """What closing an interval leaves behind (close_interval)."""

    peaks: tuple[tuple[float, float], ...]  # the month's billed peaks per rate
    profile: tuple[float, ...]  # the day profile
    env: tuple[float, ...]  # its envelope with the last days (envelope.py)
    targets: tuple[float, ...]  # the level each slot of the day is defended at
    aim: float  # the margin the new interval aims under its level
    # held_days(profile, past), unscaled: the days within_energy (interval.roll) checks the running
    # window's level on, built once here where the levels are fitted to them
    days: tuple[float, ...]


def close_interval(
    st: IntervalState,
    length_s: float,
    spd: int,
    month: int,
    energy_wh: float,
    power_w: float,
    rates: tuple[float, ...],
    cost_per_kwh: float = math.nan,
    fixed_w: float = 0.0,
    past: tuple[float, ...] = (),
    slot: int = -1,
    refill: bool = False,
    all_hours_w: float = math.nan,
    window_cap_w: float = math.nan,
) -> Closed:
    """Peaks, day profile, its envelope with `past` (envelope.py), the level each slot of the day is
    defended at after the state's running interval ends (in `month`), the margin the new interval
    (`slot`) aims under its level, and the days the levels were fitted to (held_days, unscaled).

    `rates`: the demand rate of each slot of the day over the next 24 h; the levels split the
    fleet's energy (`energy_wh`, `power_w`) across the demand windows, none deeper than pays at
    `cost_per_kwh` (levels.shave_levels). `fixed_w`: the site's fixed demand target (0: none).
    `past`: the ring of the last days' averages (envelope.py); `slot`: the new interval's slot of
    the day; `refill`: no round trip pays, the battery is charged for demand alone.
    `all_hours_w`: on a day the all-hours charge alone bills, the level the last week's optimum holds
    (week_level.py; NaN: not such a day): every slot's level, aimed at it (MARGIN under its target).
    `window_cap_w`: on a day with demand windows, that level (NaN: none): no window slot's level above it.
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
    env = envelope(profile, past)
    # The levels are held MARGIN under (demand()). Where they are the battery's only use and it is
    # refilled for them alone (`refill`: no round trip pays, tou.demand_charge_now), they take its
    # whole energy every day: sized on the load over 1 - MARGIN they leave the energy that margin
    # takes (1 % of a 3.4 MW level over a 6 h window is 200 kWh: the hand-made PG&E day of
    # tests/test_no_harm_month.py emptied the battery 20 minutes before 18:00 without it). Where
    # arbitrage pays, its discharge keeps back what the rest of the day's shaving needs and every
    # valley refills; sized this way there, train100 / Shanghai closed one interval 4.7 kW over the
    # no-battery peak (a charge just before a late step, 60 s replay), so it is not.
    scale = 1.0 / (1.0 - MARGIN) if refill else 1.0
    # Priced on the days the envelope sums up (levels.shave_levels), by the hours they spend above
    # the level's aim (MARGIN under it, where it is held): priced at the level itself, the flat load
    # (the same plateau each day, shifted) was shaved at 4,513 kW, the last slot a day that pays,
    # and held 45 kW under that, where 3 times the hours priced lie: 85.9 -> 80.5 % of the optimum.
    # The ring is whole from the first interval closed (envelope.remember: days not seen yet are
    # NaN), so this holds from a fresh start: a slot closed today is priced at its aim, one not seen
    # yet on the profile (levels._Layer), and the levels rise through day 1 to 1 / (1 - MARGIN) of
    # the level-priced ones. Waiting for seven known days cost the 14-day suite 2.5 points of its
    # mean and gave back only the 1-day suite's (BENCHMARKS.md, issue 5s).
    over_aim = 1.0 / (1.0 - MARGIN)
    days = held_days(profile, past)
    if all_hours_w == all_hours_w:  # NaN compares False
        # a day the all-hours charge alone bills: the week's level in every slot, no pricing needed
        levels = tuple(all_hours_w * over_aim if r > 0.0 else INF for r in rates) if enough(env) else ()
    else:
        levels = shave_levels(
            tuple(v * scale for v in env),
            rates,
            length_s,
            energy_wh * scale,
            power_w * scale,
            cost_per_kwh,
            tuple(v * over_aim for v in past) if len(past) == ENVELOPE_DAYS * spd else (),
            tuple(v * scale for v in days),
        )
    if levels and window_cap_w == window_cap_w:  # NaN compares False
        # The windows' slots are billed the all-hours charge too, and levels.py prices the all-hours
        # level on every hour of the day, the afternoon's included, which the peak window's own level
        # holds ~600 kW lower anyway: on train200 / PG&E E-20 it sat at 5,061-5,066 kW on weekdays (the
        # month's optimum: 4,905), so the part-peak morning was left at ~5,000 kW with the battery
        # 93-95 % full and billed the month's maximum demand there. The week's optimum holds the
        # all-hours level with every window and the night's recharge priced together: no window slot
        # is held above it. The night keeps its own level, the room the battery refills under (less
        # the charge margin; slot_targets then holds its charging under the highest level the windows
        # bill): the week's, aimed at there too, left too little of it (train200: the summer peak
        # 4,521 -> 4,591 kW; BENCHMARKS.md, issue 13, the windows held under the week's level).
        base, cap_w = base_rate(rates), window_cap_w * over_aim
        levels = tuple(x if not (r > base and x > cap_w) else cap_w for x, r in zip(levels, rates, strict=True))
    fallback = math.nan
    if not levels:
        # Less than half a day of history: do not aim below the highest load seen so far, so the
        # battery is not emptied defending a level it cannot know it can hold (nor charged above it).
        seen = [v for v in profile if v == v]
        fallback = max(seen) if seen else math.nan
    prev = st.targets
    held = refill and 0 <= slot < len(prev) == len(env) and env[slot] > prev[slot] and st.month == month
    if held:
        # Inside a stretch the levels were sized for (the load above its target now): hold them to
        # its end. Sized again from here with the whole budget, as if the battery were full, they
        # would deepen for the slots left (the 24 h ahead lose a window's first slots) and empty it
        # before the stretch ends. Only what was billed meanwhile raises them. Where arbitrage
        # pays (not `refill`) the levels are re-sized every interval as before: holding them there
        # moved train200 / Shanghai's path onto a late step that closed 7.2 kW over no battery.
        billed = slot_targets(peaks, (), rates, math.nan, fixed_w)
        targets = tuple(b if p < b < INF else p for p, b in zip(prev, billed, strict=True))
    else:
        targets = slot_targets(peaks, levels, rates, fallback, fixed_w, env)
    # A slot whose level is at its window's top (levels._shaved: no hour above it is worth the energy)
    # is held at what is billed, not MARGIN under it, where the load itself reaches that margin: it
    # would shave every such hour at the price the level was set not to pay (10 USD/kWh of wear on
    # the hand-made PG&E day: 40 kW under a 4 MW billed peak for 6 h a day cost 7,200 USD in 3 days
    # for 1,134 of demand charge). Where the load stays under it, the margin costs nothing and still
    # catches a late step (tests/test_control_demand.py). So is a slot whose level is above its target
    # (slot_targets capped it at the highest level the month bills anyway): the level shaves nothing
    # the load reaches there either. Sized on the load over 1 - MARGIN (`refill`), a level between the
    # load's top and that over 1 - MARGIN is such a one: held MARGIN under the cap, PG&E's flat load
    # was shaved 45 kW under its weekend plateau every weekend for a maximum demand the weekdays bill
    # at the plateau anyway (0.8 MWh more discharged in 14 days, the billed peaks unchanged).
    aim = MARGIN
    if (
        fixed_w <= 0.0
        and 0 <= slot < len(levels)
        and (not levels[slot] < INF or (not held and levels[slot] > targets[slot]))
    ):
        # the day's top, not this slot's average: a reading booked across the boundary puts an
        # interval the load spent at the billed peak 1/15 under it at 60 s, and on a Friday's last
        # peak interval the 24 h ahead hold no other slot of its window
        top = max((v for v in env if v == v), default=math.nan)
        if top > targets[slot] * (1.0 - MARGIN):  # NaN compares False
            aim = 0.0
    return Closed(peaks, profile, env, targets, aim, days)


def interval_net_forecast_w(c: Cycle, cap: float = INF) -> float:
    """The running interval's average net load as forecast now: the load seen so far this interval,
    the reading now for the cycle it stands for, and the last interval's average for the rest of
    FORECAST_PRIOR_S (see there). Shared with the plan tracker (track.py).

    With `cap` (the grid connection limit), the same for the load held at it: what the grid imports
    while the battery holds the limit (IntervalState.capped_ws). A load swinging across the limit
    imports its dips in full and the limit at its tops, on average well under both the load's
    average and the limit (train200, limit 20 % under its peak: ~4.6 MW against 5.0 and 4.84 MW)."""
    iv, dt, net, slot = c.iv, c.dt, c.net, c.slot
    profile = iv.profile
    book = iv.net_ws
    if cap < INF:
        net = net if not net > cap else cap  # NaN stays NaN
        book = iv.capped_ws if iv.capped_ws == iv.capped_ws else book  # NaN: not kept, the load's (capped below)
    now_s = dt if 0.0 < dt < FORECAST_PRIOR_S else (FORECAST_PRIOR_S if dt >= FORECAST_PRIOR_S else 0.0)
    return steady_net_w(book, iv.covered_s, profile, slot, net, now_s, cap)


def steady_net_w(
    book: float, covered_s: float, profile: tuple[float, ...], slot: int, net: float, now_s: float, cap: float = INF
) -> float:
    """The interval's average net load: `book` Ws over the `covered_s` seen so far, the reading `net`
    for `now_s`, and the last interval's average (`profile` before `slot`) for the rest of
    FORECAST_PRIOR_S; at most `cap`. The steady forecast of interval_net_forecast_w and of the one a
    campus feeder reports (campus_share.demand_forecast_w): one rule, so the coordinator splits the
    campus's target on the forecast each feeder's controller then acts on. Each caller clamps its
    own `now_s` (they treat a NaN or negative time since the last reading differently)."""
    prior = profile[slot - 1] if 0 < slot <= len(profile) else (profile[-1] if profile else math.nan)
    if prior > cap:  # the last interval's average held at the limit: above the limit's, never under it
        prior = cap
    prior_s = FORECAST_PRIOR_S - now_s if prior == prior else 0.0  # NaN: no prior
    wsum = covered_s + now_s + prior_s
    fc = (book + net * now_s + (prior * prior_s if prior_s > 0.0 else 0.0)) / wsum if wsum > 0.0 else net
    return fc if not fc > cap else cap


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


def rest_net_forecast_w(c: Cycle, steady: float, cap: float = INF) -> float:
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
    `cap`: the reading held at the grid connection limit (interval_net_forecast_w).
    """
    left = c.iv_len - c.into
    dt = c.dt if c.dt > 0.0 else 0.0  # NaN (first cycle): no reading before this one
    net = c.net if not c.net > cap else cap
    return rest_net_w(steady, net, dt, left)


def rest_net_w(steady: float, net: float, dt: float, left: float) -> float:
    """The average net load over the `left` s of the interval still to come: the reading `net` for the
    `dt` s until the next one, `steady` after (rest_net_forecast_w, which clamps `dt`; shared with
    campus_share.demand_forecast_w, which does not)."""
    if dt >= left:
        return net
    if left - dt >= FORECAST_PRIOR_S:
        return steady
    return steady + (net - steady) * dt / left


def persistence_w(
    grid_ws: float, now_w: float, held: float, aim: float, iv_len: float, left: float, dt: float, power: float
) -> float:
    """The least discharge (W) over the next `dt` s (until the next reading, at most the `left` s of the
    interval) that still lets the fleet's `power` W close the `iv_len` s interval at `aim` if the load
    stays at `held`: the import so far (`grid_ws`), plus `held` over the rest less full discharge after
    this cycle, over what `aim` allows; on the interval's last cycle, the load read now (`now_w`) for
    it. -inf with no power to give or no time.

    Full power is thus kept for the interval's end only as far as it still suffices: a plateau that
    needs more than the fleet can give in the time left is shaved from the moment it would. On the
    last cycle the reading is all that is left to act on, as the demand bound counts it (rest_net_w):
    with the moving average there, a 60 s replay's last cycle closed a falling load under its aim (the
    US test tariff, 30 days at 60 s: inference 90.9 %, against 93.2 % with the reading). Before it, a
    swing's top read now is not the load of the seconds after: counted for its cycle, the guard made
    the grid swing more than the load alone (tests/test_do_no_harm.py, setpoints at 1 s)."""
    if not power > 0.0:
        return -INF
    hold = dt if 0.0 < dt < left else left  # NaN dt (the first cycle) compares False: the whole rest
    if not hold > 0.0:
        return -INF
    if hold < left:  # not the last cycle: the minute's average for this one too
        now_w = held
    return (grid_ws + now_w * hold + (held - power) * (left - hold) - aim * iv_len) / hold


def in_dip_w(
    a: float,
    iv: IntervalState,
    steady: float,
    now_w: float,
    aim: float,
    iv_len: float,
    left: float,
    dt: float,
    power: float,
) -> float:
    """The demand bound's discharge `a` (W) in a dip of the load under the interval's `aim` (the last
    minute's average under it, IntervalState.net_avg_w: a job restart, not a swing): no more than the
    fleet's `power` needs to give now to still close the interval at the aim if the load comes back at
    the highest reading this interval has seen (IntervalState.top_w; the `steady` forecast where that
    is lower) for the whole rest of it (persistence_w), never a charge; `a` unchanged with no good
    reading.

    The demand bound forecasts the rest of the interval at its steady average, and a dip does not move
    that much: the battery went on discharging into a load far under the aim, and the interval closed
    under it with the energy gone (train200 / PG&E E-20, 30 days at 60 s: the peak windows gave 69,835 kWh
    where their levels needed 65,082; BENCHMARKS.md, issue 13, discharging only what the interval needs).
    What the dip leaves under the aim is credit for the interval's rest, so the discharge waits for
    the load to come back, up to the point where full power after it would no longer close the interval
    at the aim at the interval's own top. Judged on the second's reading instead of the minute's
    average (a training job's swings cross the aim every few seconds) and held at that average, the
    deferral cost pv / PG&E at 1 s 49 points; in a dip held at the steady forecast instead of the top,
    train100 / PG&E at 1 s lost 5 (BENCHMARKS.md, issue 13, the restart's dip)."""
    top = iv.top_w if iv.top_w > steady else steady  # NaN compares False: the steady forecast
    need = persistence_w(iv.grid_ws, now_w, top, aim, iv_len, left, dt, power)
    if need != need:  # NaN: no good reading, nothing to judge the dip by
        return a
    need = need if need > 0.0 else 0.0
    return need if need < a else a


def reading_weight(c: Cycle) -> float:
    """The weight rest_net_forecast_w gives the reading now in its forecast of the rest of the interval."""
    left = c.iv_len - c.into
    dt = c.dt if c.dt > 0.0 else 0.0  # NaN (first cycle): no reading before this one
    if dt >= left:
        return 1.0
    if left - dt >= FORECAST_PRIOR_S:
        return 0.0
    return dt / left


def demand(w: Window, c: Cycle) -> Window:
    """Controller 6, demand shaving: a lower bound on discharge (auto mode).

    Only the interval's average is billed: the load seen so far this interval (steadied by the last
    interval's average) is the forecast for the rest of it, so swings inside the interval are not
    chased (that would cycle the battery for nothing); deficits still show up in the energy
    accounting. The reading now counts for the cycle it stands for, the last interval's average
    for the rest of FORECAST_PRIOR_S (so a slow replay, one reading per interval, uses the reading).
    Near the interval's end the reading now takes over the forecast of the rest (rest_net_forecast_w),
    so a late step up is shaved in the time left instead of setting a new peak. In a job restart's dip
    the discharge waits for the load to come back, as far as full power then still holds the aim
    (in_dip_w).
    """
    if w.mode != AUTO:
        return w
    iv, tp = c.iv, c.tou
    net = c.net
    cov, rate = iv.covered_s, iv.rate
    # What the interval imports without this controller: the load, held at the grid connection limit
    # by the battery ahead of it (grid_limit.py). Forecast as the load, never above the limit.
    lim = import_cap_w(c.cfg)
    now_w = net if not net > lim else lim  # the reading now, held at the limit
    net_fc = interval_net_forecast_w(c, lim)  # the interval's average: the level targets are set from
    tgt = target_w(iv.peaks, iv.shave_floor_w, rate, c.cfg.demand_target_w)
    rest_fc = net_fc
    if tgt < INF:
        tgt -= (iv.margin if iv.margin == iv.margin else MARGIN) * tgt  # NaN: not set (a fresh state)
        rest_fc = rest_net_forecast_w(c, net_fc, lim)
    elif rate > 0.0:
        tgt = net_fc  # nothing known yet: no shaving (the interval held at its own level), no charging above the load
    if not tgt < INF:
        return w
    raise_w = tp.raise_w
    if tp.role == ROLE_CHARGE and raise_w > 0.0:  # charging here is worth a higher peak...
        # ... up to a level the load itself billed or reached, less the charge margin (raise_cap_w)
        cap = raise_cap_w(iv.peaks, rate, iv.profile)
        if c.cfg.campus is not None and cap > c.cfg.demand_target_w:  # a campus share: never above it (config.py)
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
        # While the grid limit's run of excess draws the fleet down (limit_reserve.drawn_down), shaving
        # gives nothing back (below) and the limit's recharge takes what room there is: no margin under the target.
        charge_tgt = tgt - CHARGE_MARGIN * tgt if raise_w <= 0.0 and not drawn_down(c) else tgt
        if c.cfg.campus is not None:  # a campus share's credit is what the coordinator gives it now (config.py)
            allow = rest_allowed_w(charge_tgt, iv.grid_ws, cov, left)
        else:
            allow = allowed_grid_w(charge_tgt, iv.grid_ws, cov, left, iv_len)
        a = min(0.0, (now_w if now_w > net_fc else net_fc) - allow)
    if c.cfg.campus is None and left > 0.0:
        if a > 0.0 and iv.net_avg_w < tgt:  # NaN compares False
            a = in_dip_w(a, iv, net_fc, now_w, tgt, iv_len, left, c.dt, w.hi)
        # Never an interval the fleet cannot bring back to the aim if the load stays where it has been
        # this last minute (persistence_w). The steady forecast is the interval's average so far: after a
        # restart's dip it lags the plateau that follows, and at 1 s the battery ended such intervals at
        # full power, too late, the billed peak ratcheting up with each (train200 / PG&E E-20, 30 days
        # at 1 s: 5 of 660 shaved intervals over their target, all at 2.52 MW for their last minute).
        held = iv.net_avg_w if iv.net_avg_w == iv.net_avg_w else now_w  # NaN: no average yet, the reading
        held = held if not held > lim else lim
        # An interval aimed at the month's billed peak itself (close_interval's aim 0: no margin under
        # it) bills every kW it closes over for the rest of the month, and the swings' tops are what
        # the minute's average misses: held there, the guard at 1 s let a top in the interval's last
        # seconds close it a few kW over, the battery 75-94 % full (train100 / PG&E E-20, 30 days at
        # 1 s: the maximum demand 4,140 -> 4,164 kW over seven weekend and night intervals; 4,152 kW
        # with this). There the rest is held at the reading now where it is higher. Not elsewhere:
        # under a margin that error is not billed, and held at every top the guard spent the windows'
        # energy (PERSIST_S; where the aim is a level above the billed peak, pv / PG&E at 1 s -1.8 points).
        if iv.margin == 0.0 and now_w > held and not tgt > month_peak(iv.peaks, rate):
            held = now_w
        guard = persistence_w(iv.grid_ws, now_w, held, tgt, iv_len, left, c.dt, w.hi)  # NaN reading: NaN, no bound
        if guard > a:  # NaN compares False
            a = guard
    part = c.cfg.campus
    if part is not None and part.demand_w == part.demand_w:  # the campus's bound, its part (config.CampusPart)
        a = part.demand_w
        # Where the part is not a discharge, a step up of this feeder's own load since the part was made,
        # weighed as the pooled controller's forecast of the rest weighs its reading (reading_weight),
        # that alone takes the campus past its room (config.CampusPart.room_w) is discharge the campus
        # needs now whatever the other feeders did: their steps up only add to it (so the feeders never
        # discharge more than the campus would if the others' loads stood still). Without it a
        # feeder whose part was a charge or 0 stopped at 0 and the campus answered a cycle late.
        up = (net - part.at_net_w) * reading_weight(c) - part.room_w if a <= 0.0 else math.nan  # NaN: none
        if up > 0.0:
            a = up
        elif a < 0.0 and net == net and part.at_net_w == part.at_net_w:
            # A charge part was made on the reading a cycle ago: the feeders' own steps since sum to the
            # campus's, so each answering its own charges the campus's room at its reading now (as
            # the pooled controller does), not a cycle late (agent/campus/bound.py)
            a = min(0.0, a + net - part.at_net_w)
        elif a > 0.0 and net == net and part.at_net_w == part.at_net_w:
            # A discharge part too, by what the pooled controller's own bound moves with its reading:
            # nothing while FORECAST_PRIOR_S remain after this cycle, then the reading's weight in the
            # forecast of the rest (rest_net_forecast_w). Linear: the feeders' steps sum to the campus's,
            # so their corrections sum to its. Without it a load stepping up in an interval's last
            # minutes was answered a cycle late: the economic campus's peak-window intervals ended above
            # their aim and each overshoot was billed, the next day's level with it (PG&E month at 60 s).
            a = max(0.0, a + (net - part.at_net_w) * reading_weight(c))
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
