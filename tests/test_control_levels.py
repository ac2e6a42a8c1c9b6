"""Shave levels per demand window (agent.control.levels): PG&E E-20's two demand charges on a day
small enough to check by hand, and the bound from the bill (no level deeper than pays)."""

from __future__ import annotations

import math

import pytest

from agent.control.interval import window_run
from agent.control.levels import base_rate, shave_levels, within_energy

# E-20 summer weekday by 15-min slot: 11.98 all hours, + 3.56 part-peak 08-12 and 18-21, + 16.37 peak 12-18
RATES = tuple(28.35 if 48 <= s < 72 else 15.54 if 32 <= s < 84 else 11.98 for s in range(96))
# 2.5 MW at night, 3 MW in part-peak, 4 MW in the 12:00-18:00 peak
PROFILE = tuple(4e6 if 48 <= s < 72 else 3e6 if 32 <= s < 84 else 2.5e6 for s in range(96))
ENERGY_WH = 3.6e6  # AC
POWER_W = 2.52e6
COST = 0.0859  # per kWh: 0.15 wear + 0.07633 / 0.9216 recharge - 0.14688 avoided (tou spread, negated)


def test_the_all_hours_charge_is_the_lowest_rate_billed_everywhere() -> None:
    assert base_rate(RATES) == 11.98
    assert base_rate((0.0, 5.0)) == 0.0  # an hour not billed: no all-hours charge
    assert base_rate(()) == 0.0


def test_the_energy_goes_to_the_window_whose_kw_is_worth_the_most() -> None:
    lv = shave_levels(PROFILE, RATES, 900.0, ENERGY_WH, POWER_W, COST)
    # Maximum demand (11.98/kW-month): lowering it under 4 MW costs the 6 h the afternoon spends
    # there, 6 x 30.4 x 0.0859 = 15.7 > 11.98 a month: not worth it on its own, it stays at its top
    # (not shaved: inf). Part-peak (+3.56): under 3 MW it costs 7 h x 30.4 x 0.0859 = 18.3 > 3.56:
    # not shaved. Peak (+16.37): every afternoon hour is worth shaving (16.37 / (30.4 x 0.0859) =
    # 6.3 h >= 6 h), as deep as the energy goes: (4 MW - L) x 6 h = 3.6 MWh -> L = 3.4 MW.
    assert lv[48:72] == pytest.approx((3.4e6,) * 24, abs=1.0)
    assert all(math.isinf(v) for v in lv[:48] + lv[72:])


def test_no_level_is_deeper_than_pays() -> None:
    # at 2 per kWh no afternoon hour is worth the peak charge (16.37 / (30.4 x 2) = 0.27 h < 0.25 h
    # x 2 slots): nothing is shaved, whatever the energy
    lv = shave_levels(PROFILE, RATES, 900.0, 1e12, POWER_W, 2.0)
    assert all(math.isinf(v) for v in lv)
    # one afternoon slot at 4.5 MW, and a kWh worth shaving for one slot a day but not two: the peak
    # window is held at 4 MW (only that slot shaved), the rest of the day not at all
    spike = (*PROFILE[:50], 4.5e6, *PROFILE[51:])
    lv = shave_levels(spike, RATES, 900.0, 1e12, 1e9, 16.37 / 30.4 / 0.25 * 0.99)
    assert lv[48:72] == (4e6,) * 24
    assert all(math.isinf(v) for v in lv[:48] + lv[72:])


