"""The all-hours level of a day the all-hours charge alone bills: the last week's optimum (week_level.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agent.control.begin import week_level
from agent.control.demand import MARGIN, close_interval
from agent.control.state import IntervalState
from agent.control.week_level import WeekBattery, all_hours_level_w, ring_days, uniform_day
from agent.economics.tariff import bundled

ETA = 0.96 * 0.96
BIG = WeekBattery(budget_wh=1e7, power_w=1e6, round_trip=ETA, wear_per_kwh=0.1)
SIX_H = 6 * 3600.0  # four slots a day: small enough to work out by hand


def test_a_day_by_hand_the_level_the_recharge_room_allows() -> None:
    # 100 / 300 / 100 / 100 kW in four 6 h slots at 0.1 a kWh; the battery starts full and must end
    # the day full, so what it gives in slot 1 (300 - L kW for 6 h) comes back in slots 2 and 3 under
    # the level (L - 100 kW each, through the round trip): 2 x ETA x (L - 100) = 300 - L. A kW of
    # level costs 6 kWh of wear (0.1) and of losses (0.1 x (1 / ETA - 1)): 0.651 a day, against
    # rate / 30.4: at 30.4 a kW-month (1 a day) the level goes down to where the recharge room binds.
    day = (100e3, 300e3, 100e3, 100e3)
    low = (300e3 + 200e3 * ETA) / (1.0 + 2.0 * ETA)  # 170.34 kW
    assert all_hours_level_w(day, (30.4,) * 4, (0.1,) * 4, 4, SIX_H, BIG) == pytest.approx(low, rel=1e-6)
    # at half the rate (0.5 a day) no kW of it pays: the load's own peak
    assert all_hours_level_w(day, (15.2,) * 4, (0.1,) * 4, 4, SIX_H, BIG) == pytest.approx(300e3, rel=1e-6)
    # two such days: the first ends short and its deficit is recharged in the second's morning slot
    # too, and the second, repeating, does the same (it ends with what it had 24 h before): three
    # slots of room, 3 x ETA x (L - 100) = 300 - L
    two = all_hours_level_w(day * 2, (30.4,) * 8, (0.1,) * 8, 4, SIX_H, BIG)
    assert two == pytest.approx((300e3 + 300e3 * ETA) / (1.0 + 3.0 * ETA), rel=1e-6)  # 153.12 kW


def test_a_window_holds_its_own_slots_and_the_all_hours_level_the_rest() -> None:
    # slot 1 is also a window at 30.4 more (PG&E's peak in small). The all-hours level covers slot 1
    # too, so it is no lower than what slot 1 is held at: the recharge bound of the first test
    # (170.34 kW), with slot 0's 150 kW under it and no energy spent there
    day = (150e3, 300e3, 100e3, 100e3)
    rates = (30.4, 60.8, 30.4, 30.4)
    level = all_hours_level_w(day, rates, (0.1,) * 4, 4, SIX_H, BIG)
    assert level == pytest.approx((300e3 + 200e3 * ETA) / (1.0 + 2.0 * ETA), rel=1e-6)
    # a day the battery cannot help (no room under the level to recharge) holds the load's peak
    flat = all_hours_level_w((300e3,) * 4, (30.4,) * 4, (0.1,) * 4, 4, SIX_H, BIG)
    assert flat == pytest.approx(300e3, rel=1e-6)


def test_a_kw_above_what_is_billed_is_priced_on_the_days_left_and_what_is_billed_is_free() -> None:
    # the first test's day. A kW more of peak is billed for the whole month but buys only the days
    # left: at 15.2 a kW-month with a whole month left no kW pays (0.5 a day, the load's peak); with
    # 15.2 days left it is 1 a day of them, as 30.4 was with the month ahead (170.34 kW)
    day = (100e3, 300e3, 100e3, 100e3)
    low = (300e3 + 200e3 * ETA) / (1.0 + 2.0 * ETA)
    assert all_hours_level_w(day, (15.2,) * 4, (0.1,) * 4, 4, SIX_H, BIG, 30.4) == pytest.approx(300e3, rel=1e-6)
    assert all_hours_level_w(day, (15.2,) * 4, (0.1,) * 4, 4, SIX_H, BIG, 15.2) == pytest.approx(low, rel=1e-6)
    # a peak the month already bills costs nothing more to reach: under 200 kW billed no kW is
    # shaved below it; 150 kW billed is under the level that pays, which stands
    billed = ((30.4, 200e3),)
    assert all_hours_level_w(day, (30.4,) * 4, (0.1,) * 4, 4, SIX_H, BIG, 30.4, billed) == pytest.approx(200e3)
    under = ((30.4, 150e3),)
    assert all_hours_level_w(day, (30.4,) * 4, (0.1,) * 4, 4, SIX_H, BIG, 30.4, under) == pytest.approx(low, rel=1e-6)


def test_days_not_known_enough_are_left_out_and_none_gives_nan() -> None:
    day = (100e3, 300e3, 100e3, 100e3)
    holes = (math.nan, math.nan, 100e3, 100e3)  # half unknown: left out
    assert all_hours_level_w(holes + day, (30.4,) * 8, (0.1,) * 8, 4, SIX_H, BIG) == pytest.approx(170.34e3, rel=1e-3)
    assert math.isnan(all_hours_level_w(holes, (30.4,) * 4, (0.1,) * 4, 4, SIX_H, BIG))
    assert math.isnan(all_hours_level_w(day, (0.0,) * 4, (0.1,) * 4, 4, SIX_H, BIG))  # no all-hours charge
    assert math.isnan(all_hours_level_w(day[:3], (30.4,) * 3, (0.1,) * 3, 4, SIX_H, BIG))  # not whole days


def test_the_ring_is_laid_out_oldest_day_first() -> None:
    spd = 2
    ring = tuple(float(10 * (i // spd) + i % spd) for i in range(7 * spd))  # row r: 10 r, 10 r + 1
    today = 700  # 700 % 7 == 0: row 0 holds today-7
    assert ring_days(ring, today, spd) == tuple(float(10 * r + k) for r in range(7) for k in range(2))
    assert ring_days(ring, today + 3, spd)[:2] == (30.0, 31.0)  # today-7 is row 3
    assert ring_days((), today, spd) == ()


def test_only_a_day_with_one_rate_and_one_price_is_such_a_day() -> None:
    assert uniform_day((11.98,) * 4, lambda: (0.08,) * 4)
    assert not uniform_day((11.98, 28.35, 11.98, 11.98), lambda: (0.08,) * 4)  # a window
    assert not uniform_day((40.8,) * 4, lambda: (0.37, 1.01, 0.66, 0.37))  # a price spread (Shanghai)
    assert not uniform_day((0.0,) * 4, lambda: (0.08,) * 4)  # no demand charge

    def never() -> tuple[float, ...]:
        raise AssertionError("a day with a window needs no prices looked up")

    assert not uniform_day((11.98, 28.35, 11.98, 11.98), never)


@dataclass
class Counted:
    """PG&E E-20's own prices, counting the look-ups."""

    calls: int = 0

    def energy_price(self, t: datetime) -> float:
        self.calls += 1
        return PGE.energy_price(t)

    def demand_rate(self, t: datetime) -> float:
        self.calls += 1
        return PGE.demand_rate(t)


