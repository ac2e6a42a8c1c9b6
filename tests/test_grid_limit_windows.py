"""The grid connection limit and the demand windows planned together (issue 14, branch issue-14g).

A PG&E-like day with two demand windows (the maximum demand at every hour, a peak window 12-18 on
top) and one energy price (no arbitrage), the demo fleet (12 x 418 kWh, floor 20 %), a 4 MW
connection, 60 s cycles. The peak window's 14:00 interval: the load dips to 2.9 MW for its first
three minutes, then runs at 5.5 MW, over the limit, for the other twelve; the month already bills
5 MW in the window and yesterday's profile reached it there. The fleet is at its floor, short of
the limit's reserve (a fresh start keeps all it holds for the limit).

Before: the limit's recharge took the dip (demand shaving's allowance, which counts on shaving to
give the charge back), the battery gave back what it read above the floor at 5.5 MW and stopped at
the floor with the rest stored, and the interval billed above the load's own average (what
train200 on PG&E E-20 did at 18:00 on its last day: the summer part-peak 35 kW over no battery).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from agent.control import initial_state
from agent.control.demand import CHARGE_MARGIN
from agent.model.operator import OperatorState
from agent.model.plan import Plan
from tests.test_control_edges import Plant
from tests.test_control_support import CFG, TablePrices

LIMIT = 4e6
LIMITED = replace(CFG, grid_import_limit_w=LIMIT)
OP = OperatorState()
MAX_DEMAND, PEAK = 11.98, 28.35  # per kW-month: every hour, and every hour of the 12-18 window


class TwoWindows(TablePrices):
    def demand_rate(self, t: datetime) -> float:
        return PEAK if 12 <= t.hour < 18 else MAX_DEMAND


PRICES = TwoWindows(((0, 24, 0.5),))
DIP, HIGH = 2.9e6, 5.5e6
LOADS = [DIP] * 3 + [HIGH] * 12  # the 14:00 interval, minute by minute


def day(soc: float, loads: list[float]) -> tuple[Plant, list[Plan]]:
    """The fleet at `soc` (read in 0.1 % steps), the state seeded as above, the clock at 13:59; then
    the 14:00 interval minute by minute: each minute's plan."""
    plant = Plant(soc, 0.0, LIMITED, soc_step=0.1)
    profile = [3e6] * 96
    profile[48:72] = [5e6] * 24  # 12:00-18:00
    plant.st = initial_state(LIMITED, month_peaks={PEAK: 5e6, MAX_DEMAND: 5e6}, month=(2026, 7), profile=profile)
    plant.t = 1000.0 + 2 * 3600.0 - 60.0  # NOON + 2 h - 1 min: 13:59
    plant.cycle(HIGH, OP, dt=60.0, prices=PRICES)  # the minute before: the interval's first reading is 14:00's
    return plant, [plant.cycle(load, OP, dt=60.0, prices=PRICES) for load in loads]


def test_at_the_floor_a_dip_in_a_billed_window_is_not_charged_into() -> None:
    plant, plans = day(19.8, LOADS)  # below the floor (read 19.8: a ramp-out's last step, say)
    battery = [p.site_setpoint_w for p in plans]
    # the dip: the limit would let it charge 1.1 MW; nothing was given in the interval, so nothing
    # (before: 320, 720 and 1,028 kW, then 1.5 MW for the limit for one minute, the floor reached
    # again at 19.9 %: the interval 40 kW above the load's own 5,129 kW)
    assert battery == [0.0] * 15  # over the limit at the floor: nothing to give (the alarm says so)
    iv = plant.st.interval
    # the import booked, 14:00-14:14 (each minute at the load read at its start, as the meter bills
    # it: begin.metered_w): the load's
    assert iv.grid_ws / iv.covered_s == pytest.approx(sum(LOADS[:14]) / 14)
    assert plant.soc == [19.8] * 12


def test_what_the_interval_gave_may_be_taken_back() -> None:
    # 13:59 at 5.5 MW gives 1.5 MW for the limit (20.6 % -> 20.08, read 20.1); 14:00 at 4.5 MW gives
    # the 0.5 MW over the limit and reaches the floor (19.91, read 19.9); 14:01 dips: at the floor,
    # the interval has given 0.5 MW x 60 s, so the dip may take back 0.5 MW (the limit's 1.1 MW would
    # take more). Demand shaving's allowance does not bind: the limit has drawn the fleet to its floor
    # (limit_reserve.drawn_down), so it charges up to the shave target itself, 4.95 MW, with
    # 67.9 kW of credit from the first minute, booked as billed at 4.0 MW (begin.metered_w), against
    # the interval's import forecast with the load held at the limit, 3.78 MW (4.0 booked, the 2.9 MW
    # dip now, the last interval's 5 MW held at 4.0 for the rest of the prior): 1.24 MW of room.
    _, plans = day(20.6, [4.5e6, DIP])
    assert [p.site_setpoint_w for p in plans] == [pytest.approx(0.5e6), pytest.approx(-0.5e6)]
    assert plans[1].decided_by == "limit_recharge"
    assert all(b.source != "demand" for b in plans[1].bounds)
    assert next(b.lo_w for b in plans[1].bounds if b.source == "limit_recharge") == pytest.approx(-0.5e6)
    why = next(b.reason for b in plans[1].bounds if b.source == "limit_recharge")
    assert why == (
        "at the reserve floor in a demand interval billed at 28.35 that the load reaches:"
        " charging at most the 500000 W the interval has given"
    )


