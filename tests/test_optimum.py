"""Perfect-foresight optimum: tiny cases solved by hand, and a month that must solve in seconds."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.economics.optimum import BatterySpec, optimum, resample_mean
from agent.economics.tariff import Tariff, bundled, parse_tariff

T0 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC


def two_price_tariff() -> Tariff:
    return parse_tariff(
        tomllib.loads(
            """
name = "tiny"
currency = "XXX"
timezone = "UTC"
[prices]
cheap = 0.1
dear = 0.5
[[energy]]
hours = { "00:00-00:30" = "cheap", "00:30-24:00" = "dear" }
[[demand]]
name = "max"
rate = 10.0
"""
        ),
        "tiny.toml",
    )


def flat_tariff() -> Tariff:
    return parse_tariff(
        tomllib.loads(
            'name = "flat"\ncurrency = "XXX"\ntimezone = "UTC"\n[prices]\np = 0.2\n'
            '[[energy]]\nhours = { "00:00-24:00" = "p" }\n[[demand]]\nname = "max"\nrate = 10.0\n'
        ),
        "flat.toml",
    )


LOSSLESS = BatterySpec(
    energy_wh=100_000.0,
    power_w=50_000.0,
    charge_efficiency=1.0,
    discharge_efficiency=1.0,
    start_soc_pct=50.0,
    end_soc_pct=50.0,
)


def test_four_intervals_two_prices_one_demand_charge() -> None:
    # load 100/100/200/100 kW; cheap 0.1 then dear 0.5 per kWh; 10 per kW-month of peak.
    # No battery: 0.25 h x (100x0.1 + 100x0.1 + 200x0.5 + 100x0.5) + 200 x 10 = 42.5 + 2000.
    # Optimum: discharge 50 kW (the power limit) in both dear steps, recharge 50 kW in both cheap
    # ones: grid 150/150/150/50 -> energy 0.25 x (15 + 15 + 75 + 25) = 32.5, demand 1500.
    ts = T0 + 900.0 * np.arange(4)
    load = np.array([100e3, 100e3, 200e3, 100e3])
    r = optimum(ts, load, two_price_tariff(), LOSSLESS)
    assert r.objective == pytest.approx(1532.5, abs=1e-6)
    assert r.grid_w.tolist() == pytest.approx([150e3, 150e3, 150e3, 50e3], abs=1e-3)
    assert r.battery_w.tolist() == pytest.approx([-50e3, -50e3, 50e3, 50e3], abs=1e-3)
    assert r.soc_wh.tolist() == pytest.approx([62_500.0, 75_000.0, 62_500.0, 50_000.0], abs=1e-3)
    assert r.baseline_bill.total == pytest.approx(2042.5)
    assert r.bill.total == pytest.approx(1532.5, abs=1e-6)
    assert r.savings == pytest.approx(510.0, abs=1e-6)


def test_degradation_is_charged_per_kwh_discharged() -> None:
    # Same case at 0.1 per kWh discharged: still worth it (0.5 - 0.1 - 0.1 > 0), 25 kWh x 0.1 more.
    ts = T0 + 900.0 * np.arange(4)
    load = np.array([100e3, 100e3, 200e3, 100e3])
    bat = replace(LOSSLESS, degradation_cost_per_kwh=0.1)
    r = optimum(ts, load, two_price_tariff(), bat)
    assert r.objective == pytest.approx(1535.0, abs=1e-6)
    assert r.degradation_cost == pytest.approx(2.5, abs=1e-6)


def test_losses_raise_the_recharge() -> None:
    # Two steps, flat price 0.2, load 100 then 200 kW, round trip 80 %. Shaving to P needs
    # (200 - P) / 0.8 of recharge in step 0, which must also stay <= P: 280 <= 1.8 P, P = 1400/9 kW.
    # Cost = 10 P + 0.2 x 0.25 x (300 + 0.25 (200 - P)) = 14000/9 + 15 + 5/9.
    eta = 0.8**0.5
    bat = BatterySpec(
        energy_wh=100_000.0,
        power_w=100_000.0,
        charge_efficiency=eta,
        discharge_efficiency=eta,
        start_soc_pct=50.0,
        end_soc_pct=50.0,
    )
    r = optimum(T0 + 900.0 * np.arange(2), np.array([100e3, 200e3]), flat_tariff(), bat)
    assert r.objective == pytest.approx(14000 / 9 + 15 + 5 / 9, abs=1e-6)
    assert r.grid_w.tolist() == pytest.approx([1400e3 / 9, 1400e3 / 9], abs=1e-3)
    assert r.soc_wh[-1] == pytest.approx(50_000.0)


def test_demand_peak_is_the_interval_average_at_finer_steps() -> None:
    # 5-min steps: one 15-min interval of 300/0/0 kW averages 100 kW; the battery cannot help
    # the average (it would have to export), so the bill is exactly the no-battery one.
    ts = T0 + 300.0 * np.arange(3)
    r = optimum(ts, np.array([300e3, 0.0, 0.0]), flat_tariff(), LOSSLESS)
    assert r.bill.months[0].demand[0].peak_w == pytest.approx(100e3, abs=1e-3)
    assert r.objective == pytest.approx(100 * 10.0 + 0.2 * 300 / 12, abs=1e-6)


def test_a_month_at_15_min_solves_in_seconds() -> None:
    la = ZoneInfo("America/Los_Angeles")
    t = bundled("pge_e20_secondary_2014")
    ts = datetime(2014, 7, 1, tzinfo=la).timestamp() + 900.0 * np.arange(31 * 96)
    hour = (ts / 3600.0 - 7) % 24  # local hour (PDT)
    rng = np.random.default_rng(5)
    load = 4e6 + 1.5e6 * np.exp(-(((hour - 15) / 3) ** 2)) + rng.normal(0, 2e5, len(ts))
    bat = BatterySpec(energy_wh=5e6, power_w=2.5e6, start_soc_pct=50, end_soc_pct=50, soc_min_pct=10)
    r = optimum(ts, load, t, bat)
    assert r.solve_s < 10.0  # ~1 s here
    # the LP objective is the bill of its own schedule plus degradation
    assert r.objective == pytest.approx(r.bill.total + r.degradation_cost, rel=1e-7)
    assert r.savings > 0
    assert r.grid_w.min() >= 0.0
    assert r.soc_wh.min() >= 0.5e6 - 1e-3


def test_resample_mean_aligns_to_the_clock() -> None:
    starts, means = resample_mean([0.0, 1.0, 2.0, 900.0, 901.0], [1.0, 2.0, np.nan, 10.0, 20.0], 900.0)
    assert starts.tolist() == [0.0, 900.0]
    assert means.tolist() == [1.5, 15.0]


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="load_w must be finite and >= 0"):
        optimum(T0 + 900.0 * np.arange(2), np.array([1.0, -1.0]), flat_tariff(), LOSSLESS)
    with pytest.raises(ValueError, match="must divide the tariff's demand interval"):
        optimum(T0 + 1800.0 * np.arange(2), np.array([1.0, 1.0]), flat_tariff(), LOSSLESS)
