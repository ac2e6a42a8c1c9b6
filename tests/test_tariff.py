"""Tariff format, validation and price look-ups (scalar and vectorised)."""

from __future__ import annotations

import time
import tomllib
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.economics.tariff import TARIFF_DIR, Tariff, bundled, parse_tariff
from common.tomlcheck import ConfigError

SH = ZoneInfo("Asia/Shanghai")
LA = ZoneInfo("America/Los_Angeles")
TO = ZoneInfo("America/Toronto")

BASE = """
name = "t"
currency = "XXX"
timezone = "UTC"
[prices]
hi = 2.0
lo = 1.0
"""


def tariff(text: str) -> Tariff:
    return parse_tariff(tomllib.loads(text), "t.toml")


def test_every_bundled_tariff_loads() -> None:
    names = sorted(p.stem for p in TARIFF_DIR.glob("*.toml"))
    assert names == [
        "ontario_rpp_tou_2023",
        "pge_e20_secondary_2014",
        "shanghai_ci_two_part",
        "shanghai_ci_two_part_capacity",
    ]
    for n in names:
        assert bundled(n).source


def test_shanghai_day_crosses_every_window() -> None:
    t = bundled("shanghai_ci_two_part")
    day = datetime(2026, 7, 15, tzinfo=SH)
    expect = {
        (0, 0): 0.372036,
        (7, 59): 0.372036,
        (8, 0): 1.010784,
        (10, 59): 1.010784,
        (11, 0): 0.662376,
        (17, 59): 0.662376,
        (18, 0): 1.010784,
        (20, 59): 1.010784,
        (21, 0): 0.372036,
        (23, 59): 0.372036,
    }
    for (h, m), price in expect.items():
        at = day.replace(hour=h, minute=m)
        assert t.energy_price(at) == price, at
        assert t.demand_rate(at) == 40.8
    assert t.period_at(day.replace(hour=9)) == "peak"
    assert t.billing_month(date(2026, 7, 31)) == date(2026, 7, 1)
    cap = bundled("shanghai_ci_two_part_capacity")
    assert cap.demand_rate(day) == 0.0
    assert cap.capacity[0].per_month == 25.5 * 8000.0


def test_pge_e20_windows_seasons_and_holidays() -> None:
    t = bundled("pge_e20_secondary_2014")
    wed = datetime(2014, 7, 16, tzinfo=LA)  # summer weekday
    assert t.demand_rate(wed.replace(hour=13)) == pytest.approx(16.37 + 11.98)
    assert t.demand_rate(wed.replace(hour=9)) == pytest.approx(3.56 + 11.98)
    assert t.demand_rate(wed.replace(hour=20, minute=59)) == pytest.approx(3.56 + 11.98)
    assert t.demand_rate(wed.replace(hour=21)) == 11.98
    assert t.energy_price(wed.replace(hour=13)) == 0.14688
    assert t.energy_price(wed.replace(hour=7, minute=59)) == 0.07633
    sat = datetime(2014, 7, 19, 13, tzinfo=LA)
    assert t.demand_rate(sat) == 11.98
    assert t.energy_price(sat) == 0.07633
    july4 = datetime(2014, 7, 4, 13, tzinfo=LA)  # a Friday, a holiday
    assert t.demand_rate(july4) == 11.98
    assert t.period_at(july4) == "summer_off_peak"
    winter = datetime(2014, 1, 15, 10, tzinfo=LA)
    assert t.demand_rate(winter) == pytest.approx(0.23 + 11.98)
    assert t.energy_price(winter) == 0.09721
    assert t.demand_mask(winter) == 0b1001  # max demand + winter part-peak
    # the same instant given in UTC prices the same
    assert t.energy_price(wed.replace(hour=13).astimezone(UTC)) == 0.14688


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        bundled("shanghai_ci_two_part").energy_price(datetime(2026, 1, 1, 9))


def test_vectorised_matches_scalar_across_dst() -> None:
    t = bundled("ontario_rpp_tou_2023")
    # 2024-03-10 02:00 EST -> EDT; a week of 7-minute steps around it, plus a holiday (2024-02-19)
    start = datetime(2024, 3, 7, tzinfo=TO).timestamp()
    ts = np.arange(start, start + 7 * 86400, 420.0)
    ts = np.concatenate(([datetime(2024, 2, 19, 9, tzinfo=TO).timestamp()], ts))
    scalar = [t.energy_price(datetime.fromtimestamp(x, TO)) for x in ts]
    assert t.energy_prices(ts).tolist() == scalar
    assert scalar[0] == 0.087  # Family Day is off-peak all day
    # on 2024-03-11 (EDT) 07:00 local is on-peak; in UTC that is 11:00, not 12:00
    x = datetime(2024, 3, 11, 11, 0, tzinfo=UTC).timestamp()
    assert t.energy_prices([x - 60, x]).tolist() == [0.087, 0.182]
    pge = bundled("pge_e20_secondary_2014")
    ts2 = np.arange(
        datetime(2014, 4, 28, tzinfo=LA).timestamp(), datetime(2014, 5, 6, tzinfo=LA).timestamp(), 600.0
    )
    assert pge.demand_rates(ts2).tolist() == [pge.demand_rate(datetime.fromtimestamp(x, LA)) for x in ts2]


