"""LivePlanning cycle by cycle, as the control loop drives it (schedule -> decide() -> after), on
synthetic snapshots at wall times the test picks: what a closed interval hands the history (the
demand controller's own averages, exactly), the reasons of the changes of plan, one departure
re-plan per interval, and a history file that cannot be written."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agent.control import decide, initial_state
from agent.control.planner import ALARM
from agent.control.replan import R_DEPARTURE, R_EVERY, R_FAILED_KEPT, R_START
from agent.control.state import ControllerState
from agent.economics.tariff import load_tariff
from agent.live import planning
from agent.live.plan_config import parse_planner
from agent.live.plan_history import FILE_NAME
from agent.live.planning import LivePlanning
from agent.model.alarms import AlarmBook
from agent.model.operator import OperatorState
from agent.model.plan import Plan
from agent.model.snapshot import Measured
from agent.offline.replay import plan_battery
from tests.fakes import demo_site, snapshot_for
from tests.test_live_planning import DAYS, preload

LOAD_W = 3_000_000.0


class Drive:
    """The control loop's calls, one cycle a second of site time (wall time real or not)."""

    def __init__(self, tmp: Path, start: datetime) -> None:
        site = demo_site({"planner": {"enabled": True}})
        # without the demo's ramp bound: the snapshots hold the battery at 0 W, so a plan that charges
        # from the first interval would be clamped by the ramp every cycle and never decide itself
        self.site = replace(site, control=replace(site.control, ramp_limit_w_per_s=0.0, fast_lane_s=0.0))
        self.tariff = load_tariff(self.site.tariff_path)
        preload(tmp, start.timestamp(), self.tariff.timezone)
        self.alarms = AlarmBook()
        self.pl = LivePlanning(parse_planner(self.site), self.tariff, plan_battery(self.site), tmp, self.alarms)
        self.st: ControllerState = initial_state(self.site.control)
        self.t = start
        self.seq = 0

    def cycle(self, soc_pct: float = 60.0) -> Plan:
        self.seq += 1
        snap = snapshot_for(self.site, self.seq, float(self.seq), self.t, LOAD_W)
        if soc_pct != 60.0:
            snap = replace(snap, clusters=tuple(replace(c, soc_pct=Measured(soc_pct)) for c in snap.clusters))
        sched = self.pl.schedule(snap)
        before = self.st.interval
        plan, self.st = decide(snap, self.st, self.site.control, OperatorState(), self.tariff, False, schedule=sched)
        self.pl.after(snap, before, self.st.interval)
        self.t += timedelta(seconds=1)
        return plan

    def until_version(self, v: int, soc_pct: float = 60.0) -> Plan:
        """Cycles (in real time: the solve runs in the worker thread) until the plan's version is `v`."""
        deadline = time.monotonic() + 30.0
        while self.pl.version < v:
            assert time.monotonic() < deadline, f"no change of plan #{v}; reason {self.pl.reason!r}"
            time.sleep(0.02)
            plan = self.cycle(soc_pct)
        return plan


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[Drive]:
    tz = load_tariff(demo_site().tariff_path).timezone
    start = datetime(2026, 12, 2, 10, 10, tzinfo=tz)  # 10 min into the 10:00 interval, a weekday
    d = Drive(tmp_path, start)
    yield d
    d.pl.close()


