"""When the planner re-plans (agent/control/replan.py, `replan_s` > 0): when its plan is `replan_s`
old, and sooner when the load or SoC departs from the plan by more than the forecast's own spread.

The site: 100 kWh, 50 kW, lossless, a flat price and a demand charge, UTC. The history: two days,
the first at 80 kW all day, the second at 120 kW: the profile is their median, 100 kW, and the
errors are -20 / +20 kW, so the forecast's p10-p90 is p50 -/+ 20 kW in every slot, and half that
width over one quarter hour is 5 kWh: 5 % of the battery (the SoC threshold).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.control.forecast import Forecast
from agent.control.replan import (
    R_AGE,
    R_EVERY,
    R_LOAD,
    R_NONE,
    R_PEAK,
    R_SOC,
    Replanner,
    ReplanSettings,
    departure,
    spread_soc_pct,
)
from agent.control.schedule import DispatchPlan
from tests.test_control_planner import BAT, FLAT, T0, Q


def warmed(replan_s: float = 3600.0, time_limit_s: float = 5.0) -> Replanner:
    rp = Replanner(
        FLAT,
        BAT,
        ReplanSettings(
            horizon_s=4 * 3600.0, history_days=2, scenario_days=0, replan_s=replan_s, time_limit_s=time_limit_s
        ),
    )
    for i in range(192):
        x = 80e3 if i < 96 else 120e3
        rp.completed(T0 - 2 * 86400.0 + i * Q, x, x)
    return rp


def first_plan(rp: Replanner) -> tuple[DispatchPlan, Forecast]:
    p, failed = rp.plan_at(T0, 50.0)
    assert p is not None and not failed and rp.last_fc is not None
    assert rp.stats.reasons == {R_NONE: 1}
    return p, rp.last_fc


def test_the_spread_threshold_by_hand() -> None:
    rp = warmed()
    _, f = first_plan(rp)
    np.testing.assert_allclose(f.p90_w - f.p50_w, 20e3)
    np.testing.assert_allclose(f.p50_w - f.p10_w, 20e3)
    assert spread_soc_pct(f, T0 + Q, BAT.energy_wh) == pytest.approx(5.0)
    assert spread_soc_pct(f, T0 + 10 * 86400.0, BAT.energy_wh) == 0.0  # outside the forecast


# (what the first quarter hour did: its net load and import, the SoC at its end; which re-plan is due)
# net/grid: offsets (W) from the forecast's p10 / p50 / p90 and the plan's cap in that slot;
# soc: offset (%) from the plan's SoC at the end of the slot
CASES = [
    ("on the plan", ("p50", 0.0), ("cap", 0.0), 0.0, None),
    ("load at p90", ("p90", 0.0), ("cap", 0.0), 0.0, None),
    ("load at p10", ("p10", 0.0), ("cap", 0.0), 0.0, None),
    ("load 1 W above p90", ("p90", 1.0), ("cap", 0.0), 0.0, R_LOAD),
    ("load 1 W below p10", ("p10", -1.0), ("cap", 0.0), 0.0, R_LOAD),
    ("import 1 W above the cap", ("p50", 0.0), ("cap", 1.0), 0.0, R_PEAK),
    ("SoC 4.9 % above", ("p50", 0.0), ("cap", 0.0), 4.9, None),
    ("SoC 4.9 % below", ("p50", 0.0), ("cap", 0.0), -4.9, None),
    ("SoC 5.1 % above", ("p50", 0.0), ("cap", 0.0), 5.1, R_SOC),
    ("SoC 5.1 % below", ("p50", 0.0), ("cap", 0.0), -5.1, R_SOC),
]


@pytest.mark.parametrize(("name", "net", "grid", "soc", "due"), CASES, ids=[c[0] for c in CASES])
def test_a_departure_above_the_threshold_re_plans_below_it_does_not(
    name: str, net: tuple[str, float], grid: tuple[str, float], soc: float, due: str | None
) -> None:
    rp = warmed()
    p, f = first_plan(rp)
    level = {"p10": f.p10_w[0], "p50": f.p50_w[0], "p90": f.p90_w[0], "cap": p.grid_cap_w[0]}
    assert math.isfinite(level["cap"])
    rp.completed(T0, level[net[0]] + net[1], level[grid[0]] + grid[1])
    q, failed = rp.plan_at(T0 + Q, float(p.soc_pct[0]) + soc)
    assert not failed and q is not None
    if due is None:
        assert q is p and rp.stats.solves == 1 and rp.stats.kept == 1
    else:
        assert q is not p and q.made_s == T0 + Q and rp.stats.solves == 2 and rp.stats.kept == 0
        assert rp.stats.reasons == {R_NONE: 1, due: 1}


def follow(rp: Replanner, p: DispatchPlan, f: Forecast, k: int) -> tuple[DispatchPlan | None, bool]:
    """Interval k-1 went as the plan's median said; asked for the plan at the start of interval k."""
    rp.completed(T0 + (k - 1) * Q, float(f.p50_w[k - 1]), min(float(p.grid_w[k - 1]), float(p.grid_cap_w[k - 1])))
    return rp.plan_at(T0 + k * Q, float(p.soc_pct[k - 1]))