@dataclass
class SpreadOneRate:
    """One demand rate all day and PG&E's prices (a spread): looked up through `counted`."""

    counted: Counted

    def energy_price(self, t: datetime) -> float:
        return self.counted.energy_price(t)

    def demand_rate(self, t: datetime) -> float:
        self.counted.calls += 1
        return 40.8


PGE = bundled("pge_e20_secondary_2014")
LA = ZoneInfo("America/Los_Angeles")


def test_a_weekend_day_gets_the_weeks_level_once_a_weekday_none() -> None:
    spd = 96
    # the week before: 4 MW, 5 MW from 12:00 to 14:00 every day
    day = tuple(5e6 if 48 <= s < 56 else 4e6 for s in range(spd))
    ring = day * 7
    sat = datetime(2026, 7, 11, 0, 0, tzinfo=LA)
    rates = tuple(PGE.demand_rate(sat + timedelta(minutes=15 * s)) for s in range(spd))
    iv = IntervalState(past=ring)
    bat = WeekBattery(budget_wh=3.6e6, power_w=2.5e6, round_trip=ETA, wear_per_kwh=0.15)
    p = Counted()
    d, level, cap = week_level(iv, p, sat, rates, 900.0, bat)
    assert d == sat.toordinal() and 4e6 <= level < 5e6 and math.isnan(cap)
    # the same programme on the same days: its prices and rates are the week's own, weekdays included
    rr = tuple(PGE.demand_rate(sat - timedelta(days=7) + timedelta(minutes=15 * k)) for k in range(7 * spd))
    pp = tuple(PGE.energy_price(sat - timedelta(days=7) + timedelta(minutes=15 * k)) for k in range(7 * spd))
    # (priced on the 21 days of July left from Saturday 11, nothing billed yet)
    assert level == all_hours_level_w(ring_days(ring, sat.toordinal(), spd), rr, pp, spd, 900.0, bat, 21.0)
    # worked out once a day: the state keeps it
    kept = IntervalState(past=ring, week_day=d, week_level_w=level)
    calls = p.calls
    again = week_level(kept, p, sat + timedelta(hours=5), rates, 900.0, bat)
    assert again[:2] == (d, level) and math.isnan(again[2]) and p.calls == calls
    # a weekday (windows, a price spread) is not such a day: the same programme's level is its windows' cap
    mon = datetime(2026, 7, 13, 0, 0, tzinfo=LA)
    mrates = tuple(PGE.demand_rate(mon + timedelta(minutes=15 * s)) for s in range(spd))
    d2, none, cap = week_level(iv, p, mon, mrates, 900.0, bat)
    assert d2 == mon.toordinal() and math.isnan(none)
    rr = tuple(PGE.demand_rate(mon - timedelta(days=7) + timedelta(minutes=15 * k)) for k in range(7 * spd))
    pp = tuple(PGE.energy_price(mon - timedelta(days=7) + timedelta(minutes=15 * k)) for k in range(7 * spd))
    assert cap == all_hours_level_w(ring_days(ring, mon.toordinal(), spd), rr, pp, spd, 900.0, bat, 19.0)
    # one demand rate with a price spread (Shanghai's days): no window to cap, no programme solved
    calls = p.calls
    d3, none, cap = week_level(iv, SpreadOneRate(p), mon, (40.8,) * spd, 900.0, bat)
    assert d3 == mon.toordinal() and math.isnan(none) and math.isnan(cap)
    assert p.calls - calls <= spd  # the day's prices looked up once, not the week's rates and prices


