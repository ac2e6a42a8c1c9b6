"""One demand-interval alignment (agent.model.interval) for control, ledger and billing, and the
site file's interval checked against the tariff's."""

from __future__ import annotations

import tomllib
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.economics.billing import bill
from agent.economics.ledger import Ledger, LedgerSample
from agent.economics.roi import EconomicsConfig
from agent.economics.tariff import parse_tariff
from agent.model.config import load_site
from agent.model.interval import interval_bounds, interval_starts, local_slot
from common.tomlcheck import ConfigError
from tests.test_config import MINIMAL, write

KOLKATA = ZoneInfo("Asia/Kolkata")  # UTC+5:30: hourly intervals from local midnight are not Unix-aligned
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("local", "tz", "length", "start"),
    [
        ("2026-07-15T10:20:00", KOLKATA, 3600.0, "2026-07-15T10:00:00"),
        ("2026-07-15T10:59:59", KOLKATA, 3600.0, "2026-07-15T10:00:00"),
        ("2026-07-15T10:20:00", KOLKATA, 900.0, "2026-07-15T10:15:00"),
        ("2026-03-29T03:10:00", BERLIN, 900.0, "2026-03-29T03:00:00"),  # the day clocks go forward
        # 7 h intervals do not divide a day: the last one of the day is cut at midnight
        ("2026-07-15T23:30:00", KOLKATA, 7 * 3600.0, "2026-07-15T21:00:00"),
    ],
)
def test_the_three_forms_agree_on_local_midnight_alignment(
    local: str, tz: ZoneInfo, length: float, start: str
) -> None:
    t = datetime.fromisoformat(local).replace(tzinfo=tz)
    want = datetime.fromisoformat(start).replace(tzinfo=tz).timestamp()
    _, slot, into, iv_len = local_slot(t, length)
    assert t.timestamp() - into == want
    lo, hi = interval_bounds(t.timestamp(), tz, length)
    assert lo == want and hi == want + iv_len
    assert interval_starts(np.array([t.timestamp()]), tz, length).tolist() == [want]
    if length == 7 * 3600.0:
        assert (slot, iv_len) == (3, 3 * 3600.0)


def test_vectorised_starts_match_the_scalar_rule_over_a_dst_change() -> None:
    t0 = datetime(2026, 10, 24, 22, 0, tzinfo=BERLIN).timestamp()  # clocks go back on the 25th
    ts = t0 + np.arange(0.0, 2 * 86400.0, 97.0)
    got = interval_starts(ts, BERLIN, 900.0)
    assert got.tolist() == [interval_bounds(float(t), BERLIN, 900.0)[0] for t in ts]


TARIFF = """
name = "hourly"
currency = "INR"
timezone = "Asia/Kolkata"
demand_interval_min = 60
[prices]
p = 10.0
[[energy]]
hours = { "00:00-24:00" = "p" }
[[demand]]
name = "all"
rate = 300.0
"""


def test_billing_and_ledger_count_the_local_hour() -> None:
    tariff = parse_tariff(tomllib.loads(TARIFF), "hourly.toml")
    # 10:00-11:00 local at 2 MW, the rest at 1 MW; a Unix-aligned hour (10:30-11:30 local) averages 1.5 MW
    t0 = datetime(2026, 7, 15, 9, 0, tzinfo=KOLKATA).timestamp()
    ts = t0 + np.arange(0.0, 3 * 3600.0, 60.0)
    grid = np.where((ts >= t0 + 3600.0) & (ts < t0 + 7200.0), 2e6, 1e6)
    b = bill(ts, grid, tariff)
    assert [d.peak_w for m in b.months for d in m.demand] == [2e6]
    assert [d.peak_start for m in b.months for d in m.demand] == [t0 + 3600.0]


def test_ledger_closes_intervals_at_the_local_hour(tmp_path: Path) -> None:
    tariff = parse_tariff(tomllib.loads(TARIFF), "hourly.toml")
    led = Ledger(tmp_path / "l.db", tariff, EconomicsConfig())
    t0 = datetime(2026, 7, 15, 9, 0, tzinfo=KOLKATA).timestamp()
    closed: list[float] = []
    for k in range(0, 3 * 3600 + 60, 60):
        closed += led.feed(LedgerSample(t0 + k, 1e6, 0.0, 1e6, True, True, True))
    led.close()
    assert closed == [t0, t0 + 3600.0, t0 + 7200.0]


def test_a_site_whose_interval_disagrees_with_its_tariff_is_refused(tmp_path: Path) -> None:
    text = MINIMAL.replace('id = "t"', 'id = "t"\ntariff = "shanghai_ci_two_part"')
    text += "[control]\ndemand_interval_s = 1800\n"
    why = r"\[control\] demand_interval_s = 1800 s disagrees .*demand_interval_min = 15 min"
    with pytest.raises(ConfigError, match=why):
        load_site(write(tmp_path, text))
    ok = text.replace("demand_interval_s = 1800", "demand_interval_s = 900")
    assert load_site(write(tmp_path, ok)).control.demand_interval_s == 900.0


def test_every_instant_of_an_interval_gives_the_same_bounds() -> None:
    # cycles at arbitrary fractions of a second (the live loop's wall clock): one start, exactly
    rng = np.random.default_rng(1)
    t0 = datetime(2026, 7, 15, 10, 0, tzinfo=BERLIN).timestamp()
    starts = {interval_bounds(float(t), BERLIN, 900.0) for t in t0 + rng.uniform(0.0, 899.9999, 20_000)}
    assert starts == {(t0, t0 + 900.0)}


def test_the_ledger_closes_each_interval_once_at_fractional_cycle_times(tmp_path: Path) -> None:
    tariff = parse_tariff(tomllib.loads(TARIFF), "hourly.toml")
    led = Ledger(tmp_path / "l.db", tariff, EconomicsConfig())
    t0 = datetime(2026, 7, 15, 9, 0, tzinfo=KOLKATA).timestamp()
    closed: list[float] = []
    for t in t0 + np.cumsum(np.full(11_000, 0.987654321)):
        closed += led.feed(LedgerSample(float(t), 1e6, 0.0, 1e6, True, True, True))
    led.close()
    assert closed == [t0, t0 + 3600.0, t0 + 7200.0]
