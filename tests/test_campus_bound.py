"""The campus's demand decisions, decided once for the campus (issue 16 fourth pass): its demand bound
split into each feeder's part (agent/campus/bound.py), its recharge for demand
(agent/campus/recharge.py), both on the wire (agent/campus/messages.py) and in the agent
(ControlConfig.campus: agent.control.demand / tou). Hand-computed."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from agent.campus.allocate import NOT_SENT, UNDECIDED, CampusLimits, FeederState, Share, allocate, to_send
from agent.campus.bound import campus_bound_w, campus_need_w, split_bound
from agent.campus.keep import new_day
from agent.campus.messages import MessageError, decode, parse_report, parse_share, signed_report, signed_share
from agent.campus.recharge import campus_recharge
from agent.control import decide, initial_state
from agent.control.campus_share import demand_forecast_w, report_forecast_w, with_share
from agent.control.demand import CHARGE_MARGIN, MARGIN
from agent.control.state import ControllerState, IntervalState
from agent.economics.tariff import bundled
from agent.model.config import CampusPart
from agent.model.interval import local_slot
from agent.model.operator import OperatorState
from tests.test_control_support import CFG, SHANGHAI, TZ, snap

KEY = b"unit-test-campus-key-0123456789"
L = 900.0


def feeder(
    site: str, net: float, fc: float, wh: float, dis: float = 1e6, energy: float = 1e6, **kw: Any
) -> FeederState:
    return FeederState(site, net, net, dis, dis, energy, interval_wh=wh, forecast_w=fc, **kw)


def test_the_bound_is_the_campus_s_own_not_the_sum_of_the_feeders() -> None:
    """Two feeders swinging against each other: a read at 1.4 MW, b at 0.6 MW, each forecasting its
    1.0 MW average; 600 s into the interval at exactly 1.0 MW each (166.7 kWh each). Target
    2.02 MW: the campus's aim is 2.02 x 0.99 = 1.9998 MW; its rest forecast 2.0 MW is 0.2 kW over the
    rate its energy left allows (1.9998 + (1.9998 x 600 - 2 x 600) / 300 = 1.9994 MW): 0.6 kW to
    discharge, split by energy, 0.3 kW each. Split on the feeders' own shares, a (forecast 1.0 MW
    against a reading-based share) and b would have been asked for +-0.4 MW."""
    wh = 1e6 * 600.0 / 3600.0
    fs = [feeder("a", 1.4e6, 1.0e6, wh), feeder("b", 0.6e6, 1.0e6, wh)]
    aim = 2.02e6 * (1 - MARGIN)
    rate = aim + (aim * 600.0 - 2e6 * 600.0) / 300.0
    assert campus_bound_w(2.02e6, fs, 300.0, L) == pytest.approx(2e6 - rate)
    assert split_bound(2e6 - rate, fs) == pytest.approx([(2e6 - rate) / 2] * 2)


def test_under_the_target_the_bound_is_charge_room_split_by_charge_power() -> None:
    """Campus at 2.0 MW (forecast and reading) with a 3.0 MW target, nothing imported yet (interval
    start): charging may take the campus to 3.0 x 0.99 x 0.98 = 2.9106 MW, a room of 0.9106 MW, split
    3:1 by charge power."""
    fs = [feeder("a", 1.0e6, 1.0e6, 0.0, dis=3e6), feeder("b", 1.0e6, 1.0e6, 0.0, dis=1e6)]
    room = 3.0e6 * (1 - MARGIN) * (1 - CHARGE_MARGIN) - 2.0e6
    assert campus_bound_w(3.0e6, fs, L, L) == pytest.approx(-room)
    assert split_bound(-room, fs) == pytest.approx([-0.75 * room, -0.25 * room])
    # a reading above the forecast (a swing up now) narrows the room as the pooled controller's does
    up = [feeder("a", 1.5e6, 1.0e6, 0.0), feeder("b", 1.0e6, 1.0e6, 0.0)]
    assert campus_bound_w(3.0e6, up, L, L) == pytest.approx(-(room - 0.5e6))
    # one under it is counted at the forecast, as the pooled controller counts it (a dip's room is
    # not charged: the load comes back within the interval); each agent answers its own step since at
    # once. (16f counted it as far above the forecast: 0.4 MW less room here; on the 8-feeder PG&E
    # month the campus charged 20 % less than the pooled controller over the first 36 hours.)
    down = [feeder("a", 0.6e6, 1.0e6, 0.0), feeder("b", 1.0e6, 1.0e6, 0.0)]
    assert campus_bound_w(3.0e6, down, L, L) == pytest.approx(-room)
    # nothing to split where no battery can take or give it
    assert split_bound(-room, [feeder("a", 1e6, 1e6, 0.0, dis=0.0)]) == [0.0]
    assert split_bound(0.0, fs) == [0.0, 0.0]


def test_the_share_carries_the_part_and_the_agent_discharges_exactly_it() -> None:
    wh = 1e6 * 600.0 / 3600.0
    fs = [feeder("a", 1.4e6, 1.2e6, wh), feeder("b", 0.6e6, 1.0e6, wh)]
    shares = to_send([allocate(CampusLimits(demand_target_w=2.0e6), fs, interval_left_s=300.0, interval_s=L)])
    bound = campus_bound_w(2.0e6, fs, 300.0, L)
    assert bound > 0.0 and sum(s.demand_w for s in shares.values()) == pytest.approx(bound)
    _, got = parse_share(decode(signed_share(KEY, "a", shares["a"], 1, 1.79e9)), "a")
    assert got.demand_w == pytest.approx(shares["a"].demand_w, abs=1e-3)
    # an agent at 12:30 on Shanghai's flat price (time-of-use holds), told to discharge 123 kW:
    # it does, whatever its own share's level says
    part = Share(0.0, 0.0, 5e6, NOT_SENT, UNDECIDED, 123e3)
    st = initial_state(CFG, profile=[1.0e6] * 96)
    t0 = datetime(2026, 7, 15, 12, 30, tzinfo=TZ)
    plan, st = decide(
        snap(1.0e6, t_mono=1000.0, t_wall=t0), st, with_share(CFG, part), OperatorState(), SHANGHAI, False
    )
    plan, st = decide(
        snap(1.0e6, t_mono=1060.0, t_wall=t0 + timedelta(seconds=60)),
        st,
        with_share(CFG, part),
        OperatorState(),
        SHANGHAI,
        False,
    )
    assert plan.site_setpoint_w == pytest.approx(123e3)
    # in the valley (00:30, time-of-use charging toward the ceiling), told it may charge 50 kW: it
    # charges exactly that, though its own 5 MW share would leave it 4 MW of room
    part = Share(0.0, 0.0, 5e6, NOT_SENT, UNDECIDED, -50e3)
    st = initial_state(CFG, profile=[1.0e6] * 96)
    t0 = datetime(2026, 7, 15, 0, 30, tzinfo=TZ)
    cfg = with_share(CFG, part)
    plan, st = decide(snap(1.0e6, t_mono=1000.0, t_wall=t0), st, cfg, OperatorState(), SHANGHAI, False)
    plan, st = decide(
        snap(1.0e6, t_mono=1060.0, t_wall=t0 + timedelta(seconds=60)), st, cfg, OperatorState(), SHANGHAI, False
    )
    assert plan.site_setpoint_w == pytest.approx(-50e3)
    # the same part made on a reading of 0.95 MW: the feeder's own load rose 50 kW since, it charges
    # nothing; made on 1.02 MW (fell 20 kW since), 70 kW
    for at, want in ((0.95e6, 0.0), (1.02e6, -70e3)):
        cfg = with_share(CFG, replace(part, at_net_w=at))
        st = initial_state(CFG, profile=[1.0e6] * 96)
        plan, st = decide(snap(1.0e6, t_mono=1000.0, t_wall=t0), st, cfg, OperatorState(), SHANGHAI, False)
        plan, st = decide(
            snap(1.0e6, t_mono=1060.0, t_wall=t0 + timedelta(seconds=60)), st, cfg, OperatorState(), SHANGHAI, False
        )
        assert plan.site_setpoint_w == pytest.approx(want)
    # the coordinator sends the reading each part was made on, and it survives the wire
    sent = to_send([allocate(CampusLimits(demand_target_w=2.0e6), fs, interval_left_s=300.0, interval_s=L)])
    assert [s.at_net_w for s in sent.values()] == [1.4e6, 0.6e6]
    _, got = parse_share(decode(signed_share(KEY, "a", sent["a"], 1, 1.79e9)), "a")
    assert got.at_net_w == 1.4e6 and with_share(CFG, got).campus == CampusPart(
        -1.0, UNDECIDED, got.demand_w, 1.4e6, 0.0
    )
    # without a part (an older coordinator), none is read, and the agent bounds itself
    msg = decode(signed_share(KEY, "a", Share(1e6, 1.0, 2e6), 1, 1.79e9))
    assert "demand_w" not in msg and math.isnan(parse_share(msg, "a")[1].demand_w)
    assert with_share(CFG, parse_share(msg, "a")[1]).campus == CampusPart()


def test_the_campus_recharges_for_its_own_envelope_not_its_feeders() -> None:
    """PG&E, a weekday at 02:00 (off-peak, the cheapest price until the afternoon): the campus's day
    profile 180 MW all day but 190 MW over 14:00-15:00. Against a 186 MW target it recharges now;
    against 195 MW (above every slot) it does not; without prices, or with less than half a day of
    profile, it does not decide (each agent keeps its own rule)."""
    pge = bundled("pge_e20_secondary_2014")
    prof = [180e6] * 96
    for s in range(56, 60):
        prof[s] = 190e6
    day = new_day(L, prof)
    t = datetime(2026, 7, 1, 2, 0, tzinfo=pge.timezone)
    assert campus_recharge(day, t, L, 186e6, pge) == 1
    assert campus_recharge(day, t, L, 195e6, pge) == 0
    assert campus_recharge(day, t, L, 186e6, None) == UNDECIDED
    assert campus_recharge(new_day(L), t, L, 186e6, pge) == UNDECIDED
    # in the afternoon, inside the stretch that needs it, the campus shaves, it does not recharge
    assert campus_recharge(day, t.replace(hour=14, minute=15), L, 186e6, pge) == 0
    # on the wire, and in the agent's config
    sh = Share(0.0, 0.0, 3e6, NOT_SENT, 1)
    _, got = parse_share(decode(signed_share(KEY, "a", sh, 1, 1.79e9)), "a")
    assert got.recharge == 1 and with_share(CFG, got).campus == CampusPart(recharge=1)


def test_no_bound_is_sent_unless_every_feeder_reported_its_forecast() -> None:
    """A feeder without a demand forecast (a loop that does not report one): no bound for anyone, each
    agent bounds itself against its share (a bound on the readings would chase the GPU swings).
    The forecast and raise go on the wire in the report."""
    wh = 1e6 * 600.0 / 3600.0
    fs = [feeder("a", 1.4e6, 1.2e6, wh), feeder("b", 0.6e6, math.nan, wh)]
    shares = allocate(CampusLimits(demand_target_w=2.0e6), fs, interval_left_s=300.0, interval_s=L)
    assert all(math.isnan(s.demand_w) for s in shares.values())
    got = parse_report(decode(signed_report(KEY, replace(fs[0], raise_w=5e5), 1.79e9)), "a")
    assert (got.forecast_w, got.raise_w) == (1.2e6, 5e5)
    got = parse_report(decode(signed_report(KEY, fs[1], 1.79e9)), "b")
    assert math.isnan(got.forecast_w) and got.raise_w == 0.0


def test_the_forecast_reported_for_an_interval_s_first_cycle_takes_the_closing_one_as_its_prior() -> None:
    """A feeder read 1.2 MW on average over 14 minutes of 10:00-10:15 and reads 2.0 MW now at 10:14:
    at 10:15 its demand controller will forecast (2.0 x 60 + 1.2 x 240) / 300 = 1.36 MW (the reading for
    the cycle it stands for, the closed interval for the rest of FORECAST_PRIOR_S:
    demand.interval_net_forecast_w), and that is what it reports. 16f reported the reading, 2.0 MW:
    the campus's first cycle of every interval was bounded on one reading of a swinging load."""
    t = datetime(2026, 7, 15, 10, 14, tzinfo=TZ)
    key, slot, _, _ = local_slot(t, L)
    iv = IntervalState(key=key, net_ws=1.2e6 * 840.0, covered_s=840.0, profile=(1.0e6,) * 96)
    st = ControllerState(interval=iv)
    nxt = t + timedelta(seconds=60)
    assert report_forecast_w(st, 2.0e6, nxt, 60.0, L) == pytest.approx(1.36e6)
    # in the running interval, as before: 300 s seen at 1.2 MW, the next cycle 360 s in, the last
    # interval (1.0 MW) for the rest of the prior: (1.2 x 300 + 2.0 x 60 + 1.0 x 240) / 600 = 1.2 MW
    early = IntervalState(key=key, net_ws=1.2e6 * 300.0, covered_s=300.0, profile=(1.0e6,) * 96)
    at = datetime(2026, 7, 15, 10, 5, tzinfo=TZ)
    assert report_forecast_w(ControllerState(interval=early), 2.0e6, at + timedelta(seconds=60), 60.0, L) == (
        pytest.approx(1.2e6)
    )
    assert demand_forecast_w(early, slot, 2.0e6, 60.0, 540.0) == pytest.approx(1.2e6)
    # an interval that is not the next one (a gap in the readings): nothing known, the reading
    assert report_forecast_w(st, 2.0e6, t + timedelta(minutes=20), 60.0, L) == 2.0e6