def test_first_plan_departure_and_a_closed_interval(
    drive: Drive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planning, "FORECASTS_KEPT", 2)  # what a long-running agent keeps, made small
    pl = drive.pl
    assert pl.history_intervals == DAYS * 96 and pl.plan is None
    first = drive.cycle()  # the first cycle asks for a plan; decide() runs on the heuristic meanwhile
    assert first.decided_by not in ("plan", "plan_cap")
    plan = drive.until_version(1)
    assert pl.reason == R_START and pl.plan is not None
    plan = drive.cycle()
    assert plan.decided_by == "plan" or any(b.source == "plan_cap" for b in plan.bounds), plan.decided_by

    # the SoC 30 points above the plan: one re-plan for this interval, not one per cycle
    drive.until_version(2, soc_pct=90.0)
    assert pl.reason.startswith(f"{R_DEPARTURE}: SoC 90.0 % vs planned ")
    for _ in range(20):
        drive.cycle(soc_pct=90.0)
        time.sleep(0.01)
    assert pl.version == 2

    # the interval closes at 10:15: its averages are the demand controller's (load = grid = 3 MW
    # here), handed to the history file and the forecast; a plan is solved for the new interval
    n = pl.history_intervals
    while drive.t < datetime(2026, 12, 2, 10, 15, 1, tzinfo=drive.t.tzinfo):
        drive.cycle()
    drive.until_version(3)
    assert pl.reason == R_EVERY and pl.history_intervals == n + 1
    start = datetime(2026, 12, 2, 10, 0, tzinfo=drive.t.tzinfo).timestamp()
    last = (tmp_path / FILE_NAME).read_text().splitlines()[-1]
    assert last == f"{start:.0f},3000000.0,3000000.0"
    assert pl.replanner.hist_ts[-1] == start and pl.replanner.hist_net[-1] == LOAD_W
    assert [c[1] for c in pl.changes] == [R_START, pl.changes[1][1], R_EVERY]
    assert drive.alarms.active() == []
    # the forecasts kept are bounded (3 made, 2 kept) and scored against the interval that closed:
    # the departure's forecast had the three preloaded days' 10:00 (4.5 MW) for its first slot, the
    # site ran at 3 MW: 50 % off; the new interval's has no actual yet
    assert len(pl.replanner.stats.forecasts) == 2
    assert pl.accuracy["pairs"] == 1.0 and pl.accuracy["mape"] == pytest.approx(0.5, rel=1e-9)
    assert pl.accuracy["daily_peak_abs_error"] is None  # no whole day forecast and recorded yet
    assert pl.view()["forecast"] == pl.accuracy


def test_a_history_that_cannot_be_written_is_named_and_planning_goes_on(
    drive: Drive, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pl = drive.pl
    drive.until_version(1)
    path = tmp_path / FILE_NAME
    path.unlink()
    path.mkdir()  # the next append fails
    with caplog.at_level(logging.WARNING, logger="ems.planner"):
        while drive.t < datetime(2026, 12, 2, 10, 15, 1, tzinfo=drive.t.tzinfo):
            drive.cycle()
        drive.until_version(2)
    assert pl.reason == R_EVERY and pl.plan is not None  # planned from memory
    assert f"planner history {path}: cannot be written (Is a directory)" in caplog.text


def test_a_failed_solve_keeps_the_last_plan_with_the_alarm_until_one_succeeds(drive: Drive) -> None:
    pl = drive.pl
    drive.until_version(1)
    good = pl.plan
    assert good is not None
    # from now on no solve finishes in its time limit (HiGHS stops at 1 µs)
    settings = pl.replanner.settings
    pl.replanner.settings = replace(settings, time_limit_s=1e-6)
    drive.until_version(2, soc_pct=90.0)  # a departure asks for a re-plan, which fails
    assert pl.reason == R_FAILED_KEPT and pl.plan is good
    (alarm,) = drive.alarms.active()
    assert alarm.code == ALARM and alarm.source == "planner"
    assert alarm.message.startswith(f"{R_FAILED_KEPT} ({R_DEPARTURE}: SoC 90.0 % vs planned ")
    assert alarm.message.endswith("; 1 of 2 solves failed, time limit 1e-06 s)")
    plan = drive.cycle()  # the kept plan is still tracked
    assert plan.decided_by == "plan" or any(b.source == "plan_cap" for b in plan.bounds)
    # solves succeed again: the next interval's plan clears the alarm
    pl.replanner.settings = settings
    while drive.t < datetime(2026, 12, 2, 10, 15, 1, tzinfo=drive.t.tzinfo):
        drive.cycle()
    drive.until_version(3)
    assert pl.reason == R_EVERY and pl.plan is not good and drive.alarms.active() == []
    assert drive.alarms.history(1)[0].code == ALARM
