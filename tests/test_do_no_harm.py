"""Issue 14 item 1, do no harm: with ramp support on, the grid's swings with the battery are never
larger than without it, here for PCS on setpoints written once a second over a load that steps at
any instant in between (a 0.1 s trace replayed with the agent deciding every 10 steps).

The load: plateaus of 2.0 and 3.6 MW of 17.3 and 23.7 s (so the edges fall at ever other instants
of the agent's second), each edge within 0.05 s, like the synchronized training swings of an 8xH100
trace x 600 nodes (shared/data). The ramp limit is 200 kW/s: every edge puts the load over it.
Measured from the previous plan, the battery cancelled each edge a second late and the meter saw
it twice (once forward, once backward): 58 seconds over the limit against 44 without the battery."""

from __future__ import annotations

import numpy as np

from agent.model.ramp_metrics import ramp_stats
from agent.offline.replay import Trace, replay
from tests.test_analyze import MIDNIGHT, demo, flat_tariff

LIMIT = 200e3
DT = 0.1


def swinging_load(seconds: float) -> np.ndarray:
    t = np.arange(0.0, seconds, DT)
    knots_t, knots_w = [0.0], [2.0e6]
    at, hi = 0.0, False
    while at < seconds:
        at += 23.7 if hi else 17.3
        nxt = 2.0e6 if hi else 3.6e6
        knots_t += [at, at + 0.05]
        knots_w += [knots_w[-1], nxt]
        hi = not hi
    return np.interp(t, knots_t, knots_w)


def test_setpoints_at_1_s_never_make_the_grid_swing_more_than_no_battery() -> None:
    load = swinging_load(600.0)
    ts = MIDNIGHT + 12 * 3600.0 + np.arange(len(load), dtype=np.float64) * DT
    site = demo(12, ramp_limit_w_per_s=LIMIT, tou_enabled=False)
    res = replay(site, flat_tariff(), Trace(ts, load), seed_profile=False, decide_every=10)
    without = ramp_stats(ts, load, LIMIT)
    with_battery = ramp_stats(ts, res.grid_w, LIMIT)
    assert without.over_limit_s >= 20  # the load alone: every edge over the limit
    assert with_battery.over_limit_s <= without.over_limit_s
    assert with_battery.p99_w_per_s <= without.p99_w_per_s
