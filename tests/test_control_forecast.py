"""The planner's net-load forecast (agent/control/forecast.py): tables on hourly days small enough
to check by hand, cold start, bad history (NaN, gaps, clock steps) and causality."""

from __future__ import annotations

import math
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.control.forecast import W_CLOCK, W_GAP, W_NAN, W_PROFILE, day_to_day_correlation, forecast

UTC = ZoneInfo("UTC")
H = 3600.0
DAY = 86400.0
MON = 1_700_438_400.0  # 2023-11-20 00:00 UTC, a Monday


def shape(hour: np.ndarray) -> np.ndarray:
    return 1000.0 + 10.0 * hour


def history(days: int, end: float = MON + 14 * DAY) -> tuple[np.ndarray, np.ndarray]:
    ts = end - H * np.arange(days * 24, 0, -1, dtype=np.float64)
    return ts, shape((ts % DAY) // H)


def test_repeating_day_is_forecast_exactly_with_no_spread() -> None:
    ts, v = history(7)
    f = forecast(ts, v, MON + 14 * DAY, UTC, H, 2 * DAY)
    assert f is not None
    assert f.start_s == MON + 14 * DAY
    assert len(f.p50_w) == 48
    np.testing.assert_allclose(f.p50_w, shape(np.arange(48) % 24))
    np.testing.assert_allclose(f.p10_w, f.p50_w)
    np.testing.assert_allclose(f.p90_w, f.p50_w)
    assert f.warnings == ()


def test_forecast_starts_at_the_running_interval() -> None:
    ts, v = history(7)
    f = forecast(ts, v, MON + 14 * DAY + 1800.0, UTC, H, DAY)
    assert f is not None
    assert f.start_s == MON + 14 * DAY
    assert f.timestamps[1] == MON + 14 * DAY + H


def test_cold_start_gives_none() -> None:
    ts, v = history(1)
    assert forecast(ts[1:], v[1:], MON + 14 * DAY, UTC, H) is None
    assert forecast(ts, v, MON + 14 * DAY, UTC, H) is not None


def test_level_correction_decays_with_lead_time() -> None:
    ts, v = history(7, end=MON + 11 * DAY)  # ends on a Thursday night: four weekdays before
    v[-2:] += 500.0  # the last two hours ran 500 W above the usual shape (one day of four: median unmoved)
    f = forecast(ts, v, MON + 11 * DAY, UTC, H, DAY, level_s=7200.0, level_tau_s=3 * H)
    assert f is not None
    assert f.p50_w[0] == pytest.approx(shape(np.array([0.0]))[0] + 500.0)
    assert f.p50_w[3] == pytest.approx(1030.0 + 500.0 * math.exp(-1.0))


def test_weekend_profile_is_used_for_a_weekend_day() -> None:
    ts = MON + H * np.arange(14 * 24, dtype=np.float64)
    weekend = ((ts - MON) // DAY) % 7 >= 5
    v = np.where(weekend, 500.0, 1000.0)
    f = forecast(ts, v, MON + 19 * DAY, UTC, H, DAY)  # a Saturday
    assert f is not None
    np.testing.assert_allclose(f.p50_w, 500.0)
    f = forecast(ts, v, MON + 14 * DAY, UTC, H, DAY)  # a Monday
    assert f is not None
    np.testing.assert_allclose(f.p50_w, 1000.0)


def test_spread_comes_from_the_profile_errors() -> None:
    ts, v = history(10)
    v += 100.0 * np.random.default_rng(3).random(len(v))  # noise of 0..100 W around the shape
    f = forecast(ts, v, MON + 14 * DAY, UTC, H, DAY, level_s=0.0)
    assert f is not None
    spread = f.p90_w - f.p10_w
    assert np.all(f.p90_w > f.p50_w) and np.all(f.p10_w < f.p50_w)
    assert np.all((spread > 50.0) & (spread < 100.0))  # 80 W for uniform noise of 100 W


def test_nan_readings_warn_and_never_reach_the_forecast() -> None:
    ts, v = history(7)
    v[5] = math.nan
    v[-1] = math.inf
    f = forecast(ts, v, MON + 14 * DAY, UTC, H)
    assert f is not None
    assert W_NAN in f.warnings
    assert np.all(np.isfinite(f.p10_w)) and np.all(np.isfinite(f.p50_w)) and np.all(np.isfinite(f.p90_w))


def test_clock_step_back_warns_and_keeps_a_usable_forecast() -> None:
    ts, v = history(7)
    ts = np.concatenate((ts, ts[-3:] - 3 * H))  # the clock stepped back three hours and recorded again
    v = np.concatenate((v, [9e9, 9e9, 9e9]))
    f = forecast(ts, v, MON + 14 * DAY, UTC, H)
    assert f is not None
    assert W_CLOCK in f.warnings
    np.testing.assert_allclose(f.p50_w, shape(np.arange(48) % 24))


def test_readings_from_the_future_are_ignored_with_a_warning() -> None:
    ts, v = history(7)
    f = forecast(np.r_[ts, MON + 15 * DAY], np.r_[v, 9e9], MON + 14 * DAY, UTC, H)
    assert f is not None
    assert W_CLOCK in f.warnings
    np.testing.assert_allclose(f.p50_w, shape(np.arange(48) % 24))


def test_a_missing_day_warns_and_the_other_days_fill_it() -> None:
    ts, v = history(7)
    keep = np.ones(len(ts), bool)
    keep[48:72] = False
    f = forecast(ts[keep], v[keep], MON + 14 * DAY, UTC, H)
    assert f is not None
    assert f.warnings == (W_GAP,)
    np.testing.assert_allclose(f.p50_w, shape(np.arange(48) % 24))


def test_a_slot_never_seen_uses_the_recent_mean() -> None:
    ts, v = history(7)
    keep = (ts % DAY) // H != 3
    f = forecast(ts[keep], v[keep], MON + 14 * DAY, UTC, H, DAY)
    assert f is not None
    assert W_PROFILE in f.warnings
    assert f.p50_w[3] == pytest.approx(float(np.mean(v[keep][-24:])))


def test_causal_changing_the_future_changes_no_forecast_before_it() -> None:
    rng = np.random.default_rng(7)
    ts = MON + H * np.arange(20 * 24, dtype=np.float64)
    v = 1000.0 + 300.0 * rng.random(len(ts))
    other = v.copy()
    cut = 15 * 24
    other[cut:] = 5000.0 * rng.random(len(ts) - cut)
    for now in (ts[cut], ts[cut] - 1800.0, ts[cut - 30]):
        a = forecast(ts, v, float(now), UTC, H)
        b = forecast(ts, other, float(now), UTC, H)
        assert a is not None and b is not None
        np.testing.assert_array_equal(a.p50_w, b.p50_w)
        np.testing.assert_array_equal(a.p90_w, b.p90_w)
        assert a.warnings == b.warnings


def test_step_must_divide_a_day() -> None:
    with pytest.raises(ValueError, match="step_s 7000 s must divide a day"):
        forecast([], [], MON, UTC, 7000.0)


def test_scenarios_are_the_forecast_with_each_past_days_errors() -> None:
    ts, v = history(7)
    v = v.copy()
    friday_10h = MON + 11 * DAY + 10 * H  # 50 W above the usual shape on the Friday at 10:00
    v[ts == friday_10h] += 50.0
    f = forecast(ts, v, MON + 14 * DAY, UTC, H, 2 * DAY, scenario_days=4)
    assert f is not None
    np.testing.assert_allclose(f.p50_w, shape(np.arange(48) % 24))  # the median of five weekdays
    assert f.scenarios_w.shape == (4, 48)
    friday = f.p50_w.copy()
    friday[[10, 34]] += 50.0  # the Friday (three days back) laid on both days of the horizon
    np.testing.assert_allclose(f.scenarios_w, np.vstack([f.p50_w, f.p50_w, friday, f.p50_w]))


def test_with_no_daily_phase_the_running_interval_is_the_median_in_every_scenario() -> None:
    # 1,000 W with 1,500 W every fifth hour: a period of 5 h, so a day back is 4 h out of phase and
    # a past day's value at this hour says nothing of today's (day-to-day correlation -0.25,
    # taken as 0). The planner decides the running interval once for all scenarios: left at the
    # past days' values (1,000, 1,000, 1,000 and the 10th day's 1,500 W), the 1,500 W forced it.
    ts = MON + 14 * DAY - H * np.arange(7 * 24, 0, -1, dtype=np.float64)
    k = np.round((ts - MON) / H).astype(np.int64)
    v = np.where(k % 5 == 0, 1500.0, 1000.0)
    assert day_to_day_correlation(ts, v, H) == 0.0
    f = forecast(ts, v, MON + 14 * DAY, UTC, H, DAY, scenario_days=4)
    assert f is not None
    # the weekdays' median at 00:00 is 1,000 W (one spike in five) and the weekend's last two
    # hours ran at their median's level (+250 and -250 W): no level correction
    assert f.p50_w[0] == 1000.0
    np.testing.assert_allclose(f.scenarios_w[:, 0], [1000.0] * 4)
    # the rest of each scenario is its day as it went: the 10th day's spike at 05:00 (k = 245)
    assert f.scenarios_w[3, 5] == 1500.0 and f.scenarios_w[0, 5] == 1000.0


def test_the_slots_decided_before_the_next_plan_are_the_median_too_with_no_daily_phase() -> None:
    # the same loop, a plan kept for 6 h: every scenario's first 6 slots are decided once for all
    # (planner.plan's shared_slots), so with no daily phase they are the median; the 10th day's
    # spike at 05:00 is now among them, and its 7th slot (06:00) is as it went
    ts = MON + 14 * DAY - H * np.arange(7 * 24, 0, -1, dtype=np.float64)
    k = np.round((ts - MON) / H).astype(np.int64)
    v = np.where(k % 5 == 0, 1500.0, 1000.0)
    f = forecast(ts, v, MON + 14 * DAY, UTC, H, DAY, scenario_days=4, decided_slots=6)
    one = forecast(ts, v, MON + 14 * DAY, UTC, H, DAY, scenario_days=4)
    assert f is not None and one is not None
    np.testing.assert_allclose(f.scenarios_w[:, :6], np.tile(f.p50_w[:6], (4, 1)))
    assert one.scenarios_w[3, 5] == 1500.0
    np.testing.assert_array_equal(f.scenarios_w[:, 6:], one.scenarios_w[:, 6:])


def test_with_a_daily_shape_the_past_days_keep_their_running_interval() -> None:
    # the repeating day with 50 W more on the Friday at 00:00: the correlation is just under 1, and
    # that day's scenario keeps that share of its 50 W in the running interval
    ts, v = history(7)
    v = v.copy()
    v[ts == MON + 11 * DAY] += 50.0
    rho = day_to_day_correlation(ts, v, H)
    assert 0.99 < rho < 1.0
    f = forecast(ts, v, MON + 14 * DAY, UTC, H, DAY, scenario_days=4)
    assert f is not None
    np.testing.assert_allclose(f.scenarios_w[:, 0], f.p50_w[0] + rho * np.array([0.0, 0.0, 50.0, 0.0]))


def test_no_scenarios_unless_asked_and_none_from_a_day_mostly_missing() -> None:
    ts, v = history(7)
    f = forecast(ts, v, MON + 14 * DAY, UTC, H, DAY)
    assert f is not None and f.scenarios_w.shape == (0, 24)
    keep = ~((ts >= MON + 13 * DAY) & (ts < MON + 13 * DAY + 14 * H))  # 14 of the last day's 24 h missing
    g = forecast(ts[keep], v[keep], MON + 14 * DAY, UTC, H, DAY, scenario_days=3)
    assert g is not None and g.scenarios_w.shape == (2, 24)
    assert np.isfinite(g.scenarios_w).all()