def test_a_level_is_priced_on_the_hours_the_days_spend_above_it_not_their_envelope() -> None:
    """A training fleet's restarts come at a different hour each day: seven days at 3 MW, each with
    one hour at 4 MW + 10 kW x its day, hours 0, 1, ... 6. Their envelope (the highest per slot) is
    at 4 MW for 7 h, a day none of them was; each day spends 1 h (4 slots) above 3 MW.

    At 40.8 CNY/kW-month and 2.147 CNY/kWh a kW of level is worth 40.8 / 30.4 / 2.147 = 0.625 h a
    day, 2.5 slots. Priced on the envelope, 2 slots above its 3rd-highest value (4.06 MW, its top):
    no hour is worth shaving (inf). On the days: the level with at most 2.5 slots a day above it on
    average, 16 of the 28 high slot-days at 1/7 each (2.29 slots a day) above 4.02 MW."""
    n, one = 96, (40.8,) * 96
    days = [3e6 if not 4 * d <= s < 4 * d + 4 else 4e6 + d * 10e3 for d in range(7) for s in range(n)]
    env = tuple(max(days[d * n + s] for d in range(7)) for s in range(n))
    lam = 40.8 * 4 / (30.4 * 2.5)
    assert shave_levels(env, one, 900.0, 1e9, 1e9, lam) == (math.inf,) * 96
    assert shave_levels(env, one, 900.0, 1e9, 1e9, lam, tuple(days)) == (4.02e6,) * 96
    # the energy is still held on the envelope: it needs 100 kWh above 4.02 MW (40, 30, 20, 10 kW for
    # an hour each); with 50 kWh the level rises to where the envelope needs just that
    lv = shave_levels(env, one, 900.0, 50e3, 1e9, lam, tuple(days))
    assert sum(max(0.0, v - lv[0]) for v in env) * 0.25 == pytest.approx(50e3, rel=1e-6)
    # no days known (or a ring of the wrong length): the envelope's own hours, as before
    assert shave_levels(env, one, 900.0, 1e9, 1e9, lam, (math.nan,) * (7 * n)) == (math.inf,) * 96
    assert shave_levels(env, one, 900.0, 1e9, 1e9, lam, (3e6,) * 5) == (math.inf,) * 96


def test_where_the_energy_binds_it_is_priced_on_the_hours_it_is_held_for() -> None:
    """Two charges: the maximum demand (11.98) and a 12:00-18:00 window (+16.37) where the load sits
    at 4 MW every day; a 1 h plateau at 4.5 MW at another hour each morning (3 MW otherwise), so the
    envelope holds 7 h of it. 1 MWh a day, wear 0.01 per kWh. On the days the plateau is cheap to
    shave (1 h a day) and the energy binds. Where the energy gets its price on the days' hours too,
    the maximum demand takes it all: 28 slots of the envelope above it, (4.5 MW - L) x 7 h = 1 MWh,
    L = 4.357 MW, and the afternoon is not shaved (a kW there takes 6 h of the days). Priced on the
    envelope's hours, where the energy is held, a kW under 4.5 MW takes 7 kWh a day for 11.98 / 30.4
    and one in the afternoon 6 for 16.37 / 30.4: the energy goes to the afternoon, (4 MW - L) x 6 h =
    1 MWh, L = 3.833 MW, and the maximum demand stays at its top (not shaved)."""
    n = 96
    rates = tuple(28.35 if 48 <= s < 72 else 11.98 for s in range(n))
    days = tuple(4.5e6 if 4 * d <= s < 4 * d + 4 else 4e6 if 48 <= s < 72 else 3e6 for d in range(7) for s in range(n))
    env = tuple(max(days[d * n + s] for d in range(7)) for s in range(n))
    lv = shave_levels(env, rates, 900.0, 1e6, 1e9, 0.01, days)
    assert lv[48:72] == pytest.approx((4e6 - 1e6 / 6.0,) * 24)
    assert lv[:48] + lv[72:] == (math.inf,) * 72


def test_with_one_rate_it_is_the_lowest_level_the_energy_holds() -> None:
    one = (40.8,) * 96
    # two hours at 4 MW: (4 MW - L) x 2 h = 0.5 MWh -> 3.75 MW (the rest of the day is lower)
    prof = (4e6,) * 8 + (3e6,) * 88
    assert shave_levels(prof, one, 900.0, 0.5e6, 2.5e6, math.nan) == pytest.approx((3.75e6,) * 96)


def test_a_level_the_stored_energy_cannot_hold_at_its_aim_is_raised_evenly() -> None:
    """The afternoon's 3.4 MW level from a full battery, held 1 % under (3,366 kW), needs
    (4,000 - 3,366) kW x 6 h = 3,804 kWh, more than the 3,600 stored: raised to L' with
    (4,000 - 0.99 L') x 6 h = 3,600 kWh -> L' = 3,434.3 kW in every afternoon slot, nowhere else."""
    targets = tuple(3.4e6 if 48 <= s < 72 else math.inf for s in range(96))
    out = within_energy(targets, PROFILE, 48, 24, 0.01, ENERGY_WH, 900.0)
    assert out[48:72] == pytest.approx(((4e6 - 6e5) / 0.99,) * 24, abs=1.0)
    assert out[:48] + out[72:] == targets[:48] + targets[72:]
    # from 15:00 with the 1,800 kWh the plan left for the 3 h to 18:00: 1,902 needed, raised the same way
    out = within_energy(targets, PROFILE, 60, 12, 0.01, 1.8e6, 900.0)
    assert out[60:72] == pytest.approx(((4e6 - 6e5) / 0.99,) * 12, abs=1.0)
    assert out[48:60] == targets[48:60]  # the slots already past are not this check's


