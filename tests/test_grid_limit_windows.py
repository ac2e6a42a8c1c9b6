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
    # take more). Demand shaving's allowance binds first, at 449 kW: the interval's first minute is
    # booked as billed, 4.0 MW (the 4.5 MW read at 14:00 less the 0.5 MW given), not at the dip read
    # after it (begin.metered_w).
    _, plans = day(20.6, [4.5e6, DIP])
    assert [p.site_setpoint_w for p in plans] == [pytest.approx(0.5e6), pytest.approx(-449_372.55, abs=1.0)]
    assert plans[1].decided_by == "demand"
    assert next(b.lo_w for b in plans[1].bounds if b.source == "limit_recharge") == pytest.approx(-0.5e6)
    why = next(b.reason for b in plans[1].bounds if b.source == "limit_recharge")
    assert why == (
        "at the reserve floor in a demand interval billed at 28.35 that the load reaches:"
        " charging at most the 500000 W the interval has given"
    )
