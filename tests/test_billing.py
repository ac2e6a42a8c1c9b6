"""Bills of hand-made grid series: energy by period, demand per window, export, months, gaps."""

from __future__ import annotations

import math
import time
import tomllib
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.economics.billing import bill, hold_durations, interval_import
from agent.economics.tariff import bundled, parse_tariff
from agent.offline.report import compare, plot, table

SH = ZoneInfo("Asia/Shanghai")
LA = ZoneInfo("America/Los_Angeles")


def minutes(start: datetime, n: int, step_s: float = 60.0) -> np.ndarray:
    return start.timestamp() + step_s * np.arange(n)


def test_shanghai_day_crossing_every_window() -> None:
    t = bundled("shanghai_ci_two_part")
    ts = minutes(datetime(2026, 7, 15, tzinfo=SH), 1440)
    g = np.full(len(ts), 1_000_000.0)  # 1 MW all day ...
    local_min = np.arange(1440)
    g[(local_min >= 9 * 60) & (local_min < 9 * 60 + 15)] = 2_000_000.0  # ... 2 MW 09:00-09:15
    b = bill(ts, g, t)
    assert len(b.months) == 1
    m = b.months[0]
    kwh = {e.period: e.kwh for e in m.energy}
    assert kwh == pytest.approx({"peak": 6 * 1000 + 250, "flat": 7 * 1000, "valley": 11 * 1000})
    energy = 6250 * 1.010784 + 7000 * 0.662376 + 11000 * 0.372036
    assert m.energy_charge == pytest.approx(energy)
    assert m.demand[0].peak_w == pytest.approx(2_000_000.0)
    assert m.demand[0].peak_start == datetime(2026, 7, 15, 9, tzinfo=SH).timestamp()
    assert m.demand_charge == pytest.approx(2000 * 40.8)
    assert b.total == pytest.approx(energy + 2000 * 40.8)
    assert m.covered_s == 86400.0
    assert (m.start, m.end) == (date(2026, 7, 1), date(2026, 8, 1))