# --- a load swinging across the limit, the fleet short of the limit's reserve (train200 at 60 s) ---
SWING_LIMIT = 4.5e6
SWINGING = replace(CFG, grid_import_limit_w=SWING_LIMIT)
ONE_RATE = TablePrices(((0, 24, 0.5),), rate=40.8)  # one energy price (no arbitrage), demand billed all day
SWING = [5.0e6] * 6 + [3.0e6] * 3 + [5.0e6] * 6  # a 15-minute interval: over the limit, a dip, over again


def swing_interval(soc: float) -> tuple[Plant, list[Plan]]:
    """The fleet at `soc` after a fresh start (all it holds is kept for the limit: short of its
    reserve), the month billed at 4.6 MW (above the limit: the levels of a load that runs over it),
    yesterday's profile at it; the clock at 13:59 with the load over the limit, then the 14:00
    interval minute by minute."""
    plant = Plant(soc, 0.0, SWINGING)
    plant.st = initial_state(SWINGING, month_peaks={40.8: 4.6e6}, month=(2026, 7), profile=[4.6e6] * 96)
    plant.t = 1000.0 + 2 * 3600.0 - 60.0  # 13:59
    plant.cycle(5.0e6, OP, dt=60.0, prices=ONE_RATE)
    return plant, [plant.cycle(load, OP, dt=60.0, prices=ONE_RATE) for load in SWING]


FC = (4.5e6 * 360.0 + 3.0e6 * 60.0 + 4.5e6 * 240.0) / 660.0  # the dip's forecast of the interval's import


def test_a_swing_across_the_limit_recharges_into_the_room_the_limit_leaves() -> None:
    plant, plans = swing_interval(50.0)
    battery = [p.site_setpoint_w for p in plans]
    # over the limit the battery gives the excess, 0.5 MW, every minute
    assert battery[:6] + battery[9:] == [pytest.approx(0.5e6)] * 12
    # The dip's first minute recharges as far as demand shaving's charging allowance lets it. The
    # interval so far imported the limit, 4.5 MW, for 6 min; the level is 4.6 MW (the month's billed
    # peak, which yesterday's load reached: held with no margin, demand.close_interval), charged to
    # CHARGE_MARGIN under it, 4.508 MW: 2.88 MJ of credit over the 540 s left, 4.5133 MW allowed.
    # The interval's import without this controller is forecast with the load held at the limit
    # (state.IntervalState.capped_ws): (4.5 MW x 360 s + the 3 MW dip x 60 s + the last interval's
    # 4.6 MW held at 4.5 x 240 s) / 660 s = 4.3636 MW. Charge: 149.7 kW. Before, against the load's
    # own average (4.618 MW: over the allowance), the dip's first minute charged nothing (its three
    # minutes 648 kW-min, 1,268 now): the limit's energy came back only where the load stayed
    # under the limit for long.
    charge_tgt = 4.6e6 * (1.0 - CHARGE_MARGIN)
    allowed = charge_tgt + (charge_tgt - 4.5e6) * 360.0 / 540.0
    assert battery[6] == pytest.approx(FC - allowed)
    assert plans[6].decided_by == "demand"
    iv = plant.st.interval
    billed = iv.grid_ws / iv.covered_s  # the interval's first 14 minutes as the meter billed them
    assert billed <= charge_tgt  # never above what the month bills: no harm


def test_while_the_limit_draws_the_fleet_down_the_dip_takes_all_the_room() -> None:
    # 21.5 %: 75 kWh above the floor; seven minutes 0.5 MW over the limit take 60.8 kWh of store, the
    # ideal battery's deficit is 104 kWh (counted from the fresh start), more than the 14 kWh left:
    # the run of excess is drawing the fleet down (limit_reserve.drawn_down), and the dip charges up to
    # the level itself, no margin (shaving gives nothing back then)
    plant, plans = swing_interval(21.5)
    assert plant.st.limit.deficit_wh > 75e3
    bound = next(b for b in plans[6].bounds if b.source == "demand")
    words = bound.reason.split()  # "demand target <W> W, allowed now <W> W" (whole watts)
    tgt, allowed = float(words[2]), float(words[6])
    assert allowed == pytest.approx(tgt + (tgt - 4.5e6) * 360.0 / 540.0, abs=1.0)  # the target's credit: no margin
    assert plans[6].site_setpoint_w == pytest.approx(FC - allowed, abs=1.0)
