"""The benches' tariff by name: their own fixtures (made up to test the policy off the tariffs it was
tuned on) parse with the agent's own tariff reader, and a bundled name still resolves."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from bench_tariff import BENCH_TARIFFS, tariff


def test_the_us_test_fixture_is_a_tou_tariff_with_a_weekday_window_on_new_york_hours() -> None:
    t = tariff("us_test_tou_demand")
    assert str(t.timezone) == "America/New_York"
    assert t.currency == "USD"
    assert [(d.name, d.rate) for d in t.demand] == [("maximum demand", 9.5), ("on-peak demand", 18.0)]


def test_every_bench_fixture_parses() -> None:
    names = [p.stem for p in BENCH_TARIFFS.glob("*.toml")]
    assert names
    for n in names:
        assert tariff(n).demand


def test_a_bundled_tariff_resolves_and_an_unknown_name_lists_the_known_ones() -> None:
    assert tariff("pge_e20_secondary_2014").currency == "USD"
    with pytest.raises(ValueError, match=r"no tariff 'nope'.*shanghai_ci_two_part.*us_test_tou_demand"):
        tariff("nope")
