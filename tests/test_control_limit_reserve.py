"""The energy the grid connection limit needs (issue 14, item 4): measured at fine resolution, kept
from arbitrage and demand shaving, recharged below the limit (agent/control/limit_reserve.py).

The demo fleet (12 x 209 kW, 12 x 418 kWh, floor 20 %, ceiling 95 %, 96 % each way), a 4 MW
connection, as in test_control_grid_limit."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.control import decide, initial_state
from agent.control.limit_reserve import advance, reserve_wh
from agent.control.state import ControllerState, LimitState
from agent.model.operator import OperatorState
from tests.test_control_edges import Plant
from tests.test_control_support import CFG, FLAT, NOON, SHANGHAI, TablePrices, fleet, snap
from tests.test_control_track import T0, schedule

LIMIT = 4e6
LIMITED = replace(CFG, grid_import_limit_w=LIMIT)
OP = OperatorState()
CAP_WH = 12 * 418e3
FULL_W = 12 * 209e3
NO_DEMAND = TablePrices(SHANGHAI.table, rate=0.0)  # Shanghai's energy prices, no demand charge
USABLE = 0.75 * CAP_WH
DAY = LimitState(seen_s=86400.0)  # a day of readings counted: the reserve is what they needed


def step(
    ls: LimitState,
    net: float,
    dt: float = 1.0,
    key: int = 5,
    level: float = LIMIT,
    mean: float = math.nan,
    sample: bool = True,
    ahead: float = 0.0,
) -> LimitState:
    return advance(
        ls,
        limit_w=LIMIT,
        sample=sample,
        net_w=net,
        mean_w=mean,
        dt=dt,
        key=key,
        spd=96,
        level_w=level,
        dis_w=FULL_W,
        chg_w=FULL_W,
        usable_wh=USABLE,
        eta_c=0.96,
        eta_d=0.96,
        ahead_wh=ahead,
    )


def test_the_ideal_battery_counts_every_second_of_excess_and_recharges_below_the_level() -> None:
    ls = step(DAY, 5e6, dt=36.0)  # 1 MW over the limit for 36 s: 10 kWh, 10.416... from store
    assert ls.deficit_wh == pytest.approx(1e6 * 36 / 3600 / 0.96)
    ls = step(ls, 3e6, dt=3.6)  # 1 MW of room for 3.6 s: 0.96 kWh back into store
    assert ls.deficit_wh == pytest.approx(1e4 / 0.96 - 960.0)
    assert reserve_wh(ls, USABLE) == pytest.approx(1e4 / 0.96)  # the deepest so far, not the deficit now
    ls = step(ls, 3.8e6, dt=3600.0, level=3.5e6)  # under the limit, above the demand level: no room
    assert ls.deficit_wh == pytest.approx(1e4 / 0.96 - 960.0)
    ls = step(ls, 2e6, dt=36.0, mean=3.5e6)  # room only under the interval's average, as demand.py charges
    assert ls.deficit_wh == pytest.approx(1e4 / 0.96 - 960.0 - 0.5e6 * 36 / 3600 * 0.96)
    ls = step(ls, 0.0, dt=3600.0)  # more than enough room (at the fleet's charge power): empty again
    assert ls.deficit_wh == 0.0
    assert reserve_wh(ls, USABLE) == pytest.approx(1e4 / 0.96)


def test_excess_beyond_the_fleet_power_and_energy_is_not_counted() -> None:
    ls = step(DAY, LIMIT + 3e6, dt=3.6)  # 3 MW over: the fleet gives at most 2.508 MW
    assert ls.deficit_wh == pytest.approx(FULL_W * 3.6 / 3600 / 0.96)
    ls = step(ls, LIMIT + 1e6, dt=86400.0)  # a day over: at most the fleet's usable energy
    assert ls.deficit_wh == pytest.approx(0.75 * CAP_WH)


def test_the_reserve_is_the_deepest_deficit_of_the_last_week() -> None:
    ls = step(DAY, 5e6, dt=36.0, key=100)  # interval 100: 10.4 kWh deep
    ls = step(ls, 0.0, dt=900.0, key=101)  # recharged in the next interval
    assert (ls.deficit_wh, reserve_wh(ls, USABLE)) == (0.0, pytest.approx(1e4 / 0.96))
    week = 7 * 96
    for k in range(102, week + 101):  # a week without excess: interval 100's place in the ring comes round
        ls = step(ls, 0.0, dt=900.0, key=k)
    assert reserve_wh(ls, USABLE) == pytest.approx(1e4 / 0.96)  # interval 100 is still within the week
    ls = step(ls, 0.0, dt=900.0, key=week + 101)  # interval 100 + a week closed without excess
    assert reserve_wh(ls, USABLE) == 0.0


def test_a_fresh_start_keeps_everything_until_a_day_is_counted() -> None:
    ls = step(LimitState(), 5e6, dt=36.0)
    assert (ls.seen_s, reserve_wh(ls, USABLE)) == (36.0, USABLE)
    ls = step(ls, 3e6, dt=86400.0 - 36.0 - 1.0)
    assert reserve_wh(ls, USABLE) == USABLE
    ls = step(ls, 3e6, dt=1.0)  # a day: what the day needed (the 36 s, recharged since)
    assert reserve_wh(ls, USABLE) == pytest.approx(1e4 / 0.96)


def test_the_day_profile_need_is_taken_once_per_interval() -> None:
    ls = step(DAY, 0.0, key=7, sample=False, ahead=5e6)  # more than the fleet holds: at most all of it
    assert reserve_wh(ls, USABLE) == pytest.approx(0.75 * CAP_WH)


def with_reserve(wh: float) -> ControllerState:
    """A state whose last week needed `wh` of store for the limit (in its fourth interval)."""
    past = [0.0] * 7 * 96
    past[3] = wh
    return ControllerState(limit=LimitState(past_wh=tuple(past), past_max_wh=wh, seen_s=86400.0))


def test_arbitrage_keeps_the_limits_reserve_and_recharges_it_instead() -> None:
    # 10:00, a peak-price hour, 30 % SoC: 501.6 kWh above the floor, 3 MW of load
    cl, pcs = fleet(soc=30.0)
    s = snap(3e6, t_wall=NOON.replace(hour=10), clusters=cl, pcs=pcs)
    free, _ = decide(s, ControllerState(limit=DAY), LIMITED, OP, NO_DEMAND, False)
    assert free.decided_by == "tou_discharge" and free.site_setpoint_w > 0.0
    kept, _ = decide(s, with_reserve(400e3), LIMITED, OP, NO_DEMAND, False)  # 400 kWh kept: 101.6 to sell
    assert kept.decided_by == "tou_discharge"
    assert kept.site_setpoint_w == pytest.approx(101.6e3 * 0.96)  # spread over the hour of peak price left
    held, _ = decide(s, with_reserve(600e3), LIMITED, OP, NO_DEMAND, False)  # short of it: recharge
    assert (held.decided_by, held.site_setpoint_w) == ("grid_import_limit", pytest.approx(-1e6))  # up to 4 MW


def test_demand_shaving_does_not_draw_on_the_limits_reserve() -> None:
    # noon (flat price), 3 MW billed this month, 3.5 MW of load: shaving discharges...
    cl, pcs = fleet(soc=30.0)
    s = snap(3.5e6, t_wall=NOON, clusters=cl, pcs=pcs)
    month = (NOON.year, NOON.month)
    free = replace(initial_state(LIMITED, month_peaks={40.8: 3e6}, month=month), limit=DAY)
    p, _ = decide(s, free, LIMITED, OP, SHANGHAI, False)
    assert (p.decided_by, p.site_setpoint_w > 4e5) == ("demand", True)
    short = replace(with_reserve(600e3), interval=free.interval)
    p, _ = decide(s, short, LIMITED, OP, SHANGHAI, False)  # ...but not below the limit's reserve
    assert (p.decided_by, p.site_setpoint_w) == ("demand", 0.0)


def test_the_reserve_is_recharged_after_a_run_of_excess_then_held() -> None:
    plant = Plant(20.3, 0.0, LIMITED)  # 15 kWh above the floor
    plant.st = ControllerState(limit=DAY)  # a day without excess
    for _ in range(30):  # 5 MW for 30 s: 1 MW from the battery, 8.7 kWh from store
        p = plant.cycle(5e6, OP, prices=FLAT)
        assert p.site_setpoint_w == pytest.approx(1e6)
    # the first cycle stands for no time (no cycle before it): 29 s counted
    assert plant.st.limit.deficit_wh == pytest.approx(1e6 * 29 / 3600 / 0.96)
    stored = [(plant.soc[0] - 20.0) * 0.01 * CAP_WH]
    recharge = []
    for _ in range(120):  # 3 MW, one price all day (arbitrage holds): recharge at the 1 MW to spare
        p = plant.cycle(3e6, OP, prices=FLAT)
        recharge.append(p.site_setpoint_w)
        stored.append((plant.soc[0] - 20.0) * 0.01 * CAP_WH)
    # short of the reserve (what the minute took) until the store holds it again, then back to arbitrage
    n = next(i for i, e in enumerate(stored) if e > reserve_wh(plant.st.limit, USABLE))
    assert recharge[:n] == pytest.approx([-1e6] * n)
    assert recharge[n:] == pytest.approx([0.0] * (len(recharge) - n))
    assert plant.st.limit.deficit_wh == 0.0


@settings(max_examples=100, deadline=None)
@given(
    soc=st.sampled_from([20.1, 22.0, 50.0, 94.0]),
    loads=st.lists(st.floats(0.5e6, 8e6), min_size=2, max_size=40),
    ramp=st.sampled_from([0.0, 200e3]),
    hour=st.sampled_from([3, 10, 12, 19]),
)
def test_never_more_import_over_the_limit_than_without_the_battery(
    soc: float, loads: list[float], ramp: float, hour: int
) -> None:
    """Adversarial loads around the limit, at every price period: in no cycle does the battery put
    the import further above the limit than the load alone would, nor raise the import above its
    peak without the battery."""
    plant = Plant(soc, 0.0, replace(LIMITED, ramp_limit_w_per_s=ramp))
    plant.t = 1000.0 + hour * 3600.0 - 12 * 3600.0  # Plant's wall clock is NOON + (t - 1000 s)
    peak = 0.0
    for load in loads:
        p = plant.cycle(load, OP, prices=SHANGHAI)
        grid = load - p.site_setpoint_w
        peak = max(peak, load)
        assert max(0.0, grid - LIMIT) <= max(0.0, load - LIMIT) + 1e-3
        assert grid <= max(peak, LIMIT) + 1e-3


def test_a_dispatch_plan_being_tracked_still_recharges_the_limits_reserve() -> None:
    # the plan holds the battery at 0 W with its SoC on plan (30 %); the limit's reserve is short
    # (600 kWh needed, 501.6 above the floor): it is recharged as without a plan, up to the 4 MW
    # connection, or under the plan's own interval cap where it has one (as demand shaving holds it)
    cl, pcs = fleet(soc=30.0)
    s = snap(3e6, t_mono=1000.0, t_wall=T0, clusters=cl, pcs=pcs)
    p, _ = decide(s, with_reserve(600e3), LIMITED, OP, SHANGHAI, False, schedule=schedule(0.0, soc0=30.0))
    assert (p.decided_by, p.site_setpoint_w) == ("grid_import_limit", pytest.approx(-1e6))
    p, _ = decide(s, with_reserve(600e3), LIMITED, OP, SHANGHAI, False, schedule=schedule(0.0, 3.5e6, soc0=30.0))
    assert (p.decided_by, p.site_setpoint_w) == ("plan_cap", pytest.approx(-430e3))
    p, _ = decide(s, with_reserve(400e3), LIMITED, OP, SHANGHAI, False, schedule=schedule(0.0, soc0=30.0))
    assert (p.decided_by, p.site_setpoint_w) == ("plan", 0.0)  # not short of it: the plan decides