def test_on_such_a_day_every_slot_is_aimed_at_the_level_above_what_is_billed() -> None:
    spd = 96
    st = IntervalState(key=739_000 * spd, rate=11.98, profile=(4e6,) * spd, past=(4e6,) * (7 * spd), month=5)
    closed = close_interval(
        st, 900.0, spd, 5, 3.6e6, 2.5e6, (11.98,) * spd, 0.16, 0.0, (4e6,) * (7 * spd), 1, True, 3.9e6
    )
    assert closed.targets == pytest.approx((3.9e6 / (1.0 - MARGIN),) * spd)
    billed = IntervalState(key=739_000 * spd, rate=11.98, profile=(4e6,) * spd, month=5, peaks=((11.98, 4.2e6),))
    closed = close_interval(
        billed, 900.0, spd, 5, 3.6e6, 2.5e6, (11.98,) * spd, 0.16, 0.0, (4e6,) * (7 * spd), 1, True, 3.9e6
    )
    assert closed.targets == pytest.approx((4.2e6,) * spd)  # what the month bills already stands


def test_a_weekend_is_held_no_lower_than_the_all_hours_level_the_weekday_before_held() -> None:
    """The month bills the all-hours level the weekdays hold anyway: a weekend shaved under it spends
    energy on nothing (the pooled campus lost 0.7 % so, BENCHMARKS.md)."""
    spd = 96
    day = tuple(5e6 if 48 <= s < 56 else 4e6 for s in range(spd))
    sat = datetime(2026, 7, 11, 0, 0, tzinfo=LA)
    fri = sat - timedelta(days=1)
    fri_rates = tuple(PGE.demand_rate(fri + timedelta(minutes=15 * s)) for s in range(spd))
    off = min(fri_rates)
    # Friday's targets: 5.2 MW where the all-hours charge alone billed (its nights), lower in its windows,
    # inf where nothing was defended
    targets = tuple(5.2e6 if r == off else 4.5e6 for r in fri_rates)
    targets = (math.inf, *targets[1:])
    rates = tuple(PGE.demand_rate(sat + timedelta(minutes=15 * s)) for s in range(spd))
    bat = WeekBattery(budget_wh=3.6e6, power_w=2.5e6, round_trip=ETA, wear_per_kwh=0.15)
    alone = week_level(IntervalState(past=day * 7), PGE, sat, rates, 900.0, bat)[1]
    assert alone < 5.2e6 * (1.0 - MARGIN)
    held = week_level(IntervalState(past=day * 7, targets=targets), PGE, sat, rates, 900.0, bat)[1]
    assert held == pytest.approx(5.2e6 * (1.0 - MARGIN))
    # under the week's own level, Friday's targets change nothing
    low = tuple(3e6 if r == off else 2.5e6 for r in fri_rates)
    assert week_level(IntervalState(past=day * 7, targets=low), PGE, sat, rates, 900.0, bat)[1] == alone