def test_a_discharge_part_follows_the_feeders_own_step_late_in_the_interval_as_the_pooled_bound_does() -> None:
    """A discharge part of 123 kW made on a reading of 0.95 MW; the feeder reads 1.0 MW now (50 kW up).
    At 12:30:00 (a minute into the interval, 840 s left: more than FORECAST_PRIOR_S after this cycle)
    the pooled controller's bound does not move with the reading: 123 kW. At 12:42 (180 s left, a
    reading 60 s old) its forecast of the rest weighs the reading 60 / 180: 123 + 50 / 3 = 139.7 kW.
    At 12:44 (the last cycle, 60 s left) the reading is the forecast: 173 kW. A step down past the
    part discharges nothing (it does not charge)."""
    for minute, at, want in (
        (30, 0.95e6, 123e3),
        (42, 0.95e6, 123e3 + 50e3 / 3.0),
        (44, 0.95e6, 173e3),
        (44, 1.2e6, 0.0),
    ):
        part = Share(0.0, 0.0, 5e6, NOT_SENT, UNDECIDED, 123e3, at)
        cfg = with_share(CFG, part)
        st = initial_state(CFG, profile=[1.0e6] * 96)
        t1 = datetime(2026, 7, 15, 12, minute, tzinfo=TZ)
        plan, st = decide(
            snap(1.0e6, t_mono=1000.0, t_wall=t1 - timedelta(seconds=60)), st, cfg, OperatorState(), SHANGHAI, False
        )
        plan, st = decide(snap(1.0e6, t_mono=1060.0, t_wall=t1), st, cfg, OperatorState(), SHANGHAI, False)
        assert plan.site_setpoint_w == pytest.approx(want), minute


