"""An agent under a campus demand share (agent/control/campus_share.py, ControlConfig.campus):
its own charge raise stays at or under its share, because the feeders' raises add up above the
campus's target where the pooled controller's does not; and it charges the credit in its share over
the time left, since that credit is the coordinator's split of the campus's energy left
(agent.control.demand; BENCHMARKS.md, issue 16 third pass)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from agent.campus.allocate import Share
from agent.control import decide, initial_state
from agent.control.campus_share import report_interval_wh, with_share
from agent.control.demand import CHARGE_MARGIN, MARGIN
from agent.control.state import ControllerState, IntervalState
from agent.model.interval import local_slot
from agent.model.operator import OperatorState
from tests.test_control_support import CFG, SHANGHAI, TZ, snap

T0 = datetime(2026, 7, 15, 0, 30, tzinfo=TZ)  # the valley: charging for the morning peak
LOAD = 2.45e6
SHARE = 2.5e6


def interval_import(campus: bool) -> tuple[float, float]:
    """00:30-00:45 at a flat 2.45 MW under a 2.5 MW campus share, the fleet at 50 % (2.3 MWh short of
    its ceiling, with only 25 kW of room under the share for the valley's 7.5 h left: charging here
    is worth a higher peak, so the agent plans a raise), the month's billed peak 4.4 MW. Returns the
    interval's average import and the raise planned."""
    st = initial_state(CFG, month_peaks={40.8: 4.4e6}, month=(2026, 7), profile=[LOAD] * 96)
    battery, grid_ws = 0.0, 0.0
    for k in range(-60, 901, 60):
        cfg = with_share(CFG, Share(0.0, 0.0, SHARE))
        cfg = cfg if campus else replace(cfg, campus=None)
        s = snap(LOAD, battery=battery, t_mono=1000.0 + k, t_wall=T0 + timedelta(seconds=k))
        plan, st = decide(s, st, cfg, OperatorState(), SHANGHAI, False)
        battery = plan.site_setpoint_w
        if 0 <= k < 900:
            grid_ws += (LOAD - battery) * 60.0
    return grid_ws / 900.0, st.tou.raise_w


def test_a_feeder_s_charge_raise_stays_under_its_campus_share() -> None:
    assert with_share(CFG, Share(0.0, 0.0, 3e6)).campus is not None  # a campus demand target in force
    assert with_share(replace(CFG, demand_target_w=2e6), Share(0.0, 0.0, 3e6)).campus is None  # the site's own
    assert with_share(CFG, Share(1e6, 0.0, 0.0)).campus is None  # no campus demand target
    held, raised = interval_import(True)
    alone, raised_alone = interval_import(False)
    assert raised == raised_alone > 0.0  # the raise is planned either way (it still lifts the charge margin)
    # before: up to the month's 4.4 MW billed peak less 2 % (demand.raise_cap_w), far above the share
    assert alone > SHARE * 1.05
    # now: charged up to the share's aim (1 % under it, no 2 % charge margin since a raise is planned)
    assert held == pytest.approx(SHARE * (1 - MARGIN), rel=2e-3)


def charge_at_600_s(campus: bool) -> tuple[float, float]:
    """12:30-12:40 (the flat price: charging for the evening peak) at a flat 2.1 MW on a 2.5 MW
    share, the agent charging under it; at 600 s the coordinator raises the share to 3 MW. Returns
    (the charge the agent asks for then, its interval import so far in W s)."""
    st = initial_state(CFG, month_peaks={40.8: 4.4e6}, month=(2026, 7), profile=[2.1e6] * 96)
    battery = 0.0
    t0 = datetime(2026, 7, 15, 12, 30, tzinfo=TZ)
    for k in range(-60, 601, 60):
        cfg = with_share(CFG, Share(0.0, 0.0, 2.5e6 if k < 600 else 3.0e6))
        cfg = cfg if campus else replace(cfg, campus=None)
        s = snap(2.1e6, battery=battery, t_mono=1000.0 + k, t_wall=t0 + timedelta(seconds=k))
        plan, st = decide(s, st, cfg, OperatorState(), SHANGHAI, False)
        battery = plan.site_setpoint_w
    return -battery, st.interval.grid_ws


def test_a_share_s_credit_is_charged_over_the_time_left() -> None:
    """The coordinator's level for a feeder is its import so far plus its part of the campus's rate
    over the time left (agent.campus.allocate.split_demand): a level that rose is what the
    coordinator gives it now, so it is spent over the time left, where a site alone spreads a credit
    of its own over at least half an interval (and here would charge 1.457 MW instead of 1.781)."""
    split, grid_ws = charge_at_600_s(True)
    alone, grid_ws_alone = charge_at_600_s(False)
    aim_before = 2.5e6 * (1 - MARGIN) * (1 - CHARGE_MARGIN)
    assert grid_ws == grid_ws_alone == pytest.approx(aim_before * 600.0)
    aim = 3.0e6 * (1 - MARGIN) * (1 - CHARGE_MARGIN)
    credit = aim * 600.0 - grid_ws  # the share's rise: 291 MW s
    assert split == pytest.approx(aim + credit / 300.0 - 2.1e6, rel=1e-6)  # over the 300 s left: 1.781 MW
    assert alone == pytest.approx(aim + credit / 450.0 - 2.1e6, rel=1e-6)  # over half the interval: 1.457 MW


def test_the_report_counts_an_interval_the_agent_joined_late_at_its_import_now() -> None:
    # An agent started 600 s into a 900 s interval has counted 300 s of it (at 1 MW). The coordinator
    # counts the whole elapsed interval as the reports: the 300 s it did not see read as nothing
    # imported, and a campus whose agents all started mid-interval was sent charge room while its
    # meter ran 0.5 MW over the target (the live demand test). They are reported at the import now
    # (2 MW: what the feeder drew with no agent running it).
    t = datetime(2026, 7, 15, 12, 10, 0, tzinfo=TZ)  # 600 s into 12:00-12:15
    key = local_slot(t, 900.0)[0]
    late = ControllerState(interval=IntervalState(key=key, grid_ws=300.0 * 1e6, covered_s=300.0))
    assert report_interval_wh(late, t, 900.0, 2e6) == pytest.approx((300.0 * 1e6 + 300.0 * 2e6) / 3600.0)
    # counted from the interval's start: what it counted, nothing added
    whole = ControllerState(interval=IntervalState(key=key, grid_ws=600.0 * 1e6, covered_s=600.0))
    assert report_interval_wh(whole, t, 900.0, 2e6) == pytest.approx(600.0 * 1e6 / 3600.0)
    # no good reading now, or exporting: only what it counted
    assert report_interval_wh(late, t, 900.0, float("nan")) == pytest.approx(300.0 * 1e6 / 3600.0)
    assert report_interval_wh(late, t, 900.0, -5e5) == pytest.approx(300.0 * 1e6 / 3600.0)