def test_pge_month_with_a_peak_in_a_window_and_one_outside() -> None:
    t = bundled("pge_e20_secondary_2014")
    start = datetime(2014, 7, 1, tzinfo=LA)
    ts = minutes(start, 31 * 1440)
    g = np.full(len(ts), 1_000_000.0)
    i_wed = int((datetime(2014, 7, 16, 15, tzinfo=LA) - start).total_seconds() // 60)
    g[i_wed : i_wed + 15] = 3_000_000.0  # weekday 15:00: inside the summer peak window
    i_sat = int((datetime(2014, 7, 19, 13, tzinfo=LA) - start).total_seconds() // 60)
    g[i_sat : i_sat + 15] = 5_000_000.0  # Saturday 13:00: only the maximum-demand charge sees it
    b = bill(ts, g, t)
    (m,) = b.months
    demand = {d.name: (d.peak_w, d.charge) for d in m.demand}
    assert demand == {
        "maximum demand": (5_000_000.0, pytest.approx(5000 * 11.98)),
        "summer peak": (3_000_000.0, pytest.approx(3000 * 16.37)),
        "summer part-peak": (1_000_000.0, pytest.approx(1000 * 3.56)),
        "winter part-peak": (0.0, 0.0),
    }
    # July 2014: 23 weekdays, one of them (Fri 4th) a holiday -> 22 weekdays, 9 off-peak days
    kwh = {e.period: e.kwh for e in m.energy if e.kwh}
    assert kwh == pytest.approx(
        {
            "summer_peak": 22 * 6000 + 500,
            "summer_part_peak": 22 * 7000,
            "summer_off_peak": 22 * 11000 + 9 * 24000 + 1000,
        }
    )
    assert m.import_kwh == pytest.approx(31 * 24000 + 1500)
    assert math.isnan(next(d for d in m.demand if d.name == "winter part-peak").peak_start)


TWO_MONTHS = """
name = "t"
currency = "XXX"
timezone = "UTC"
billing_day = 15
demand_interval_min = 30
export_price_factor = 0.5
[prices]
p = 0.2
[[energy]]
hours = { "00:00-24:00" = "p" }
[[demand]]
name = "d"
rate = 10.0
[[capacity]]
name = "c"
rate = 2.0
kva = 100.0
[[fixed]]
name = "meter"
per_month = 7.0
"""


def test_billing_day_export_credit_capacity_fixed_and_gaps() -> None:
    t = parse_tariff(tomllib.loads(TWO_MONTHS), "t.toml")
    ts = minutes(datetime(2026, 3, 14, 23, tzinfo=UTC), 120)  # 23:00 on the 14th to 01:00 on the 16th
    g = np.full(120, 60_000.0)
    g[30:60] = -40_000.0  # 23:30-00:00 on the 14th: exporting
    g[60:90] = 100_000.0  # 00:00-00:30 on the 15th: the new month's peak
    g[95:100] = np.nan  # 5 minutes of missing data are not billed
    b = bill(ts, g, t)
    assert [m.start for m in b.months] == [date(2026, 2, 15), date(2026, 3, 15)]
    feb, mar = b.months
    assert feb.import_kwh == pytest.approx(30.0)  # 60 kW for 30 min
    assert feb.export_kwh == pytest.approx(20.0)
    assert feb.export_credit == pytest.approx(20.0 * 0.2 * 0.5)
    assert feb.demand[0].peak_w == pytest.approx(60_000.0)
    assert mar.demand[0].peak_w == pytest.approx(100_000.0)
    assert mar.covered_s == 55 * 60.0
    assert mar.import_kwh == pytest.approx(50.0 + 60.0 * 25 / 60)
    assert feb.capacity_charge == mar.capacity_charge == 200.0
    assert feb.fixed_charge == mar.fixed_charge == 7.0
    assert feb.total == pytest.approx(30 * 0.2 - 2.0 + 60 * 10.0 + 200.0 + 7.0)
    assert b.total == pytest.approx(feb.total + mar.total)


def test_interval_average_uses_covered_time_only() -> None:
    ts = np.array([0.0, 60.0, 120.0, 900.0])
    dt = hold_durations(ts, max_hold_s=60.0)
    assert dt.tolist() == [60.0, 60.0, 60.0, 60.0]  # the 780 s gap is not held
    iv = interval_import(ts, np.array([100.0, 200.0, 300.0, 50.0]), dt, 900.0, ZoneInfo("UTC"))
    assert iv.start.tolist() == [0.0, 900.0]
    assert iv.avg_import_w.tolist() == [200.0, 50.0]
    assert iv.covered_s.tolist() == [180.0, 60.0]


def test_unsorted_timestamps_are_refused() -> None:
    with pytest.raises(ValueError, match="index 2"):
        bill([0.0, 1.0, 1.0], [1.0, 1.0, 1.0], bundled("shanghai_ci_two_part"))


def test_a_month_at_one_second_bills_fast() -> None:
    t = bundled("pge_e20_secondary_2014")
    ts = datetime(2014, 7, 1, tzinfo=LA).timestamp() + np.arange(30 * 86400, dtype=np.float64)
    g = 3e6 + 1e6 * np.sin(ts / 3600.0)
    bill(ts, g, t)
    start = time.perf_counter()
    b = bill(ts, g, t)
    elapsed = time.perf_counter() - start
    # Not a performance target (bench/savings_bench.py measures that): a guard against billing
    # falling back to a per-sample Python loop, which takes about a minute for 2.6 M samples.
    assert elapsed < 5.0
    assert b.months[0].import_kwh == pytest.approx(float(np.sum(g)) / 3.6e6)


def test_analysis_report_compares_without_and_with_battery(tmp_path: Path) -> None:
    t = bundled("shanghai_ci_two_part")
    ts = minutes(datetime(2026, 7, 15, tzinfo=SH), 1440)
    load = np.full(1440, 1_000_000.0)
    load[9 * 60 : 9 * 60 + 15] = 2_000_000.0
    battery = np.zeros(1440)
    battery[9 * 60 : 9 * 60 + 15] = 1_000_000.0  # shave the 09:00 peak (peak price) ...
    battery[2 * 60 : 2 * 60 + 30] = -500_000.0  # ... with energy bought at 02:00 (valley)
    rep = compare(ts, load, load - battery, t, battery, capacity_wh=1e6, degradation_cost_per_kwh=0.1)
    assert rep["baseline"]["peak_kw"] == pytest.approx(2000.0)
    assert rep["battery"]["peak_kw"] == pytest.approx(1500.0)
    s = rep["savings"]
    assert s["energy"] == pytest.approx(250 * (1.010784 - 0.372036))
    assert s["demand"] == pytest.approx(500 * 40.8)
    assert s["net"] == pytest.approx(250 * (1.010784 - 0.372036) + 500 * 40.8 - 25.0)
    assert rep["battery_use"]["equivalent_cycles"] == pytest.approx(0.25)
    assert rep["baseline"]["ramp_max_kw_per_s"] == pytest.approx(1000 / 60)
    assert rep["battery"]["ramp_max_kw_per_s"] == pytest.approx(500 / 60)
    text = table(rep)
    assert "peak demand (kW)" in text and "2,000.00" in text and "1,500.00" in text
    png = plot(ts, load, load - battery, tmp_path / "grid.png")
    assert png.stat().st_size > 1000
