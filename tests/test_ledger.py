"""Realized-savings ledger: exact savings of a known series, exclusions, outages, restarts."""

from __future__ import annotations

import sqlite3
import tomllib
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.economics.ledger import Ledger, LedgerSample, LedgerSink, sample_from_snapshot
from agent.economics.roi import EconomicsConfig
from agent.economics.tariff import Tariff, parse_tariff
from agent.live.runtime import _seed_state, ledger_ring
from agent.model.config import load_site
from agent.model.snapshot import Measured, PcsSnapshot, PcsStatus, SiteSnapshot

TARIFF = """
name = "ledger test"
currency = "XXX"
timezone = "UTC"
demand_interval_min = 15
[prices]
cheap = 0.1
dear = 0.5
[[energy]]
hours = { "00:00-00:30" = "cheap", "00:30-24:00" = "dear" }
[[demand]]
name = "any time"
rate = 10.0
"""
T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
DEMO = Path(__file__).resolve().parents[1] / "agent" / "sites" / "demo.toml"
CFG = EconomicsConfig(
    degradation_cost_per_kwh=0.02, outage_value_per_min=3.0, min_coverage=0.9, max_hold_s=5.0
)


def tariff() -> Tariff:
    return parse_tariff(tomllib.loads(TARIFF), "t.toml")


def series() -> list[LedgerSample]:
    """One hour at 1 s, four 15-min intervals, then one sample at 01:00 that closes the last."""
    out = []
    for k in range(3601):
        t = T0 + k
        if k < 900:  # 00:00-00:15, cheap: charging 10 kW; grid 90 kW, baseline 80 kW
            out.append(LedgerSample(t, 90_000.0, -10_000.0, 80_000.0, True, True, True))
        elif k < 1800:  # 00:15-00:30: 200 s of grid meter missing -> excluded (78 % coverage)
            out.append(LedgerSample(t, 100_000.0, 0.0, 100_000.0, True, k >= 1000, True))
        elif k < 2700:  # 00:30-00:45, dear: discharging 40 kW; grid 60 kW, baseline 100 kW
            out.append(LedgerSample(t, 60_000.0, 40_000.0, 100_000.0, True, True, True))
        else:  # 00:45-01:00: grid outage, the battery carries the 50 kW load
            out.append(LedgerSample(t, 0.0, 50_000.0, 50_000.0, False, True, True))
    return out


def check_full_hour(led: Ledger) -> None:
    (m,) = led.months()
    assert m.label == "2026-01-01"
    assert m.energy_savings == pytest.approx((20.0 - 22.5) * 0.1 + (25.0 - 15.0) * 0.5)
    (d,) = m.demand
    assert d.baseline_peak_w == pytest.approx(100_000.0)
    assert d.actual_peak_w == pytest.approx(90_000.0)
    assert m.demand_savings == pytest.approx(10.0 * 10.0)
    assert m.degradation_cost == pytest.approx((10.0 + 12.5) * 0.02)
    assert m.outage_value == pytest.approx(15 * 3.0)
    assert m.net_savings == pytest.approx(4.75 + 100.0 + 45.0 - 0.45)
    assert m.discharge_kwh == pytest.approx(22.5)
    assert m.charge_kwh == pytest.approx(2.5)
    assert (m.counted_s, m.excluded_s, m.intervals, m.excluded_intervals) == (2700.0, 900.0, 4, 1)
    day = led.day(date(2026, 1, 1))
    assert day.energy_savings == pytest.approx(4.75)
    assert day.demand_savings == 0.0
    assert led.to_date().net_savings == pytest.approx(149.3)
    assert led.month_peaks(date(2026, 1, 1)) == {10.0: pytest.approx(90_000.0)}