def test_a_weekend_s_level_stands_on_what_july_already_bills_not_june_s() -> None:
    """The week's level is priced above what the month already bills (its floor, free to reach
    again): with 4.95 MW billed in July the Saturday's level is that; June's peaks are not July's."""
    spd = 96
    day = tuple(5e6 if 48 <= s < 56 else 4e6 for s in range(spd))
    sat = datetime(2026, 7, 11, 0, 0, tzinfo=LA)
    rates = tuple(PGE.demand_rate(sat + timedelta(minutes=15 * s)) for s in range(spd))
    bat = WeekBattery(budget_wh=3.6e6, power_w=2.5e6, round_trip=ETA, wear_per_kwh=0.15)
    free = week_level(IntervalState(past=day * 7), PGE, sat, rates, 900.0, bat)[1]
    assert free < 4.95e6
    july = IntervalState(past=day * 7, peaks=((11.98, 4.95e6),), month=2026 * 12 + 6)
    assert week_level(july, PGE, sat, rates, 900.0, bat)[1] == pytest.approx(4.95e6)
    june = IntervalState(past=day * 7, peaks=((11.98, 4.95e6),), month=2026 * 12 + 5)
    assert week_level(june, PGE, sat, rates, 900.0, bat)[1] == free


def test_a_peak_billed_just_over_the_last_such_day_s_level_is_not_aimed_at_again() -> None:
    """A weekend held at the all-hours peak the month bills closes some intervals a little over it
    (the load moves between a reading and the next setpoint, at 1 s): aimed at that new peak the next
    weekend day raises it again, day after day (train200 / PG&E E-20 at 1 s: 5,040 -> 5,066 kW over
    July's weekends). An overshoot under the margin is held where the last such day was held; a peak
    the month bills further over it (a weekday's) is a level, free to reach again."""
    spd = 96
    day = tuple(5e6 if 48 <= s < 56 else 4e6 for s in range(spd))
    sun = datetime(2026, 7, 12, 0, 0, tzinfo=LA)
    rates = tuple(PGE.demand_rate(sun + timedelta(minutes=15 * s)) for s in range(spd))
    bat = WeekBattery(budget_wh=3.6e6, power_w=2.5e6, round_trip=ETA, wear_per_kwh=0.15)
    july = 2026 * 12 + 6
    free = week_level(IntervalState(past=day * 7), PGE, sun, rates, 900.0, bat)[1]
    assert free < 4.9e6  # the week's own optimum: under every peak billed below

    def sunday(billed_w: float, aim_w: float, month: int = july) -> float:
        iv = IntervalState(past=day * 7, peaks=((11.98, billed_w),), month=month, week_aim_w=aim_w)
        return week_level(iv, PGE, sun, rates, 900.0, bat)[1]

    # Saturday was held at 4.95 MW and billed 4.96 MW: Sunday is held at 4.95 MW again
    assert sunday(4.96e6, 4.95e6) == pytest.approx(4.95e6)
    # nothing over Saturday's level billed: that level, the month's peak
    assert sunday(4.95e6, 4.95e6) == pytest.approx(4.95e6)
    # billed 2 % over it (more than the margin: a weekday's peak, a level): the billed peak stands
    assert sunday(4.95e6 * 1.02, 4.95e6) == pytest.approx(4.95e6 * 1.02)
    # no such day yet this month: the billed peak
    assert sunday(4.96e6, math.nan) == pytest.approx(4.96e6)
    # the state still in June (the month's first interval not yet closed): July bills nothing yet
    assert sunday(4.96e6, 4.95e6, july - 1) == free


def test_the_last_such_day_s_level_is_kept_over_the_weekdays_and_dropped_at_a_new_month() -> None:
    from agent.control.interval import roll

    spd = 96
    july = 2026 * 12 + 6
    sat_key = datetime(2026, 7, 11).toordinal() * spd
    common = dict(into=0.0, rate=11.98, sample=False, imp=0.0, net=0.0, dt=1.0, length_s=900.0, spd=spd)
    common |= dict(budget_wh=3.6e6, power_w=2.5e6, rates=(11.98,) * spd, cost_per_kwh=0.16)
    # a Saturday interval held at the week's level: it is the month's aim from then on
    iv = roll(
        IntervalState(month=july), key=sat_key + 40, month=july, week_day=sat_key // spd, week_level_w=4.95e6, **common
    )
    assert iv.week_aim_w == 4.95e6
    # Monday (no such level): kept
    mon = roll(iv, key=sat_key + 2 * spd + 40, month=july, **common)
    assert mon.week_aim_w == 4.95e6
    # August: dropped
    aug = roll(mon, key=sat_key + 21 * spd, month=july + 1, **common)
    assert math.isnan(aug.week_aim_w)


