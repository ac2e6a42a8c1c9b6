"""The campus's keep for its demand target (agent/campus/keep.py): the coordinator's own day profile
of the campus net load, the energy the rest of the day needs above the aim under the target, split by energy."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agent.campus.allocate import NOT_SENT, CampusLimits, FeederState, Share, allocate, to_send
from agent.campus.keep import CampusDay, campus_keep_wh, new_day, observe, step
from agent.campus.levels import pool
from agent.campus.messages import decode, parse_share, signed_share
from agent.control.campus_share import with_share
from agent.control.envelope import remember
from agent.model.config import CampusPart, ControlConfig
from tests.test_control_support import SHANGHAI

TZ = ZoneInfo("Asia/Shanghai")
L = 900.0
MIDNIGHT = datetime(2026, 7, 15, tzinfo=TZ)
KEY = b"unit-test-campus-key-0123456789"


def feeder(site: str, net: float, wh: float, fresh: bool = True) -> FeederState:
    return FeederState(site, net, net, 1e6, 1e6, wh, fresh=fresh)


def test_an_interval_sets_its_slot_when_the_next_begins_with_half_of_it_seen() -> None:
    day = new_day(L)
    assert len(day.profile) == 96 and all(math.isnan(v) for v in day.profile)
    t = MIDNIGHT + timedelta(hours=10)  # slot 40
    for k in range(15):  # 10:00-10:15, one reading a minute: 2 MW for 10 min, 5 MW for 5
        day = observe(day, t + timedelta(minutes=k), 2e6 if k < 10 else 5e6, 60.0, L)
    assert math.isnan(day.profile[40])  # still running
    day = observe(day, t + timedelta(minutes=15), 1e6, 60.0, L)
    assert day.profile[40] == pytest.approx(3e6)  # (10 x 2 + 5 x 5) / 15 MW
    for k in range(16, 22):  # 10:15-10:22 seen (6 min of 15, under half), then a gap
        day = observe(day, t + timedelta(minutes=k), math.nan if k > 18 else 4e6, 60.0, L)
    day = observe(day, t + timedelta(minutes=30), 1e6, 60.0, L)
    assert math.isnan(day.profile[41])  # 4 min seen of 15: not a slot value


def test_the_keep_is_the_rest_of_the_day_above_the_aim_and_waits_for_half_a_day() -> None:
    """At the aim 1 % under the target, as a site's time-of-use discharge keeps (tou.shave_keep_wh):
    the 16f keep, at the target itself, was 750 kWh here and 0 for a load sitting at the target."""
    prof = [2e6] * 96
    prof[76:80] = [3.5e6, 4e6, 4e6, 3.5e6]  # 19:00-20:00 above a 3 MW target's 2.97 MW aim by 0.53, 1.03, ...
    day = new_day(L, prof)
    assert campus_keep_wh(day, 32, 3e6, L) == pytest.approx(3.12e6 * 0.25)  # 3.12 MW x 15 min
    assert campus_keep_wh(day, 78, 3e6, L) == pytest.approx(1.56e6 * 0.25)  # the last two slots
    assert campus_keep_wh(day, 80, 3e6, L) == 0.0
    at = new_day(L, [3e6] * 96)  # a campus at its target all day keeps the aim's 30 kW for each slot left
    assert campus_keep_wh(at, 92, 3e6, L) == pytest.approx(4 * 0.03e6 * 0.25)
    # on the envelope: yesterday's 4 MW at 19:00 counts though today's profile did not reach it
    past = remember((), MIDNIGHT.toordinal() * 96 - 20, 96, 4e6)  # yesterday's slot 76
    assert campus_keep_wh(CampusDay(tuple([2e6] * 96), past=past), 32, 3e6, L) == pytest.approx(1.03e6 * 0.25)
    half = new_day(L, [math.nan] * 49 + [2e6] * 47)  # 47 of 96 slots known: not half a day
    assert campus_keep_wh(half, 0, 3e6, L) == NOT_SENT
    assert campus_keep_wh(day, 0, 0.0, L) == NOT_SENT  # no campus target: nothing to keep for


def test_the_campus_keep_is_split_by_energy_and_reaches_the_agent_as_stored_energy() -> None:
    prof = [2e6] * 96
    prof[76] = 4e6  # one slot 1 MW above the target: 250 kWh
    day = new_day(L, prof)
    fs = [feeder("a", 1e6, 3e6), feeder("b", 1e6, 1e6)]
    day, keep = step(day, fs, MIDNIGHT + timedelta(hours=9), 60.0, L, 3e6)
    assert keep == pytest.approx(257.5e3)  # 1.03 MW over the aim
    shares = to_send([allocate(CampusLimits(demand_target_w=3e6), fs, keep_wh=keep)])
    assert shares["a"].keep_wh == pytest.approx(187.5e3 * 1.03) and shares["b"].keep_wh == pytest.approx(62.5e3 * 1.03)
    # on the wire and back, then in the agent's config as stored energy (through the discharge efficiency)
    _, got = parse_share(decode(signed_share(KEY, "a", shares["a"], 1, 1.79e9)), "a")
    assert got.keep_wh == pytest.approx(187.5e3 * 1.03, abs=1e-3)
    cfg = with_share(ControlConfig(discharge_efficiency=0.96), got)
    assert cfg.campus is not None and cfg.campus.keep_wh == pytest.approx(187.5e3 * 1.03 / 0.96, abs=1e-3)
    # a campus without a demand target, a feeder on its fallback, an old coordinator: the agent's own
    assert allocate(CampusLimits(import_limit_w=5e6), fs, keep_wh=keep)["a"].keep_wh == NOT_SENT
    assert with_share(ControlConfig(), Share(1e6, 0.0, 0.0)).campus is None
    assert with_share(ControlConfig(), Share(1e6, 0.0, 2e6)).campus == CampusPart(keep_wh=-1.0)  # none sent
    msg = decode(signed_share(KEY, "a", Share(1e6, 1.0, 2e6), 1, 1.79e9))
    del msg["keep_wh"]
    assert parse_share(msg, "a")[1].keep_wh == NOT_SENT


def test_a_missing_report_is_not_the_campus_s_load() -> None:
    day = new_day(L, [2e6] * 96)
    t = MIDNIGHT + timedelta(hours=9)
    fs = [feeder("a", 1e6, 1e6), feeder("b", 1e6, 1e6, fresh=False)]
    for k in range(15):
        day, _ = step(day, fs, t + timedelta(minutes=k), 60.0, L, 3e6)
    day, _ = step(day, fs, t + timedelta(minutes=15), 60.0, L, 3e6)
    assert day.profile[36] == 2e6  # nothing seen in 09:00-09:15 (b stale): the slot keeps its value


def test_the_keep_leaves_out_what_the_flat_hours_refill_before_the_evening() -> None:
    """As a site keeps (tou.shave_keep_wh with tou.recharge_wh): from the morning peak, the flat
    hours 11-18 charge for the evening peak (Shanghai), 0.94 MW under the 2.94 MW charge level x 15 min
    x the 0.9216 round trip each, more than the evening's 780 kWh; from 18:00 nothing refills first."""
    prof = [2e6] * 96
    prof[76:80] = [3.5e6, 4e6, 4e6, 3.5e6]
    week = CampusDay(tuple(prof), past=tuple(prof * 7))
    fs = [
        FeederState(f"f{i}", 2e6, 2e6, 1e6, 1e6, 1e6, budget_wh=1e6, round_trip=0.9216, wear_per_kwh=0.15)
        for i in range(4)
    ]
    at8, at18 = MIDNIGHT + timedelta(hours=8), MIDNIGHT + timedelta(hours=18)
    assert campus_keep_wh(week, 32, 3e6, L, (at8, SHANGHAI, pool(fs))) == 0.0
    assert campus_keep_wh(week, 72, 3e6, L, (at18, SHANGHAI, pool(fs))) == pytest.approx(3.12e6 * 0.25)
    # a feeder that reports no round trip (an older agent): nothing counted as refilled
    old = [*fs[:3], FeederState("f3", 2e6, 2e6, 1e6, 1e6, 1e6, budget_wh=1e6)]
    assert campus_keep_wh(week, 32, 3e6, L, (at8, SHANGHAI, pool(old))) == pytest.approx(3.12e6 * 0.25)
    # nor where a day of the week was not seen (the first week after a start)
    assert campus_keep_wh(new_day(L, prof), 32, 3e6, L, (at8, SHANGHAI, pool(fs))) == pytest.approx(3.12e6 * 0.25)