def _second_cycle_w(part: Share, minute: int, net_w: float = 1.0e6) -> float:
    """The setpoint an agent on `part` decides at 12:`minute` (Shanghai's flat price: time-of-use holds),
    its cycle before a minute earlier, its load `net_w` at both."""
    cfg = with_share(CFG, part)
    st = initial_state(CFG, profile=[1.0e6] * 96)
    t1 = datetime(2026, 7, 15, 12, minute, tzinfo=TZ)
    plan, st = decide(
        snap(net_w, t_mono=1000.0, t_wall=t1 - timedelta(seconds=60)), st, cfg, OperatorState(), SHANGHAI, False
    )
    plan, st = decide(snap(net_w, t_mono=1060.0, t_wall=t1), st, cfg, OperatorState(), SHANGHAI, False)
    return plan.site_setpoint_w


def test_a_feeder_whose_part_is_not_a_discharge_discharges_its_own_step_past_the_campus_room() -> None:
    """The campus was 100 kW under needing a discharge (room 100 kW) when the parts were made; this
    feeder's part was a charge of 50 kW (or 0), made on its reading then. At 12:42 (180 s left, the
    reading 60 s old) the pooled controller's forecast of the rest weighs a reading 1/3: a step up of
    600 kW of this feeder alone takes the campus 200 kW further, 100 kW past its room, and this
    feeder discharges those 100 kW at once (before: 0, a cycle late). A step of 300 kW (100 kW
    weighed: not past the room) stops its charge; a fall of 20 kW widens it (70 kW). At 12:30 the
    pooled bound does not move with the reading (more than FORECAST_PRIOR_S left): nothing. From an
    older coordinator (no room sent): as before, 0."""
    nan = math.nan
    for part_w, at, room, minute, want in (
        (-50e3, 0.4e6, 100e3, 42, 100e3),
        (0.0, 0.4e6, 100e3, 42, 100e3),
        (-50e3, 0.7e6, 100e3, 42, 0.0),
        (-50e3, 1.02e6, 100e3, 42, -70e3),
        (-50e3, 0.4e6, 100e3, 30, 0.0),
        (-50e3, 0.4e6, nan, 42, 0.0),
    ):
        part = Share(0.0, 0.0, 5e6, NOT_SENT, UNDECIDED, part_w, at, room)
        assert _second_cycle_w(part, minute) == pytest.approx(want), (part_w, at, room, minute)


