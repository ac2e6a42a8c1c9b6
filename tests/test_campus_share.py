"""An agent under a campus demand share (agent/control/campus_share.py): the coordinator splits the
campus interval's energy left (agent/campus/allocate.py split_demand), so the credit in a share is
what the coordinator gives the feeder now, spread at the campus already; the agent's charging spends
it over the time left (ControlConfig.campus_split), where a site alone spreads its own over at least
half an interval."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from agent.campus.allocate import Share
from agent.control import decide, initial_state
from agent.control.campus_share import with_share
from agent.control.demand import CHARGE_MARGIN, MARGIN
from agent.model.operator import OperatorState
from tests.test_control_support import CFG, SHANGHAI, TZ, snap

T0 = datetime(2026, 7, 15, 12, 30, tzinfo=TZ)  # the flat price: charging for the evening peak
LOAD = 2.1e6


def charge_at_600_s(split: bool) -> tuple[float, float]:
    """12:30-12:40 at a flat 2.1 MW on a 2.5 MW share (the agent charging under it), then at 600 s
    the coordinator raises the share to 3 MW. Returns (the charge the agent asks for then, its
    interval import so far in W s)."""
    st = initial_state(CFG, month_peaks={40.8: 4.4e6}, month=(2026, 7), profile=[LOAD] * 96)
    battery = 0.0
    for k in range(-60, 601, 60):
        cfg = with_share(CFG, Share(0.0, 0.0, 2.5e6 if k < 600 else 3.0e6))
        cfg = replace(cfg, campus_split=split and cfg.campus_split)
        s = snap(LOAD, battery=battery, t_mono=1000.0 + k, t_wall=T0 + timedelta(seconds=k))
        plan, st = decide(s, st, cfg, OperatorState(), SHANGHAI, False)
        battery = plan.site_setpoint_w
    return -battery, st.interval.grid_ws


def test_a_share_s_credit_is_charged_over_the_time_left() -> None:
    assert with_share(CFG, Share(0.0, 0.0, 3e6)).campus_split  # a campus demand target in force
    assert not with_share(replace(CFG, demand_target_w=2e6), Share(0.0, 0.0, 3e6)).campus_split  # the site's own
    assert not with_share(CFG, Share(1e6, 0.0, 0.0)).campus_split  # no campus demand target
    split, grid_ws = charge_at_600_s(True)
    alone, grid_ws_alone = charge_at_600_s(False)
    assert grid_ws == grid_ws_alone == pytest.approx(2.5e6 * (1 - MARGIN) * (1 - CHARGE_MARGIN) * 600.0)
    aim = 3.0e6 * (1 - MARGIN) * (1 - CHARGE_MARGIN)
    credit = aim * 600.0 - grid_ws  # the share's rise: 291 MW s
    assert credit > 0.0
    assert split == pytest.approx(aim + credit / 300.0 - LOAD, rel=1e-6)  # over the 300 s left: 1.781 MW
    assert alone == pytest.approx(aim + credit / 450.0 - LOAD, rel=1e-6)  # over half the interval: 1.457 MW