def test_minute_boundaries_and_wrapping_ranges() -> None:
    t = tariff(BASE + '[[energy]]\nhours = { "08:30-11:15" = "hi", "11:15-08:30" = "lo" }\n')
    d = datetime(2026, 1, 5, tzinfo=UTC)
    assert t.energy_price(d.replace(hour=8, minute=29)) == 1.0
    assert t.energy_price(d.replace(hour=8, minute=30)) == 2.0
    assert t.energy_price(d.replace(hour=11, minute=14)) == 2.0
    assert t.energy_price(d.replace(hour=11, minute=15)) == 1.0


def test_billing_day_rolls_the_month() -> None:
    t = tariff(BASE.replace('timezone = "UTC"', 'timezone = "UTC"\nbilling_day = 15') + BASE_ALL_DAY)
    assert t.billing_month(date(2026, 3, 14)) == date(2026, 2, 15)
    assert t.billing_month(date(2026, 3, 15)) == date(2026, 3, 15)
    assert t.billing_month(date(2026, 1, 2)) == date(2025, 12, 15)
    assert t.next_billing_month(date(2025, 12, 15)) == date(2026, 1, 15)


BASE_ALL_DAY = '[[energy]]\nhours = { "00:00-24:00" = "lo" }\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            BASE + '[[energy]]\nhours = { "00:00-12:00" = "lo", "11:00-24:00" = "hi" }\n',
            r"t.toml \[\[energy\]\] #1 \[hours\]: key '11:00-24:00' overlaps .*'00:00-12:00' at 11:00-12:00",
        ),
        (
            BASE + '[[energy]]\nhours = { "00:00-12:00" = "lo", "13:00-23:00" = "hi" }\n',
            r"t.toml: \[\[energy\]\] leaves hours 12:00-13:00, 23:00-24:00 without a price",
        ),
        (
            BASE + '[[energy]]\ndays = ["weekday"]\nhours = { "00:00-24:00" = "lo" }\n',
            r"leaves hours 00:00-24:00 without a price \(season 'all', weekend\)",
        ),
        (BASE.replace("lo = 1.0", "lo = -1.0") + BASE_ALL_DAY, r"\[prices\]: key 'lo' must be >= 0"),
        ("colour = 1\n" + BASE + BASE_ALL_DAY, r"t.toml: unknown key\(s\) 'colour'"),
        (
            BASE + '[[energy]]\nhours = { "00:00-24:00" = "mid" }\n',
            r"'00:00-24:00' must be one of hi, lo",
        ),
        (BASE + '[[energy]]\nhours = { "00:00-25:00" = "lo" }\n', r"key '00:00-25:00' .*invalid time of day"),
        (BASE + '[[energy]]\nhours = { "08:00-08:00" = "lo" }\n', r"key '08:00-08:00' .*is empty"),
        (BASE + '[[season]]\nname = "s"\nmonths = "1-11"\n' + BASE_ALL_DAY, r"leaves month\(s\) 12 without"),
        (
            BASE + '[[season]]\nname = "a"\nmonths = "1-6"\n[[season]]\nname = "b"\nmonths = "6-12"\n',
            r"\[\[season\]\] #2: key 'months' month 6 is already in season 'a'",
        ),
        (BASE + BASE_ALL_DAY + '[[demand]]\nname = "d"\nrate = 1\ndays = ["sunday"]\n', r"unknown day type"),
        (
            BASE + BASE_ALL_DAY + '[[demand]]\nname = "d"\nrate = -3\n',
            r"\[\[demand\]\] #1: key 'rate' must be >=",
        ),
        (BASE.replace('"UTC"', '"Mars/Olympus"') + BASE_ALL_DAY, r"key 'timezone' is not a known IANA"),
        ('holidays = ["2026-13-01"]\n' + BASE + BASE_ALL_DAY, r"key 'holidays' has '2026-13-01'"),
    ],
)
def test_errors_name_file_table_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tariff(text)


def test_scalar_lookups_are_fast() -> None:
    t = bundled("pge_e20_secondary_2014")
    t0 = datetime(2014, 7, 1, tzinfo=LA)
    times = [t0 + timedelta(seconds=17 * i) for i in range(100_000)]
    start = time.perf_counter()
    for x in times:
        t.energy_price(x)
        t.demand_rate(x)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0  # ~0.5 us per call here: 2.6 M calls of a month replay take about a second