def test_on_the_plan_it_re_plans_when_the_plan_is_replan_s_old() -> None:
    rp = warmed(replan_s=3600.0)
    p, f = first_plan(rp)
    assert [follow(rp, p, f, k)[0] is p for k in (1, 2, 3)] == [True, True, True]
    q, _ = follow(rp, p, f, 4)  # 3,600 s after the plan
    assert q is not p and q is not None and q.made_s == T0 + 4 * Q
    assert rp.stats.reasons == {R_NONE: 1, R_AGE: 1} and rp.stats.kept == 3
    assert len(rp.stats.forecasts) == 5  # every interval's forecast counts for the accuracy figures


def test_replan_s_zero_re_plans_every_interval() -> None:
    rp = warmed(replan_s=0.0)
    p, _ = rp.plan_at(T0, 50.0)
    assert p is not None and rp.last_fc is not None
    q, _ = follow(rp, p, rp.last_fc, 1)
    assert q is not p and rp.stats.reasons == {R_EVERY: 2} and rp.stats.kept == 0


def test_a_failed_re_plan_keeps_the_last_plan_and_is_tried_again_at_the_next_interval() -> None:
    rp = warmed()
    p, f = first_plan(rp)
    rp.completed(T0, float(f.p90_w[0]) + 1e3, float(p.grid_cap_w[0]))  # a departure
    rp.settings = ReplanSettings(
        horizon_s=4 * 3600.0, history_days=2, scenario_days=0, replan_s=3600.0, time_limit_s=0.0
    )
    q, failed = rp.plan_at(T0 + Q, float(p.soc_pct[0]))
    assert failed and q is p
    rp.settings = ReplanSettings(horizon_s=4 * 3600.0, history_days=2, scenario_days=0, replan_s=3600.0)
    q, failed = follow(rp, p, f, 2)  # on the plan now, but the departure is still unanswered
    assert not failed and q is not p and rp.stats.reasons == {R_NONE: 1, R_LOAD: 2}


def hand_plan() -> tuple[DispatchPlan, Forecast]:
    """Four quarter hours: p50 100 kW, p10-p90 80-120 kW; two scenarios, one with 150 kW and one with
    60 kW in the second; the plan's cap 130 kW."""
    z = np.zeros(4)
    f = Forecast(
        T0,
        Q,
        np.full(4, 80e3),
        np.full(4, 100e3),
        np.full(4, 120e3),
        (),
        np.array([[100e3, 150e3, 100e3, 100e3], [100e3, 60e3, 100e3, 100e3]]),
    )
    p = DispatchPlan(T0, T0, Q, z, np.full(4, 100e3), np.full(4, 130e3), 50.0, np.full(4, 50.0), z, 0.0, 0.0)
    return p, f


# (interval start, its net load and import in kW; the departure)
DEPARTURES = [
    (T0, 120.0, 100.0, None),
    (T0, 121.0, 100.0, R_LOAD),  # no scenario went above 100 kW there: the p10-p90 is the band
    (T0, 79.0, 100.0, R_LOAD),
    (T0 + Q, 149.0, 100.0, None),  # above the p90 but within what a scenario did: planned for
    (T0 + Q, 151.0, 100.0, R_LOAD),
    (T0 + Q, 61.0, 100.0, None),
    (T0 + Q, 59.0, 100.0, R_LOAD),
    (T0 + 2 * Q, 100.0, 130.0, None),
    (T0 + 2 * Q, 100.0, 130.001, R_PEAK),
    (T0 - Q, 500.0, 500.0, None),  # before the plan: not its business
    (T0 + 4 * Q, 500.0, 500.0, None),  # after the forecast
]


@pytest.mark.parametrize(("start", "net_kw", "grid_kw", "due"), DEPARTURES)
def test_a_departure_is_a_load_no_band_or_scenario_allowed_for_or_an_import_above_the_cap(
    start: float, net_kw: float, grid_kw: float, due: str | None
) -> None:
    p, f = hand_plan()
    assert departure(p, f, start, net_kw * 1e3, grid_kw * 1e3) == due
    assert departure(None, f, start, net_kw * 1e3, grid_kw * 1e3) is None