def test_the_window_keeps_what_its_shoulder_needs_before_the_night() -> None:
    """PG&E's part-peak evening after the peak window: nothing refills the battery before the night,
    so the afternoon's level is raised until the energy stored holds both. The evening's first hour
    (then 2.9 MW) at 3.1 MW over a 3 MW level held 1 % under: (3.1 - 2.97) MW x 1 h = 130 kWh kept for it; the
    afternoon then has 3,600 - 130 = 3,470 kWh: (4 MW - 0.99 L') x 6 h = 3,470 kWh, L' = (4 -
    0.578333) / 0.99 MW = 3,456.23 kW (3,434.34 kW without the evening). The evening's level is not
    raised: a kW of it frees 1 kWh for 15.54 USD, one of the afternoon's 6 kWh for 28.35."""
    ratio = 28.35 / 15.54
    evening = tuple(3.1e6 if 72 <= s < 76 else 2.9e6 if 76 <= s < 84 else v for s, v in enumerate(PROFILE))
    targets = tuple(3.4e6 if 48 <= s < 72 else 3e6 if 72 <= s < 84 else math.inf for s in range(96))
    out = within_energy(targets, evening, 48, 24, 0.01, ENERGY_WH, 900.0, (), 12, ratio)
    kept_wh = (3.1e6 - 0.99 * 3e6) * 1.0
    assert kept_wh == pytest.approx(130e3)
    assert out[48:72] == pytest.approx(((4e6 - (ENERGY_WH - kept_wh) / 6.0) / 0.99,) * 24, abs=1.0)
    assert out[48] == pytest.approx(3_456_229.0, abs=1.0)
    assert out[72:] == targets[72:] and out[:48] == targets[:48]
    # without the shoulder counted (tail 0): the window alone, as before
    alone = within_energy(targets, evening, 48, 24, 0.01, ENERGY_WH, 900.0)
    assert alone[48] == pytest.approx(3_434_343.4, abs=1.0)
    # a shoulder needing more than is stored is left out: the window's energy stays its own
    assert within_energy(targets, evening, 48, 24, 0.01, 0.1e6, 900.0, (), 12, ratio) == within_energy(
        targets, evening, 48, 24, 0.01, 0.1e6, 900.0
    )
    # the whole 3 h evening above its level: kept at 15.54 (a kWh freed there costs 15.54 / 3 h = 5.18
    # USD a month, the afternoon's 28.35 / 6 h = 4.73: the window gives way), 390 kWh ...
    long = tuple(3.1e6 if 72 <= s < 84 else v for s, v in enumerate(PROFILE))
    kept = within_energy(targets, long, 48, 24, 0.01, ENERGY_WH, 900.0, (), 12, ratio)
    assert kept[48] == pytest.approx((4e6 - (ENERGY_WH - 390e3) / 6.0) / 0.99, abs=1.0)
    # ... but at a 12.00 rate there (12.00 / 3 h = 4.00 USD) the evening gives way, not the window
    assert within_energy(targets, long, 48, 24, 0.01, ENERGY_WH, 900.0, (), 12, 28.35 / 12.0) == within_energy(
        targets, long, 48, 24, 0.01, ENERGY_WH, 900.0
    )


def test_a_window_s_shoulder_is_the_lower_rate_run_after_it_before_the_all_hours_one() -> None:
    assert window_run(RATES, 48) == (24, 12)  # the peak window: the part-peak evening 18:00-21:00
    assert window_run(RATES, 60) == (12, 12)  # from 15:00
    assert window_run(RATES, 32) == (16, 0)  # the morning part-peak: the peak window after it is dearer
    assert window_run(RATES, 72) == (12, 0)  # the evening itself: the night after it is the all-hours rate
    assert window_run(RATES, 0) == (32, 0)
    assert window_run((40.8,) * 96, 10) == (86, 0)  # one rate (Shanghai): no shoulder
    assert window_run(RATES, 96) == (0, 0) and window_run((), 0) == (0, 0)


