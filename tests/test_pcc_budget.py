"""The PCS's grid reference within what the meter's running second has left of its ramp budget
(agent.control.ramp_reference.tally / second_budget_w, agent.control.pcc.reference_ramp).

The utility's limit is on the change between 1 s averages of the grid; in grid-power control the
grid is the PCS's reference plus its loop's tracking error. An operator's command is handed over at
the full ramp, but not while the loop's error of a load slew has already spent the second's budget
that way."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from agent.control import decide
from agent.control.ramp import PCC_RAMP_FRACTION
from agent.control.ramp_reference import second_budget_w, tally
from agent.control.state import ControllerState, MeterSecond, RampState
from agent.economics.tariff import bundled
from agent.model.config import load_site
from agent.model.operator import OperatorState
from agent.offline.pcc_loop import loop_residual, second_changes
from agent.offline.replay import Trace, replay
from bench.ramp_bench import DT, START
from tests.fakes import DEMO_SITE
from tests.test_control_pcc import RAMP_CFG, pcc_fleet
from tests.test_control_support import FLAT, NOON, snap

T0 = 1_784_088_000  # a whole second of the wall clock (s since the epoch)
FULL_W_PER_S = 200_000.0 * PCC_RAMP_FRACTION  # demo.toml's limit x 0.5


def test_a_second_is_tallied_from_its_good_readings_and_closed_by_the_next() -> None:
    m = MeterSecond()
    for i, w in enumerate([1e6, 2e6, 3e6, 4e6, 5e6]):  # a 0.2 s cycle: five readings in second T0
        m = tally(m, T0 + 0.2 * i, w, True)
    assert (m.key, m.sum_w, m.n) == (T0, 15e6, 5)
    assert math.isnan(m.prev_avg_w)  # the second before was not read
    m = tally(m, T0 + 1.0, 7e6, True)
    assert (m.key, m.sum_w, m.n, m.prev_avg_w) == (T0 + 1, 7e6, 1, 3e6)
    assert tally(m, T0 + 1.2, 9e6, False) is m  # a bad reading is not counted
    # a reading a microsecond before a whole second (wall-time rounding) belongs to that second
    assert tally(m, T0 + 2.0 - 1e-6, 1e6, True).key == T0 + 2


def test_a_second_read_once_or_not_the_one_before_gives_no_average() -> None:
    # one reading (an agent at a 1 s cycle) is a point of its second, not its average
    m = tally(tally(MeterSecond(), T0, 1e6, True), T0 + 1.0, 2e6, True)
    assert m.key == T0 + 1 and math.isnan(m.prev_avg_w)
    # a gap: the second before the new one was not read at all
    m = tally(tally(tally(MeterSecond(), T0, 1e6, True), T0 + 0.5, 3e6, True), T0 + 2.0, 2e6, True)
    assert math.isnan(m.prev_avg_w)
    assert tally(m, math.nan, 1e6, True) == MeterSecond()


@pytest.mark.parametrize(
    ("prev_avg_w", "up", "left_w"),
    [
        # readings 900 and 800 kW so far at a 0.2 s cycle, the present one (800 kW) held for the
        # other three: the second ends at (1,700 + 3 x 800) / 5 = 820 kW
        (1_000e3, False, 20e3),  # 180 kW of the 200 spent downward
        (1_000e3, True, 380e3),  # the other way the reference may move further
        (700e3, True, 80e3),
        (1_100e3, False, -80e3),  # the grid has already passed the limit
    ],
)
def test_the_budget_left_is_the_limit_less_the_seconds_projected_change(
    prev_avg_w: float, up: bool, left_w: float
) -> None:
    m = MeterSecond(key=T0, sum_w=1_700e3, n=2, prev_avg_w=prev_avg_w)
    assert second_budget_w(m, 800e3, 0.2, 200e3, up) == pytest.approx(left_w)


def test_no_budget_is_known_without_the_second_before() -> None:
    assert second_budget_w(MeterSecond(key=T0, sum_w=1e6, n=1), 1e6, 0.2, 200e3, True) == math.inf
    m = MeterSecond(key=T0, sum_w=1e6, n=1, prev_avg_w=1e6)
    assert second_budget_w(m, math.nan, 0.2, 200e3, True) == math.inf
    # more readings than the cycle suggests (a late cycle): the second is their average
    m = MeterSecond(key=T0, sum_w=6e6, n=6, prev_avg_w=1.1e6)
    assert second_budget_w(m, 1e6, 0.2, 200e3, False) == pytest.approx(100e3)


IDLE = OperatorState(mode="idle")
OVERRIDE = OperatorState(override_w=-627e3, override_until=2000.0)


@pytest.mark.parametrize(
    ("op", "prev_avg_w", "ramp_w_per_s"),
    [
        # The battery charges 627 kW (the grid reads 3,627 kW against a 3 MW load); idle (or an
        # override of 0 W: the same target) moves the reference down to the load. Readings of 3,700
        # and 3,650 kW so far in this second, 3,627 kW now, held for the rest: 3,646.2 kW.
        (IDLE, 3_700e3, FULL_W_PER_S),  # 53.8 kW of the 200 spent down: the full ramp is left
        (IDLE, 3_800e3, 46.2e3),  # 153.8 spent: 46.2 kW/s left
        (IDLE, 3_850e3, 100.0),  # 203.8: none left; the slowest ramp written (never 0)
        (OperatorState(override_w=0.0, override_until=2000.0), 3_850e3, 100.0),
        # charging more (an override of -1 MW: a target of 4 MW) moves against the spent budget
        (OperatorState(override_w=-1e6, override_until=2000.0), 3_850e3, FULL_W_PER_S),
        # in auto the reference approaches as the battery's use of its window asks (627 / 2,508 of
        # the full ramp), the budget not applied (measured: BENCHMARKS.md)
        (OperatorState(), 3_850e3, 25_000.0),
    ],
)
def test_an_operators_command_moves_the_reference_within_the_seconds_budget_left(
    op: OperatorState, prev_avg_w: float, ramp_w_per_s: float
) -> None:
    cl, pcs = pcc_fleet()
    t_wall = NOON + timedelta(seconds=0.4)
    second = MeterSecond(key=math.floor(NOON.timestamp()), sum_w=7_350e3, n=2, prev_avg_w=prev_avg_w)
    st = ControllerState(ramp=RampState(t_mono=999.8, grid_w=3_650e3, meter=second))
    p, st2 = decide(snap(3e6, battery=-627e3, clusters=cl, pcs=pcs, t_wall=t_wall), st, RAMP_CFG, op, FLAT, False)
    assert p.grid_control is not None
    assert p.grid_control.ramp_w_per_s == pytest.approx(ramp_w_per_s)
    assert st2.ramp.meter.n == 3 and st2.ramp.meter.sum_w == pytest.approx(10_977e3)  # this reading counted


def test_idle_does_not_add_the_full_ramp_to_a_slews_loop_error() -> None:
    # The demo battery x 2 (5 MW: no power limit here), every PCS in grid-power control, the agent at
    # 0.2 s, mode idle (the reference heads to the load). At 20 s the load slews down by 3.2 MW at
    # 3.3 MW/s (a 1,000-node synchronized swing): the PCS's loop alone lags it by 176 kW on that
    # second's average (agent.offline.pcc_loop). The reference at the full ramp toward the load read
    # added 30 kW: the grid's 1 s average fell by 206 kW, over the 200 kW/s limit. Within the
    # second's budget it adds nothing, and hands the load back at the full ramp from the next second.
    site = load_site(DEMO_SITE).with_clusters(24)
    site = replace(site, pcs=tuple(replace(p, rated_w=2 * p.rated_w, grid_control="pcc") for p in site.pcs))
    t = np.arange(0.0, 30.0, DT)
    load = 4e6 - np.clip((t - 20.0) * 3.3e6, 0.0, 3.2e6)
    res = replay(
        site,
        bundled("shanghai_ci_two_part"),
        Trace(START.timestamp() + t, load),
        seed_profile=False,
        decide_every=2,
        op=IDLE,
    )
    dg = second_changes(res.grid_w, DT)
    loop = second_changes(loop_residual(load, DT, 0.1, 0.02), DT)
    assert loop[19] == pytest.approx(-176e3, abs=1e3)
    assert dg[19] == pytest.approx(loop[19], abs=1e3)  # before: -206 kW (the reference's -30 added)
    assert max(abs(dg)) <= 200e3
    assert dg[22:28] == pytest.approx([-FULL_W_PER_S] * 6, abs=1e3)  # the grid takes the load back