def test_the_coordinator_sends_the_campus_room_with_the_parts_and_it_survives_the_wire() -> None:
    """Campus at 2.0 MW (forecasts and readings) under a 3.0 MW target at the interval's start: it
    needs no discharge until its rest forecast reaches the aim, 3.0 x 0.99 = 2.97 MW: a room of
    0.97 MW, the same for every feeder (each feeder's step alone is weighed against the whole)."""
    fs = [feeder("a", 1.0e6, 1.0e6, 0.0), feeder("b", 1.0e6, 1.0e6, 0.0)]
    sent = to_send([allocate(CampusLimits(demand_target_w=3.0e6), fs, interval_left_s=L, interval_s=L)])
    want = 3.0e6 * (1 - MARGIN) - 2.0e6
    assert [s.room_w for s in sent.values()] == pytest.approx([want, want])
    assert campus_need_w(3.0e6, fs, L, L) == pytest.approx(-want)
    _, got = parse_share(decode(signed_share(KEY, "a", sent["a"], 1, 1.79e9)), "a")
    assert got.room_w == pytest.approx(want, abs=1e-3)
    assert with_share(CFG, got).campus == CampusPart(-1.0, UNDECIDED, got.demand_w, 1.0e6, got.room_w)
    # over the target (a discharge): no room
    hot = [feeder("a", 1.6e6, 1.6e6, 0.0), feeder("b", 1.6e6, 1.6e6, 0.0)]
    assert campus_need_w(3.0e6, hot, L, L) == pytest.approx(3.2e6 - 2.97e6)
    assert [s.room_w for s in to_send([allocate(CampusLimits(demand_target_w=3.0e6), hot)]).values()] == [0.0, 0.0]
    # a negative room on the wire is refused, naming the field
    msg = decode(signed_share(KEY, "a", replace(sent["a"], room_w=-1.0), 1, 1.79e9))
    with pytest.raises(MessageError, match="'room_w'"):
        parse_share(msg, "a")


