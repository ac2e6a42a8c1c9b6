"""End-of-life forecast on synthetic curves with known answers: straight lines, quadratics
(knees), hinges with noise, outlier days, and the cases with no answer."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.health.forecast import MIN_FIT_POINTS, forecast, hampel

DAYS = np.arange(100.0)


@pytest.mark.parametrize(
    ("values", "accelerating", "early", "mid", "late"),
    [
        # 100 -> 90.1 % at 0.1 %/day: 10.1 points left, 101 days, no curvature, no uncertainty
        (100.0 - 0.1 * DAYS, False, 101.0, 101.0, 101.0),
        # 100 - 0.001 t^2: 80 % at t = sqrt(20000) = 141.42, i.e. 42.42 days after day 99; if the
        # acceleration stopped today, 10.199 points at today's 0.198 %/day: 51.51 days
        (100.0 - 0.001 * DAYS**2, True, 42.4214, 42.4214, 51.5101),
        # already under the limit
        (79.0 - 0.1 * DAYS, False, 0.0, 0.0, 0.0),
    ],
)
def test_noise_free_curves_give_the_exact_answer(
    values: np.ndarray, accelerating: bool, early: float, mid: float, late: float
) -> None:
    f = forecast(DAYS, values, 80.0, -1)
    assert f is not None
    assert f.day == 99.0
    assert f.accelerating is accelerating
    assert f.early_days == pytest.approx(early, abs=1e-2)  # rounding-level curvature bound
    assert f.mid_days == pytest.approx(mid, abs=1e-3)
    assert f.late_days == pytest.approx(late, abs=1e-3)


def test_rising_indicator_toward_an_upper_limit() -> None:
    # resistance 90 mOhm + 0.5 mOhm/day: at day 99 139.5, the 150 limit 21 days on
    f = forecast(DAYS, 90.0 + 0.5 * DAYS, 150.0, +1)
    assert f is not None
    assert f.value == pytest.approx(139.5)
    assert f.slope_per_day == pytest.approx(0.5)
    assert f.mid_days == pytest.approx(21.0)


def test_flat_series_never_reaches_the_limit() -> None:
    f = forecast(DAYS, np.full(100, 100.0), 80.0, -1)
    assert f is not None
    assert not f.accelerating
    assert f.mid_days > 1e6  # "never", up to rounding


def test_too_few_days_gives_no_forecast() -> None:
    d = np.arange(float(MIN_FIT_POINTS - 1))
    assert forecast(d, 100.0 - 0.5 * d, 80.0, -1) is None
    assert forecast(np.zeros(0), np.zeros(0), 80.0, -1) is None
    nan = np.full(100, math.nan)
    assert forecast(DAYS, nan, 80.0, -1) is None


# A hinge: 0.01 %/day, then from day 100 an extra 0.0005 (t - 100)^2 (a knee). From day 180 the
# limit is 105.19 days away: 0.01 t + 0.0005 (t - 100)^2 = 20 -> t = 285.19.
HINGE_TRUE_DAYS = 285.19 - 180.0


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_noisy_knee_is_seen_and_the_interval_holds_the_truth(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(181.0)
    y = 100.0 - 0.01 * t - 0.0005 * np.maximum(0.0, t - 100.0) ** 2 + rng.normal(0.0, 0.3, len(t))
    f = forecast(t, y, 80.0, -1)
    assert f is not None
    assert f.accelerating
    assert f.early_days <= HINGE_TRUE_DAYS <= f.late_days
    # a straight line through the same window predicts far later than the truth
    line = np.polyfit(t[-100:], y[-100:], 1)
    assert (80.0 - np.polyval(line, 180.0)) / line[0] > 1.5 * HINGE_TRUE_DAYS


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_noisy_straight_line_is_no_knee(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = 100.0 - 0.1 * DAYS + rng.normal(0.0, 0.3, 100)
    f = forecast(DAYS, y, 80.0, -1)
    assert f is not None
    assert not f.accelerating
    assert f.early_days <= 101.0 <= f.late_days


def test_outlier_days_move_neither_level_nor_forecast() -> None:
    rng = np.random.default_rng(9)
    clean = 100.0 - 0.1 * DAYS + rng.normal(0.0, 0.2, 100)
    bad = clean.copy()
    bad[[20, 55, 97, 99]] -= 15.0  # failed capacity tests, one of them today
    assert np.array_equal(hampel(bad)[[20, 55, 97, 99]] < 90.0, [False, False, False, False])
    f_clean = forecast(DAYS, clean, 80.0, -1)
    f_bad = forecast(DAYS, bad, 80.0, -1)
    assert f_clean is not None and f_bad is not None
    assert f_bad.mid_days == pytest.approx(f_clean.mid_days, rel=0.05)
    assert not f_bad.accelerating


def test_hampel_keeps_clean_data_and_nan() -> None:
    v = np.array([1.0, 2.0, math.nan, 4.0, 5.0, 6.0])
    out = hampel(v)
    assert np.array_equal(out, v, equal_nan=True)
