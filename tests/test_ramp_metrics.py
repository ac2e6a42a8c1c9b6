"""The grid ramp as the meter shows it (agent.model.ramp_metrics), one definition for all readers."""

from __future__ import annotations

import numpy as np
import pytest

from agent.model.ramp_metrics import SLACK, grid_ramps, ramp_stats


@pytest.mark.parametrize(
    ("ts", "w", "ramps", "secs"),
    [
        # 1 s samples: sample to sample
        ([0.0, 1.0, 2.0, 3.0], [0.0, 100.0, 50.0, 50.0], [100.0, 50.0, 0.0], [1.0, 1.0, 1.0]),
        # slower samples: the change per second
        ([0.0, 5.0, 10.0], [0.0, 1000.0, 0.0], [200.0, 200.0], [5.0, 5.0]),
        # 0.5 s samples: 1 s averages first (a swing inside a second is no ramp)
        ([0.0, 0.5, 1.0, 1.5, 2.0, 2.5], [0.0, 100.0, 0.0, 100.0, 100.0, 100.0], [0.0, 50.0], [1.0, 1.0]),
        # an unknown sample gives no ramp either side of it
        ([0.0, 1.0, 2.0, 3.0], [0.0, np.nan, 0.0, 10.0], [10.0], [1.0]),
        ([0.0], [5.0], [], []),
    ],
)
def test_grid_ramps(ts: list[float], w: list[float], ramps: list[float], secs: list[float]) -> None:
    r, dt = grid_ramps(np.array(ts), np.array(w))
    assert r.tolist() == ramps and dt.tolist() == secs


def test_over_the_limit_counts_the_seconds_of_the_ramps_over_it() -> None:
    # 2 s, then 1 s steps; the sample at 2 s is unknown: only the last ramp (1 s, 1000 W/s) is over
    s = ramp_stats(np.array([0.0, 2.0, 3.0, 4.0, 5.0]), np.array([0.0, np.nan, 0.0, 1000.0, 1000.0]), 500.0)
    assert (s.over_limit_s, s.over_limit_n, s.samples, s.max_w_per_s) == (1.0, 1, 2, 1000.0)
    # a ramp exactly at the limit (or within rounding of it) is not over
    at = ramp_stats(np.array([0.0, 1.0]), np.array([0.0, 500.0 * SLACK]), 500.0)
    assert (at.over_limit_s, at.over_limit_n) == (0.0, 0)
    assert ramp_stats(np.array([0.0, 1.0]), np.array([0.0, 1e6]), 0.0).over_limit_s == 0.0  # no limit