def test_two_feeders_discharge_at_most_what_the_campus_needs_and_one_stepping_alone_exactly_it() -> None:
    """Two agents (real decide cycles at 12:42, the reading weighed 1/3), parts -50 kW each (a charge)
    made on readings of 1.0 MW, the campus 100 kW under needing a discharge; the campus's discharge
    now, as one controller's bound moves with the summed reading: (steps summed / 3 - 100 kW)+.

    | a's step | b's step | a | b | sum | campus needs |
    | +600 kW  | 0        | 100 | 0 (its charge part) | 100 | 100 (exact, at once; before: 0) |
    | +600     | +600     | 100 | 100 | 200 | 300 (less: the rest a cycle late, as before) |
    | +600     | -600     | 100 | -650 (charges its fall) | discharged 100 | 0 (100: what a alone needs) |
    | +300     | +300     | 0   | 0   | 0   | 100 (a cycle late, as before) |"""
    part = Share(0.0, 0.0, 5e6, NOT_SENT, UNDECIDED, -50e3, 1.0e6, 100e3)
    for a_net, b_net, want_a, want_b, campus in (
        (1.6e6, 1.0e6, 100e3, -50e3, 100e3),
        (1.6e6, 1.6e6, 100e3, 100e3, 300e3),
        (1.6e6, 0.4e6, 100e3, -650e3, 0.0),
        (1.3e6, 1.3e6, 0.0, 0.0, 100e3),
    ):
        assert max(0.0, (a_net + b_net - 2.0e6) / 3.0 - 100e3) == pytest.approx(campus)
        got = (_second_cycle_w(part, 42, a_net), _second_cycle_w(part, 42, b_net))
        assert got == pytest.approx((want_a, want_b)), (a_net, b_net)
        discharged = sum(max(0.0, x) for x in got)
        assert discharged <= max(campus, max(0.0, (max(a_net, b_net) - 1.0e6) / 3.0 - 100e3)) + 1e-6