def test_known_series_gives_exact_savings(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    closed = [c for s in series() for c in led.feed(s)]
    assert closed == [T0, T0 + 900, T0 + 1800, T0 + 2700]
    check_full_hour(led)
    assert led.span() == (T0, T0 + 3600)
    led.close()


def test_the_last_days_baseline_per_interval_seeds_a_restarted_controller(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    assert all(v != v for v in led.day_profile(T0, UTC))  # nothing counted: all NaN, no seed
    for s in series():
        led.feed(s)
    prof = led.day_profile(T0 + 3601.0, UTC)
    assert len(prof) == 96
    # 00:15-00:30 was excluded (coverage) and 00:45-01:00 was an outage: no level to shave to
    assert [v != v for v in prof[:4]] == [False, True, False, True]
    assert (prof[0], prof[2]) == (pytest.approx(80_000.0), pytest.approx(100_000.0))
    assert all(v != v for v in prof[4:])
    assert all(v != v for v in led.day_profile(T0 + 86_400.0 + 3600.0, UTC))  # more than a day ago
    led.close()


def test_the_last_weeks_baseline_seeds_a_restarted_controllers_ring(tmp_path: Path) -> None:
    """The levels are priced and held on the last days (demand.held_days): a restart takes them from
    the ledger (runtime.ledger_ring), laid out as the running controller keeps them (envelope.ring_of)."""
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for s in series():
        led.feed(s)
    site = replace(load_site(DEMO), timezone=ZoneInfo("UTC"))  # the ledger's tariff's zone
    row = date(2026, 1, 1).toordinal() % 7 * 96  # the day's row of the ring
    later = datetime.fromtimestamp(T0 + 3 * 86_400.0, UTC)
    ring = ledger_ring(led, later, UTC)
    assert len(ring) == 7 * 96
    assert (ring[row], ring[row + 2]) == (pytest.approx(80_000.0), pytest.approx(100_000.0))
    assert sum(v == v for v in ring) == 2  # the excluded interval and the outage are not the load's level
    st = _seed_state(site, tariff(), led, later).interval
    assert [v if v == v else None for v in st.past] == [v if v == v else None for v in ring]
    assert st.profile == ()  # nothing in the last 24 h: no profile, the week still seeds
    gone = datetime.fromtimestamp(T0 + 7 * 86_400.0 + 3600.0, UTC)  # the hour is more than a week ago
    assert all(v != v for v in ledger_ring(led, gone, UTC))
    assert _seed_state(site, tariff(), led, gone).interval.past == ()
    led.close()


def test_restart_and_replay_neither_loses_nor_double_counts(tmp_path: Path) -> None:
    samples = series()
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for s in samples[:2000]:  # stop at 00:33:20, in the middle of the third interval
        led.feed(s)
    assert led.to_date().intervals == 2
    led.close()
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for s in samples:  # replay everything from the start
        led.feed(s)
    assert led.duplicates == 2
    check_full_hour(led)
    led.close()
    led = Ledger(tmp_path / "l.db", tariff(), CFG)  # and once more: nothing changes
    for s in samples:
        led.feed(s)
    assert led.duplicates == 4
    check_full_hour(led)
    led.close()


def test_a_crash_loses_only_the_interval_in_progress(tmp_path: Path) -> None:
    samples = series()
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for s in samples[:2000]:
        led.feed(s)
    led.db.close()  # killed: Ledger.close() never ran
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for s in samples[2000:]:  # resumes at 00:33:20: the third interval has 700 s of data
        led.feed(s)
    m = led.to_date()
    assert (m.intervals, m.excluded_intervals, m.counted_s) == (4, 2, 1800.0)
    assert m.energy_savings == pytest.approx(-0.25)
    assert m.outage_value == pytest.approx(45.0)
    led.close()


def test_a_clean_stop_mid_interval_resumes_it(tmp_path: Path) -> None:
    samples = series()
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for s in samples[:2000]:  # stop at 00:33:19 (the last sample fed), mid third interval
        led.feed(s)
    led.close()
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for s in samples[2000:]:
        led.feed(s)
    m = led.to_date()
    # the third interval: 00:30:00-00:33:19 before the stop (the last sample's second is not held:
    # no sample followed it), 00:33:20-00:45:00 after: 899 s covered of 900 -> counted
    (cov,) = led.db.execute("SELECT covered_s FROM intervals WHERE start = ?", (T0 + 1800,)).fetchone()
    assert cov == 899.0
    assert (m.intervals, m.excluded_intervals, m.counted_s) == (4, 1, 2700.0)
    assert m.energy_savings == pytest.approx(-0.25 + 40.0 * 899 / 3600 * 0.5)
    assert m.lost_s == 0.0
    led.close()


def test_a_stop_across_intervals_closes_the_resumed_one_and_reports_the_time_lost(tmp_path: Path) -> None:
    samples = series()
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for s in samples[:1890]:  # stop at 00:31:29: 89 s of the third interval recorded
        led.feed(s)
    led.close()
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for k in range(901):  # back at 01:00:00 after the fourth interval passed unseen; 15 min more
        led.feed(LedgerSample(T0 + 3600 + k, 60_000.0, 40_000.0, 100_000.0, True, True, True))
    m = led.to_date()
    # the third interval is closed with its 89 s (excluded); the fourth was never recorded: lost
    assert (m.intervals, m.excluded_intervals, m.counted_s, m.excluded_s) == (4, 2, 1800.0, 1800.0)
    assert m.lost_s == 900.0
    assert led.report(2, 1)["roi"]["lost_h"] == 0.25
    led.close()


def test_gaps_beyond_the_hold_time_are_missing_data(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for k in list(range(0, 600)) + list(range(660, 901)):  # a 60 s hole: only 5 s of it is held
        led.feed(LedgerSample(T0 + k, 10_000.0, 0.0, 10_000.0, True, True, True))
    (m,) = led.months()
    assert m.intervals == 1
    assert m.counted_s == 900.0  # 599 + 5 + 240 = 844 s covered >= 90 %: counted, with its real length
    row = led.db.execute("SELECT covered_s, actual_import_wh FROM intervals").fetchone()
    assert row == (pytest.approx(844.0), pytest.approx(10_000.0 * 844 / 3600))
    led.close()


def test_clock_going_back_does_not_count_negative_time(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for k in [*range(0, 500), *range(100, 901)]:
        led.feed(LedgerSample(T0 + k, 10_000.0, 0.0, 10_000.0, True, True, True))
    row = led.db.execute("SELECT covered_s FROM intervals").fetchone()
    assert row[0] == pytest.approx(800.0)  # the interval restarted at 100 s: 800 s covered
    led.close()


def test_sink_reads_the_snapshot(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    pcs = (
        PcsSnapshot("p1", ("c1",), PcsStatus.ONLINE, 500_000.0, power_w=Measured(30_000.0)),
        PcsSnapshot("p2", ("c2",), PcsStatus.ONLINE, 500_000.0, power_w=Measured(10_000.0)),
    )
    snap = SiteSnapshot(
        seq=1,
        t_mono=0.0,
        t_wall=datetime(2026, 1, 1, 0, 30, tzinfo=UTC),
        grid_w=Measured(60_000.0),
        load_w=Measured(100_000.0),
        pv_w=Measured(0.0),
        grid_up=True,
        clusters=(),
        pcs=pcs,
    )
    s = sample_from_snapshot(snap)
    assert s == LedgerSample(T0 + 1800, 60_000.0, 40_000.0, 100_000.0, True, True, True, True)
    bad = SiteSnapshot(
        seq=2,
        t_mono=1.0,
        t_wall=snap.t_wall,
        grid_w=Measured.missing(),
        load_w=Measured(100_000.0),
        pv_w=Measured(0.0),
        grid_up=True,
        clusters=(),
        pcs=(pcs[0], PcsSnapshot("p2", ("c2",), PcsStatus.FAULT, 500_000.0)),
    )
    b = sample_from_snapshot(bad)
    assert (b.grid_ok, b.battery_ok) == (False, False)

    class Rec:
        snapshot = snap

    LedgerSink(led).submit(Rec())
    assert led._prev == s
    led.close()


def test_report_has_roi(tmp_path: Path) -> None:
    cfg = EconomicsConfig(
        degradation_cost_per_kwh=0.02,
        outage_value_per_min=3.0,
        capex_per_cluster=1000.0,
        min_coverage=0.9,
        max_hold_s=5.0,
    )
    led = Ledger(tmp_path / "l.db", tariff(), cfg)
    for s in series():
        led.feed(s)
    rep = led.report(clusters=2, pcs=1)
    assert rep["savings_to_date"] == pytest.approx(149.3)
    r = rep["roi"]
    assert r["capex"] == 2000.0
    assert r["realized_savings"] == pytest.approx(149.3)
    # one hour is not a year's evidence: no annual figure, no NPV of minus the capex
    assert r["status"] == "not_enough_data"
    assert (r["annual_savings"], r["npv"], r["irr"], r["simple_payback_years"]) == (None, None, None, None)
    assert r["estimate"]["note"] == "not enough data yet: 0.8 h of the 24 h needed counted"
    assert (r["excluded_h"], r["lost_h"], r["uncovered_h"]) == (0.25, 0.0, 0.0)
    led.close()


def test_month_rolls_over_on_the_billing_day(tmp_path: Path) -> None:
    t = parse_tariff(
        tomllib.loads(
            TARIFF.replace("demand_interval_min = 15", "demand_interval_min = 15\nbilling_day = 2")
        ),
        "t.toml",
    )
    led = Ledger(tmp_path / "l.db", t, CFG)
    start = datetime(2026, 1, 1, 23, 45, tzinfo=UTC).timestamp()
    for k in range(1801):  # 23:45 on the 1st to 00:15 on the 2nd; 50 kW shaved by 10 kW, then 20 kW
        bat = 10_000.0 if k < 900 else 20_000.0
        led.feed(LedgerSample(start + k, 50_000.0 - bat, bat, 50_000.0, True, True, True))
    dec, jan = led.months()
    assert (dec.label, jan.label) == ("2025-12-02", "2026-01-02")
    assert dec.demand_savings == pytest.approx(10.0 * 10.0)  # each month bills its own peaks
    assert jan.demand_savings == pytest.approx(10.0 * 20.0)
    assert led.to_date().demand_savings == pytest.approx(300.0)
    assert [d.label for d in led.days()] == ["2026-01-01", "2026-01-02"]
    led.close()


def test_an_unreadable_pending_interval_is_dropped_not_fatal(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.db", tariff(), CFG)
    for s in series()[:100]:
        led.feed(s)
    led.close()
    db = sqlite3.connect(tmp_path / "l.db")
    db.execute("UPDATE pending SET acc = '{\"start\": \"x\"'")
    db.commit()
    db.close()
    led = Ledger(tmp_path / "l.db", tariff(), CFG)  # opens; the interval in progress is gone
    for s in series()[100:1000]:
        led.feed(s)
    (row,) = led.db.execute("SELECT covered_s FROM intervals").fetchall()
    assert row == (800.0,)  # 00:01:40-00:15:00 (the first 100 s went with the pending row)
    led.close()
