"""ROI by billing month: a synthetic month whose savings, annual estimate and NPV/IRR are known by hand.

The month (April 2026, 30 days, UTC), every day the same: the load is 80 kW at night (00-04), 100 kW
by day and 120 kW 12-16. The battery charges 10 kW 00-04 (cheap, 0.1 per kWh) and discharges
10 kW 12-16 (dear, 0.5 per kWh): per day energy savings 40 x 0.5 - 40 x 0.1 = 16, degradation
40 kWh x 0.02 = 0.8, so 15.2 a day; the month's demand saving is 10 per kW x (120 - 110) kW = 100,
billed once. On day 2 the grid meter is lost 13:00-14:00 (a discharging hour): four excluded
intervals, never counted as zero savings.

The old estimate (trailing savings x 365 / days) said 115.2 x 365 = 42,048 a year after one day,
counting the month's demand saving 365 times; by billing month it is 15.2 x 365 + 100 x 12 = 6,748.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.economics.ledger import Ledger, LedgerSample
from agent.economics.roi import EconomicsConfig
from agent.economics.tariff import parse_tariff

TARIFF = """
name = "month test"
currency = "XXX"
timezone = "UTC"
demand_interval_min = 15
[prices]
cheap = 0.1
dear = 0.5
[[energy]]
hours = { "00:00-08:00" = "cheap", "08:00-24:00" = "dear" }
[[demand]]
name = "any time"
rate = 10.0
"""
T0 = datetime(2026, 4, 1, tzinfo=UTC).timestamp()
STEP = 60.0
CFG = EconomicsConfig(
    degradation_cost_per_kwh=0.02,
    capex_installation=30_000.0,
    annual_opex=748.0,
    discount_rate=0.08,
    project_life_years=10,
    min_coverage=0.9,
    max_hold_s=STEP,
)
RATED_W = 20_000.0  # the battery's rating: the most the month's peak can drop is 20 kW (200 a month)
HOUR, DAY = 3600.0, 86400.0


def sample(t: float) -> LedgerSample:
    h = (t - T0) % DAY / HOUR
    base, bat = (80_000.0, -10_000.0) if h < 4 else (120_000.0, 10_000.0) if 12 <= h < 16 else (100_000.0, 0.0)
    lost = DAY + 13 * HOUR <= t - T0 < DAY + 14 * HOUR  # day 2, 13:00-14:00: grid meter gone
    return LedgerSample(t, base - bat, bat, base, True, not lost, True)


def npv_by_sum(rate: float, capex: float, cash: float, years: int) -> float:
    return -capex + sum(cash / (1.0 + rate) ** y for y in range(1, years + 1))


def test_a_month_by_hand_at_1_hour_1_day_15_days_and_1_month(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db", parse_tariff(tomllib.loads(TARIFF), "t.toml"), CFG)
    fed = 0

    def feed_until(seconds: float) -> dict:  # type: ignore[type-arg]
        nonlocal fed
        while fed * STEP <= seconds:
            led.feed(sample(T0 + fed * STEP))
            fed += 1
        return led.report(clusters=0, pcs=0, rated_w=RATED_W)["roi"]

    # 1 hour: charging at night, 10 kW more import: energy -1.0, demand 10 x (80 - 90) = -100
    r = feed_until(HOUR)
    assert r["realized_savings"] == pytest.approx(-101.0)
    assert r["status"] == "not_enough_data"
    assert (r["annual_savings"], r["npv"], r["irr"], r["simple_payback_years"]) == (None, None, None, None)
    assert r["estimate"]["note"] == "not enough data yet: 1.0 h of the 24 h needed counted"

    # 1 day: 16 - 0.8 + 100 realized; the year: 15.2 x 365 + 100 x 12 (the demand saving once a month)
    r = feed_until(DAY)
    assert r["realized_savings"] == pytest.approx(115.2)
    e = r["estimate"]
    assert (e["basis"], e["months"]) == ("running_month", ["2026-04-01"])
    assert e["time_rate_per_day"] == pytest.approx(15.2)
    assert e["demand_per_month"] == pytest.approx(100.0)
    assert r["annual_savings"] == pytest.approx(6_748.0)
    # range: the month's demand saving from 0 (a later peak left unshaved) to 10 x 20 kW rated
    assert (e["demand_so_far_low"], e["demand_so_far_high"]) == (0.0, pytest.approx(200.0))
    assert (e["low"], e["high"]) == (pytest.approx(5_548.0), pytest.approx(7_948.0))
    # cash 6,748 - 748 opex = 6,000 a year on 30,000 over 10 years at 8 %: NPV 6,000 x 6.710081 - 30,000
    assert r["npv"] == pytest.approx(10_260.4884, abs=1e-3)
    assert r["irr"] == pytest.approx(0.150984, abs=1e-6)  # annuity factor 5 over 10 years
    assert r["simple_payback_years"] == pytest.approx(5.0)
    assert r["opex_to_date"] == pytest.approx(748.0 / 365.0)
    assert r["remaining_payback_years"] == pytest.approx((30_000.0 - 115.2 + 748.0 / 365.0) / 6_000.0)

    # 15 days: the lost hour (a discharging hour: 5 energy, 0.2 degradation) is excluded, not zero
    r = feed_until(15 * DAY)
    assert r["realized_savings"] == pytest.approx(15 * 15.2 - 4.8 + 100.0)
    assert (r["excluded_h"], r["lost_h"], r["uncovered_h"]) == (1.0, 0.0, 0.0)
    rate = (15 * 15.2 - 4.8) / (15 - 1 / 24)  # per day with data
    assert r["estimate"]["time_rate_per_day"] == pytest.approx(rate)
    annual = rate * 365 + 1_200.0
    assert r["annual_savings"] == pytest.approx(annual)
    assert r["npv"] == pytest.approx(npv_by_sum(0.08, 30_000.0, annual - 748.0, 10), rel=1e-12)

    # 1 month (May 1st 00:00 closes April's last interval): one whole month, basis and range its own
    r = feed_until(30 * DAY)
    assert r["realized_savings"] == pytest.approx(30 * 15.2 - 4.8 + 100.0)
    e = r["estimate"]
    assert (e["basis"], e["months"]) == ("whole_months", ["2026-04-01"])
    rate = (30 * 15.2 - 4.8) / (30 - 1 / 24)
    annual = rate * 365 + 1_200.0
    assert r["annual_savings"] == pytest.approx(annual)
    assert (e["low"], e["high"]) == (pytest.approx(annual), pytest.approx(annual))
    assert e["demand_so_far_low"] is None  # April's demand saving is final
    assert r["npv"] == pytest.approx(npv_by_sum(0.08, 30_000.0, annual - 748.0, 10), rel=1e-12)
    assert r["days"] == pytest.approx(30.0)
    led.close()
