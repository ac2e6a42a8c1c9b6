"""Plan tracking (agent/control/track.py) through decide(): the running slot of a dispatch plan
becomes the battery target and a grid-import cap, below the safety bounds, in place of the
heuristic economics. Fleet: 12 clusters x 418 kWh (5,016 kWh) at 50 %, 2.508 MW each way."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from agent.control import decide, initial_state
from agent.control.begin import begin_cycle
from agent.control.schedule import DispatchPlan
from agent.control.state import ControllerState
from agent.control.track import track
from agent.control.window import Window
from agent.model.operator import OperatorState
from agent.model.plan import Plan
from tests.test_control_demand import T0
from tests.test_control_support import CFG, SHANGHAI, fleet, snap

CAP_WH = 12 * 418e3
OP = OperatorState()


def schedule(
    battery_w: float, cap_w: float = math.inf, soc0: float = 50.0, start: float | None = None, load_w: float = 3e6
) -> DispatchPlan:
    b = np.full(4, battery_w)
    soc = soc0 - np.cumsum(b) * 0.25 / CAP_WH * 100.0
    return DispatchPlan(
        made_s=T0.timestamp(),
        start_s=T0.timestamp() if start is None else start,
        step_s=900.0,
        battery_w=b,
        grid_w=load_w - b,
        grid_cap_w=np.full(4, cap_w),
        soc0_pct=soc0,
        soc_pct=soc,
        price=np.full(4, 0.66),
        objective=0.0,
        solve_s=0.0,
    )


def at(
    p: DispatchPlan | None,
    load: float = 3e6,
    k: float = 0.0,
    soc: float = 50.0,
    op: OperatorState = OP,
    billed: float | None = None,
) -> Plan:
    """One cycle `k` s into the plan's first slot; `billed`: the month's peak so far (W)."""
    clusters, pcs = fleet(soc=soc)
    s = snap(load, t_mono=1000.0 + k, t_wall=T0 + timedelta(seconds=k), clusters=clusters, pcs=pcs)
    st = initial_state(CFG, {SHANGHAI.rate: billed}, (2026, 7)) if billed is not None else initial_state(CFG)
    return decide(s, st, CFG, op, SHANGHAI, False, schedule=p)[0]


def test_the_planned_power_is_the_target_when_the_soc_is_on_plan() -> None:
    out = at(schedule(500e3))
    assert (out.decided_by, out.mode) == ("plan", "auto")
    assert out.site_setpoint_w == pytest.approx(500e3)
    assert out.reason == "following the dispatch plan"


def test_a_soc_above_the_plan_is_given_back_over_one_interval() -> None:
    # 2 points above plan = 100.32 kWh, over 900 s: 401.28 kW more than planned
    out = at(schedule(500e3), soc=52.0)
    assert out.site_setpoint_w == pytest.approx(500e3 + 401_280.0)


def test_halfway_through_the_slot_the_planned_soc_has_moved_on() -> None:
    # 450 s into a 1 MW slot the plan is 125 kWh lower (2.492 points): a fleet still at 50 % is
    # above it and discharges 2.492 % x 5,016 kWh / 0.25 h = 500 kW more
    out = at(schedule(1e6), k=450.0)
    assert out.site_setpoint_w == pytest.approx(1.5e6)


def test_the_cap_shaves_a_load_above_the_forecast() -> None:
    # the plan holds 0 W on a 2.4 MW forecast but caps the import at 2.5 MW, aimed 1 % under
    # (demand.MARGIN): a 3 MW load gets 3 - 2.475 = 525 kW from the battery
    out = at(schedule(0.0, cap_w=2.5e6, load_w=2.4e6), billed=2.5e6)
    assert out.decided_by == "plan_cap"
    assert out.site_setpoint_w == pytest.approx(525e3)
    assert [b.source for b in out.bounds][-1] == "plan_cap"


@pytest.mark.parametrize(("load", "expected"), [(3e6, 0.0), (3.1e6, 100e3)])
def test_where_the_plan_imports_at_its_cap_the_cap_is_held_without_the_margin(load: float, expected: float) -> None:
    # a flat 3 MW forecast the battery cannot hold lower: the plan imports at its 3 MW cap. Aiming
    # 1 % under it would discharge 30 kW for as long as the battery lasts, then the peak comes back
    out = at(schedule(0.0, cap_w=3e6), load=load, billed=3e6)
    assert out.site_setpoint_w == pytest.approx(expected)


@pytest.mark.parametrize(
    ("billed", "cap", "expected"),
    [
        (3.1e6, 3.2e6, -38e3),  # under the billed peak less 2 % (demand.CHARGE_MARGIN): 3.038 MW
        (3.5e6, 3.2e6, -136e3),  # the plan's cap is lower: 3.2 MW less 2 %
        (None, 3.2e6, -136e3),  # nothing billed yet this month: the plan's cap alone (was 0: no charging)
        (0.0, 3.2e6, -136e3),
        (4e6, math.inf, -920e3),  # no plan cap: the billed peak still bounds the charge (3.92 MW)
    ],
)
def test_charging_stops_under_the_billed_peak_and_the_cap(billed: float | None, cap: float, expected: float) -> None:
    # the plan charges 1 MW on a 3 MW load
    out = at(schedule(-1e6, cap_w=cap), billed=billed)
    assert out.site_setpoint_w == pytest.approx(expected)
    assert out.decided_by == "plan_cap"


@pytest.mark.parametrize(
    ("load", "cap", "expected"),
    [
        # the plan charges 200 kW on its 3 MW forecast up to its 3.2 MW cap (planned import 3.2 MW):
        (3e6, 3.2e6, -136e3),  # the load as forecast: the room under 3.2 MW less 2 % (CHARGE_MARGIN)
        (2.5e6, 3.2e6, -636e3),  # 500 kW below the forecast: that room too, not the planned 200 kW
        (3.1e6, 3.2e6, -36e3),  # above it: only the room there is (3.136 - 3.1 MW)
        # the plan charges 200 kW with its cap and the month's level at 3.5 MW, well above (charging
        # up to 3.43 MW): the amount is its choice, kept
        (2.5e6, 3.5e6, -200e3),
    ],
)
def test_where_the_plan_charges_at_its_cap_the_charge_fills_the_room_there_is(
    load: float, cap: float, expected: float
) -> None:
    # (a planned charge kept to its planned power was lost whenever the load ran above the forecast
    # and never made up when it ran below: on the HPL loop the battery never filled)
    out = at(schedule(-200e3, cap_w=cap), load=load, billed=cap)
    assert out.site_setpoint_w == pytest.approx(expected)


def test_where_the_plan_charges_up_to_the_charge_level_the_charge_fills_the_room_there_is() -> None:
    # The planner charges only up to the level the tracker charges to (the month's 3.2 MW less 2 %:
    # planner.charge_room), under its 3.5 MW cap: 136 kW on its 3 MW forecast. The level limits the
    # charge as a cap would: a load 500 kW under the forecast leaves 636 kW of room, filled.
    p = schedule(-136e3, cap_w=3.5e6)
    assert at(p, load=2.5e6, billed=3.2e6).site_setpoint_w == pytest.approx(-636e3)
    assert at(p, load=3e6, billed=3.2e6).site_setpoint_w == pytest.approx(-136e3)


@pytest.mark.parametrize(
    ("load", "cap", "short", "expected"),
    [
        # the plan discharges 200 kW on its 3.4 MW forecast down to its 3.2 MW cap (import at the cap),
        # short of energy (DispatchPlan.short: a kWh charged now worth more to it than the horizon's
        # highest price)
        (3.4e6, 3.2e6, True, 200e3),  # the load as forecast: the planned discharge holds the cap
        (3.5e6, 3.2e6, True, 300e3),  # above it: shaved to the cap
        (2.5e6, 3.2e6, True, -636e3),  # a dip 900 kW under it: the room under 3.2 MW less 2 % filled
        # the same dip where the plan is not short (energy to trade, not short for the level; or not
        # known): the planned discharge kept, the plan's choice
        (2.5e6, 3.2e6, False, 200e3),
        # the plan discharges 200 kW with its cap at 3.5 MW, well above: the amount is its choice, kept
        (2.5e6, 3.5e6, True, 200e3),
    ],
)
def test_where_the_plan_shaves_to_its_cap_short_of_energy_a_dip_is_filled(
    load: float, cap: float, short: bool, expected: float
) -> None:
    # (kept to the planned power, the tracker discharged into a job restart's dip and charged nothing
    # there, where the plan's scenarios refill in theirs: the battery ran empty before the end of the
    # month's first peak window, train200 / PG&E E-20, BENCHMARKS 13x)
    p = replace(schedule(200e3, cap_w=cap, load_w=3.4e6), short=short)
    out = at(p, load=load, billed=3.2e6)
    assert out.site_setpoint_w == pytest.approx(expected)


def test_the_reserve_keeps_its_priority_over_the_plan() -> None:
    # at the 20 % SoC floor the plan's discharge is cut to nothing by the reserve bound
    clusters, pcs = fleet(soc=20.0)
    s = snap(3e6, t_wall=T0, clusters=clusters, pcs=pcs)
    out = decide(s, initial_state(CFG), CFG, OP, SHANGHAI, False, schedule=schedule(1e6, soc0=20.0))[0]
    assert out.site_setpoint_w == pytest.approx(0.0)
    assert out.decided_by != "plan"


def test_without_a_plan_slot_for_now_the_heuristic_decides() -> None:
    later = schedule(500e3, start=T0.timestamp() + 3600.0)
    assert at(later).decided_by not in ("plan", "plan_cap")
    assert at(None).decided_by not in ("plan", "plan_cap")


def test_an_operator_mode_is_not_overridden_by_the_plan() -> None:
    out = at(schedule(500e3), op=OperatorState(mode="idle"))
    assert (out.mode, out.site_setpoint_w) == ("idle", 0.0)


@pytest.mark.parametrize("step_s", [60, 1])
def test_a_plateau_late_in_the_interval_is_shaved_under_the_plan_cap(step_s: int) -> None:
    # The plan holds 0 W with its cap at the 4.4 MW billed this month; 780 s at 4.35 MW (just under
    # the aim, 99 % of the cap), then a job restart steps the load to 5.5 MW for the last 120 s, which
    # alone would close the interval at 4.503 MW. The tracker compares the rest of the interval's
    # forecast with the allowance for that rest (demand.rest_net_forecast_w and rest_allowed_w):
    # before, the whole interval's average (780 s at 4.35 MW) stood for the rest, the tracker gave
    # ~50 kW at 60 s where ~1.1 MW was needed, and the interval closed over the cap.
    t0 = T0.timestamp()
    p = schedule(0.0, cap_w=4.4e6, load_w=4.35e6, start=t0 - 900.0)
    st = initial_state(CFG, {SHANGHAI.rate: 4.4e6}, (2026, 7), profile=[4.35e6] * 96)
    battery = 0.0
    for k in range(-step_s, 901, step_s):
        load = 4.35e6 if k < 780 else 5.5e6
        clusters, pcs = fleet(soc=50.0)
        s = snap(load, battery=battery, t_mono=1000.0 + k, t_wall=T0 + timedelta(seconds=k), clusters=clusters, pcs=pcs)
        plan, st = decide(s, st, CFG, OP, SHANGHAI, False, schedule=p)
        battery = plan.site_setpoint_w
    assert st.month_peak(SHANGHAI.rate) == 4.4e6  # closed under the cap: nothing new billed


@pytest.mark.parametrize(
    ("level_w", "first_w", "then_w", "closes_w"),
    [
        # the plan does not say (an older plan): nothing billed in this window yet, so the plan's cap
        # alone bounds the charge, and then all of it is given back: 54 MJ over the 840 s left
        (None, -900e3, 54e6 / 840.0, 4e6),
        (0.0, 0.0, 0.0, 4e6),  # the month's first interval: nothing so far, its own load the only room
        (3.9e6, 0.0, 0.0, 4e6),  # the level under the load: no room
        (4.95e6, -851e3, -851e3, 4.851e6),  # room under it (E-20's night under the day's maximum): 4.95 MW less 2 %
    ],
)
def test_a_charge_never_closes_the_interval_over_its_load_and_the_level_so_far(
    level_w: float | None, first_w: float, then_w: float, closes_w: float
) -> None:
    # A plan charging 1 MW on a steady 4 MW load, its cap at 5 MW (planned import at the cap: the
    # charge fills the room under the level less 2 %, demand.CHARGE_MARGIN). The level is the plan's
    # (DispatchPlan.billed_w: the higher of the peak billed and the site's own highest this month).
    # Where the plan does not say, the first cycle charges 900 kW (54 MJ) under the cap, and from the
    # next one on the interval may close above what is billed (nothing), so the battery gives it back
    # over the 840 s left: 64.29 kW, and the interval closes at the load's own 4 MW. Before 13p it
    # charged 900 kW to the end and billed 4.9 MW, 900 kW over the site without the battery.
    t0 = T0.timestamp()
    p = schedule(-1e6, cap_w=5e6, load_w=4e6, start=t0)
    if level_w is not None:
        p = replace(p, billed_w=np.full(4, level_w))
    st = initial_state(CFG)
    battery, setpoints = 0.0, []
    for k in range(0, 901, 60):
        clusters, pcs = fleet(soc=50.0)
        s = snap(4e6, battery=battery, t_mono=1000.0 + k, t_wall=T0 + timedelta(seconds=k), clusters=clusters, pcs=pcs)
        plan, st = decide(s, st, CFG, OP, SHANGHAI, False, schedule=p)
        battery = plan.site_setpoint_w
        setpoints.append(battery)
    assert setpoints[0] == pytest.approx(first_w)
    assert setpoints[1:15] == pytest.approx([then_w] * 14, rel=1e-6)
    assert st.month_peak(SHANGHAI.rate) == pytest.approx(closes_w)  # never over the load's own and the level


def minutes(p: DispatchPlan, loads_mw: list[float], soc: float = 50.0) -> tuple[list[float], ControllerState]:
    """The plan's first interval decided once a minute from its start, each cycle reading the next of
    `loads_mw` with the battery where the last one set it (the fleet at `soc`): (setpoints W, state)."""
    st = initial_state(CFG)
    battery, setpoints = 0.0, []
    for i, k in enumerate(range(0, 901, 60)):
        clusters, pcs = fleet(soc=soc)
        s = snap(
            loads_mw[i] * 1e6,
            battery=battery,
            t_mono=1000.0 + k,
            t_wall=T0 + timedelta(seconds=k),
            clusters=clusters,
            pcs=pcs,
        )
        plan, st = decide(s, st, CFG, OP, SHANGHAI, False, schedule=p)
        battery = plan.site_setpoint_w
        setpoints.append(battery)
    return setpoints, st


# train200 / Shanghai, day 12, 16:00-16:15 (60 s replay, MW): a restart's dip in the 7th-9th minutes
RESTART_MW = [5.4, 5.5, 5.8, 5.8, 5.8, 5.65, 3.97, 2.96, 2.98, 5.77, 5.83, 5.45, 5.43, 5.5, 5.34, 5.49]


def test_a_charge_taken_in_a_dip_is_given_back_when_the_load_comes_back_up() -> None:
    # The level 5.19 MW (the site's own highest so far), the plan's cap 5.73 MW, a plan charging up
    # to it. In the restart's dip the tracker charges (186 kW for the minute at 2.98 MW); from the
    # load's return the rest of the interval counts at least at the load now (5.77 MW), the interval
    # would close over the level, and the charge is given back at once (31 kW for two minutes); the
    # interval closes at 5.154 MW, under the level. On the rest's forecast alone (the average so far,
    # with the dip in it) the charge was held until two minutes before the end and the interval
    # closed at 5.2 MW, over the level. (Before the book counted each minute at the load read at its
    # start, as the meter does (begin.metered_w), it booked the dip a minute early and charged 320
    # and 762 kW in it, then gave back 149 kW: the interval closed at 5.184 MW.)
    t0 = T0.timestamp()
    p = replace(schedule(-1e6, cap_w=5.73e6, load_w=4e6, start=t0), billed_w=np.full(4, 5.19e6))
    setpoints, st = minutes(p, RESTART_MW)
    assert setpoints[8] == pytest.approx(-185.7e3, abs=100.0)  # it did charge in the dip
    assert setpoints[9:11] == pytest.approx([30.9e3] * 2, abs=100.0)  # and gave it back when the load came back
    assert st.month_peak(SHANGHAI.rate) == pytest.approx(5.1536e6, abs=100.0)  # under the level


# train200 / PG&E E-20, day 1, 18:45-19:00 (MW, one reading a minute): a job restart's dip in minutes 4-6
FLOOR_RESTART_MW = [5.2, 5.4, 5.5, 5.8, 3.1, 2.9, 3.9, 5.2, 5.2, 5.7, 5.7, 5.6, 5.2, 5.4, 5.5, 5.5]


@pytest.mark.parametrize(
    ("soc", "dip_kw", "closes_w"),
    [
        # at the SoC floor the battery cannot discharge, so it cannot give a charge back: it takes
        # none in the dip (the plan's own forecast, 5 MW, leaves no room under 5.05 MW less 2 %), and
        # the interval closes at its own load's average, 5.02 MW. Before, it charged 369, 850 and
        # 800 kW there and closed over its own load, the level and the site without the battery.
        (20.0, [0.0, 0.0, 0.0], 5.02e6),
        # above the floor it charges in the dip and gives it back when the load returns: under the level
        (50.0, [0.0, -370.3, -671.9], 5_028_040.6),
    ],
)
def test_at_the_floor_no_charge_is_taken_that_could_not_be_given_back(
    soc: float, dip_kw: list[float], closes_w: float
) -> None:
    # A plan charging 100 kW on a 5 MW forecast up to its 5.1 MW cap (the charge fills the room), the
    # level so far 5.05 MW (DispatchPlan.billed_w).
    t0 = T0.timestamp()
    p = replace(schedule(-100e3, cap_w=5.1e6, load_w=5e6, start=t0), billed_w=np.full(4, 5.05e6))
    setpoints, st = minutes(p, FLOOR_RESTART_MW, soc)
    assert [x / 1e3 for x in setpoints[4:7]] == pytest.approx(dip_kw, abs=0.1)
    assert st.month_peak(SHANGHAI.rate) == pytest.approx(closes_w)


def test_a_discharge_bound_of_rounding_at_the_floor_is_no_power_to_give_a_charge_back() -> None:
    # The floor test's interval (a plan charging up to its cap, the level 5.05 MW) up to the dip's
    # first minute, the fleet at its floor; then the tracker's bound on a window that allows no
    # discharge, and on one the edges' ramp-out leaves at 4.9e-7 W (train200 / Shanghai's 30th,
    # 14:50, with the demo's ramp limit). The same: no charge beyond what the plan's own forecast
    # leaves room for. Before, a bound above 0 W by rounding counted as power to give a charge back and
    # the floor's rule did not apply: 273.5 kW of charge in the dip's second minute here; in the
    # planner's 30-day month 29, 353 and 46 kW on the 30th, and the interval closed at 5,198.1 kW,
    # over its own load and the month without the battery (+2.1 kW).
    t0 = T0.timestamp()
    p = replace(schedule(-100e3, cap_w=5.1e6, load_w=5e6, start=t0), billed_w=np.full(4, 5.05e6))
    st = initial_state(CFG)
    battery = 0.0
    for i, k in enumerate(range(0, 361, 60)):
        clusters, pcs = fleet(soc=20.0)
        s = snap(
            FLOOR_RESTART_MW[i] * 1e6, battery=battery, t_mono=1000.0 + k, t_wall=T0 + timedelta(seconds=k),
            clusters=clusters, pcs=pcs,
        )  # fmt: skip
        if k >= 240:  # the dip's minutes
            c = begin_cycle(s, st, CFG, OP, SHANGHAI, False, None, frozenset(), schedule=p)
            lows = [track(Window(-2.508e6, hi, "reserve", "reserve", ()), c).lo for hi in (0.0, 4.9e-7)]
            assert min(lows) >= 0.0, (k, lows)  # no charge on either (before, on the second: 273.5 kW at 300 s)
        plan, st = decide(s, st, CFG, OP, SHANGHAI, False, schedule=p)
        battery = plan.site_setpoint_w
