"""The PCS's own grid-power loop on the load alone (agent.offline.pcc_loop): what no reference the
agent hands the PCS can cancel, and what the ramp bench counts apart."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest

from agent.economics.tariff import bundled
from agent.model.config import load_site
from agent.offline.pcc_loop import loop_residual, second_changes
from agent.offline.replay import Trace, replay
from tests.fakes import DEMO_SITE
from tests.test_control_support import TZ

DT = 0.1


def test_a_step_leaves_three_samples_of_itself_on_the_grid() -> None:
    # the simulator's default loop (20 ms sample, tau 0.1 s, critically damped) catches a 1 MW step
    # after leaving 60 kJ on the grid: 3 samples x 20 ms of the step, then nothing
    load = np.r_[np.full(20, 1e6), np.full(40, 2e6)]
    r = loop_residual(load, DT, 0.1, 0.02)
    assert r[:20].tolist() == [0.0] * 20
    assert r.sum() * DT == pytest.approx(60_000.0, abs=1.0)
    assert np.abs(r[30:]).max() < 1.0
    # at a 10 ms sample half of it
    assert loop_residual(load, DT, 0.1, 0.01).sum() * DT == pytest.approx(30_000.0, abs=1.0)


def test_a_slew_lags_by_the_same_three_samples() -> None:
    load = 1e6 + np.arange(100) * DT * 1.5e6  # 1.5 MW/s
    r = loop_residual(load, DT, 0.1, 0.02)
    assert r[50:60] == pytest.approx([90_000.0] * 10, abs=1.0)  # 1.5 MW/s x 60 ms


def test_a_step_beyond_what_the_loop_can_hold_shows_in_the_meters_seconds() -> None:
    # 3.5 MW within a second: 3.5 MW x 60 ms = 210 kW on that second's average, more than a 200 kW/s
    # limit allows whatever the reference does, then back
    load = np.r_[np.full(15, 1e6), np.full(45, 4.5e6)]
    ch = second_changes(loop_residual(load, DT, 0.1, 0.02), DT)
    assert ch[:2] == pytest.approx([210_000.0, -210_000.0], abs=1.0)
    assert np.abs(ch[2:]).max() < 1.0


def test_the_grid_in_a_replay_is_the_reference_plus_the_loops_response_to_the_load() -> None:
    # The decomposition the ramp bench reports: with the PCS in grid-power control holding a still
    # grid target (the load back at the level it was handed), the replayed grid minus its target is
    # the loop's response to the load alone, however the agent's plan is made.
    site = load_site(DEMO_SITE)
    site = replace(site, pcs=tuple(replace(p, grid_control="pcc") for p in site.pcs))
    t = np.arange(0.0, 40.0, DT)
    # a 0.8 MW dip for 2 s at 20.3 s: back where it was, so the reference (moving only toward the
    # load the agent reads each second) sits at 1 MW outside it
    load = np.where((t >= 20.3) & (t < 22.3), 0.2e6, 1e6)
    ts = datetime(2026, 7, 15, 12, tzinfo=TZ).timestamp() + t  # a flat-price hour
    res = replay(site, bundled("shanghai_ci_two_part"), Trace(ts, load), seed_profile=False, decide_every=10)
    loop = loop_residual(load, DT, 0.1, 0.02)
    # before the dip the PCS hold the grid at the load (1 MW)
    assert res.grid_w[150:200] == pytest.approx(np.full(50, 1e6), abs=1.0)
    # the agent reads the dip at 21 s and 22 s and moves the reference 100 kW/s toward it: the rest
    # of the grid's departure from 1 MW is the loop's response, exactly
    ref = res.grid_w - loop
    assert ref[200:210] == pytest.approx(np.full(10, 1e6), abs=1.0)
    assert ref[210] < 1e6  # the reference starts down at the reading of 21 s
    assert np.abs(np.diff(ref[210:240])).max() <= 0.1 * 100_000.0 * 1.01


@pytest.mark.parametrize("step_s", [0.0999999, 0.1, 0.10000014])
def test_the_pcs_samples_its_meter_at_its_own_period_whatever_the_steps_rounding(step_s: float) -> None:
    # A 0.1 s step from epoch timestamps is 0.0999999 or 0.10000014 s: the PCS's loop still samples
    # every 20 ms (5 per step: a 1 MW step leaves 60 kJ), not 6 times (16.7 ms, 50 kJ: before the fix)
    load = np.r_[np.full(5, 1e6), np.full(20, 2e6)]
    assert loop_residual(load, step_s, 0.1, 0.02).sum() * step_s == pytest.approx(60_000.0, abs=1.0)