def test_the_last_cycle_s_part_asks_the_whole_excess_of_the_one_cycle_that_can_still_answer() -> None:
    """Two feeders at 1.0 MW each (read and forecast) under a 2.0 MW target (aim 1.98 MW), their
    counts 780 s into the interval at 1.0 MW each: the campus is 20 kW over its aim. The shares apply
    at the agents' next cycle, 60 s later, and the cycle in flight was commanded on the shares before:
    with no battery in flight it imports 2.0 MW, and the last 60 s must take the whole interval's
    excess, 900 x 0.02 / 60 = 0.30 MW (before: spread over the 120 s as if the parts applied at once,
    0.15 MW, and the interval's book ended over the level). With the in-flight cycle discharging
    0.15 MW already, the last cycle needs 0.15 MW more: (1800 - 9 - 1782) / 60 = 0.15 MW."""
    wh = 1e6 * 780.0 / 3600.0
    lim = CampusLimits(demand_target_w=2.0e6)

    def parts(battery_w: float, in_flight_s: float = 60.0) -> list[float]:
        fs = [feeder(s, 1.0e6, 1.0e6, wh, battery_w=battery_w) for s in ("a", "b")]
        sent = allocate(lim, fs, interval_left_s=120.0, interval_s=L, in_flight_s=in_flight_s)
        return [s.demand_w for s in sent.values()]

    assert parts(0.0) == pytest.approx([0.15e6, 0.15e6])
    assert parts(0.075e6) == pytest.approx([0.075e6, 0.075e6])
    # not reported (an agent before this change), or the cycle in flight ends the interval: as before
    assert parts(math.nan) == pytest.approx([0.075e6, 0.075e6])
    assert parts(0.0, in_flight_s=0.0) == pytest.approx([0.075e6, 0.075e6])
    # the battery power survives the wire; absent it reads as not reported
    f = feeder("a", 1.0e6, 1.0e6, wh, battery_w=-250.5)
    assert parse_report(decode(signed_report(KEY, f, 1.79e9)), "a").battery_w == pytest.approx(-250.5)
    assert math.isnan(parse_report(decode(signed_report(KEY, replace(f, battery_w=math.nan), 1.79e9)), "a").battery_w)