def test_a_peak_another_day_bills_drops_the_last_such_day_s_level() -> None:
    from agent.control.interval import roll

    spd = 96
    july = 2026 * 12 + 6
    sat = datetime(2026, 7, 11).toordinal()
    common = dict(into=0.0, rate=11.98, sample=False, imp=0.0, net=0.0, dt=1.0, length_s=900.0, spd=spd)
    common |= dict(budget_wh=3.6e6, power_w=2.5e6, rates=(11.98,) * spd, cost_per_kwh=0.16, month=july)

    def closing(day: int, avg_w: float) -> IntervalState:
        return IntervalState(
            key=day * spd + 40,
            rate=11.98,
            grid_ws=avg_w * 900.0,
            net_ws=avg_w * 900.0,
            covered_s=900.0,
            month=july,
            peaks=((11.98, 4.96e6),),
            week_day=sat + 1,
            week_level_w=4.95e6,
            week_aim_w=4.95e6,
        )

    # Sunday's own interval closes over the billed peak: its error at its aim, the aim kept
    assert roll(closing(sat + 1, 4.97e6), key=(sat + 1) * spd + 41, **common).week_aim_w == 4.95e6
    # Tuesday's closes over it: a level the weekdays bill, the aim dropped
    assert math.isnan(roll(closing(sat + 3, 4.97e6), key=(sat + 3) * spd + 41, **common).week_aim_w)
    # Tuesday's under it: kept
    assert roll(closing(sat + 3, 4.9e6), key=(sat + 3) * spd + 41, **common).week_aim_w == 4.95e6


def test_on_a_day_with_windows_no_window_slot_is_held_above_the_weeks_level() -> None:
    """levels.py prices the all-hours level on every hour of the day, the peak window's too, which its
    own lower level holds anyway: the part-peak morning was left unshaved with the battery full and
    billed the month's maximum demand there (train200 / PG&E E-20). The week's optimum holds the
    all-hours level with the windows and the night's recharge priced together: no window slot's level
    above it (aimed MARGIN under, as every level), and no night slot charged above it (the highest level
    the month then bills anyway); a window already under it is as it was."""
    spd = 96
    # E-20 summer weekday: 11.98 all hours, + 3.56 part-peak 08-12 and 18-21, + 16.37 peak 12-18;
    # 2.5 MW at night, 3.8 MW in part-peak, 4 MW in the peak window
    rates = tuple(28.35 if 48 <= s < 72 else 15.54 if 32 <= s < 84 else 11.98 for s in range(spd))
    load = tuple(4e6 if 48 <= s < 72 else 3.8e6 if 32 <= s < 84 else 2.5e6 for s in range(spd))
    st = IntervalState(key=739_000 * spd, rate=11.98, profile=load, month=5)
    args = (st, 900.0, spd, 5, 3.6e6, 2.52e6, rates, 0.0859, 0.0, (), 1, True)
    own = close_interval(*args).targets
    # its own levels: the peak window as deep as the energy goes, (4 MW - L) x 6 h = 3.6 MWh, L = 3.4 MW
    # (the load and the energy both over 1 - MARGIN, where it is held); the part-peak and the night not
    # worth a kW at 0.0859 per kWh
    peak = 3.4e6 / (1.0 - MARGIN)
    assert own[48:72] == pytest.approx((peak,) * 24)
    # (no slot charged above the highest level the month bills anyway: the part-peak's load, unshaved)
    assert own[:32] + own[84:] == (3.8e6,) * 44 and own[32:48] + own[72:84] == (3.8e6,) * 28
    capped = close_interval(*args, math.nan, 3.7e6).targets
    at = 3.7e6 / (1.0 - MARGIN)
    assert capped[32:48] + capped[72:84] == pytest.approx((at,) * 28)
    assert capped[48:72] == own[48:72]  # under it already
    assert capped[:32] + capped[84:] == pytest.approx((at,) * 44)  # the highest level billed anyway now
    # a level over what the month bills is no cap under it: the billed peak stands
    billed = close_interval(replace(st, peaks=((15.54, 3.9e6),)), *args[1:], math.nan, 3.7e6).targets
    assert billed[32:48] + billed[72:84] == pytest.approx((3.9e6,) * 28)