def test_a_level_the_stored_energy_holds_is_left_as_it_is() -> None:
    targets = tuple(3.4e6 if 48 <= s < 72 else math.inf for s in range(96))
    assert within_energy(targets, PROFILE, 48, 24, 0.01, 3.9e6, 900.0) == targets  # 3,804 kWh needed
    assert within_energy(targets, PROFILE, 48, 24, 0.01, math.nan, 900.0) == targets  # stored energy unknown
    # never raised above a slot's own load (there it needs nothing): with nothing stored, the slot's load / 0.99
    out = within_energy(targets, PROFILE, 48, 24, 0.01, 0.0, 900.0)
    assert out[48:72] == pytest.approx((4e6 / 0.99,) * 24, rel=1e-9)


# Issue 13z: a 2 h plateau at 4 MW (3 MW otherwise) 30 min later each day in a 12:00-18:00 window, as
# the flat HPL loop's 2.25 h period shifts its plateau through the day: the envelope of the seven
# days is at 4 MW for 5 h, a day none of them was; each day spends 2 h there.
WINDOW = tuple(16.37 if 48 <= s < 72 else 0.0 for s in range(96))
SHIFTED = tuple(4e6 if 48 + 2 * d <= s < 56 + 2 * d else 3e6 for d in range(7) for s in range(96))
SHIFTED_ENV = tuple(max(SHIFTED[d * 96 + s] for d in range(7)) for s in range(96))


def test_the_energy_is_held_on_each_day_not_on_their_envelope() -> None:
    """0.5 MWh: on each day (4 MW - L) x 2 h = 0.5 MWh, L = 3.75 MW; on the envelope (4 MW - L) x
    5 h, L = 3.9 MW, 150 kW of window charge the battery could hold on every one of the days."""
    lv = shave_levels(SHIFTED_ENV, WINDOW, 900.0, 0.5e6, 1e9, math.nan, (), SHIFTED)
    assert lv[48:72] == pytest.approx((3.75e6,) * 24, rel=1e-9)
    assert lv[:48] + lv[72:] == (math.inf,) * 72
    # without the days, or none known, the envelope holds it, as before
    assert shave_levels(SHIFTED_ENV, WINDOW, 900.0, 0.5e6, 1e9, math.nan)[48] == pytest.approx(3.9e6, rel=1e-9)
    nan_days = (math.nan,) * len(SHIFTED)
    assert shave_levels(SHIFTED_ENV, WINDOW, 900.0, 0.5e6, 1e9, math.nan, (), nan_days)[48] == pytest.approx(3.9e6)
    # a day's unknown slots (its afternoon still to come) are the profile's, here the envelope's: that
    # day binds; a day with none known is left out
    part = SHIFTED[:144] + (math.nan,) * 48 + SHIFTED[192:]
    assert shave_levels(SHIFTED_ENV, WINDOW, 900.0, 0.5e6, 1e9, math.nan, (), part)[48] == pytest.approx(3.9e6)
    part = SHIFTED[:96] + (math.nan,) * 96 + SHIFTED[192:]
    assert shave_levels(SHIFTED_ENV, WINDOW, 900.0, 0.5e6, 1e9, math.nan, (), part)[48] == pytest.approx(3.75e6)


def test_the_stored_energy_is_checked_on_each_day_not_on_their_envelope() -> None:
    """3.7 MW held 1 % under with 0.5 MWh stored: each day needs (4 MW - 0.99 L') x 2 h = 0.5 MWh,
    L' = 3.75 / 0.99 MW; the envelope would raise it to 3.9 / 0.99 MW."""
    targets = tuple(3.7e6 if 48 <= s < 72 else math.inf for s in range(96))
    out = within_energy(targets, SHIFTED_ENV, 48, 24, 0.01, 0.5e6, 900.0, SHIFTED)
    assert out[48:68] == pytest.approx((3.75e6 / 0.99,) * 20, abs=1.0)
    assert out[68:72] == targets[68:72]  # never at the plateau on any day: no energy, not raised
    out = within_energy(targets, SHIFTED_ENV, 48, 24, 0.01, 0.5e6, 900.0)
    assert out[48:68] == pytest.approx((3.9e6 / 0.99,) * 20, abs=1.0)
