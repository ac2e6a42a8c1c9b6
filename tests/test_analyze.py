"""Offline analysis: the replay engine on hand-computed traces, and `ems-agent analyze` end to end."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tomllib
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.cli.analyze import read_csv
from agent.control.fleet import FleetMemo, build_fleet
from agent.economics.billing import bill
from agent.economics.roi import EconomicsConfig
from agent.economics.tariff import Tariff, bundled, parse_tariff
from agent.model.config import ControlConfig, SiteConfig, load_site
from agent.offline.replay import Replay, Trace, day_profile, evaluate, replay, site_for
from common.tomlcheck import ConfigError
from tests.test_control_support import snap

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "agent" / "sites" / "demo.toml"
TZ = ZoneInfo("Asia/Shanghai")
MIDNIGHT = datetime(2026, 7, 15, tzinfo=TZ).timestamp()


def flat_tariff() -> Tariff:
    return parse_tariff(
        tomllib.loads(
            'name = "flat"\ncurrency = "XXX"\ntimezone = "Asia/Shanghai"\n[prices]\np = 0.5\n'
            '[[energy]]\nhours = { "00:00-24:00" = "p" }\n[[demand]]\nname = "max"\nrate = 10.0\n'
        ),
        "flat.toml",
    )


def demo(clusters: int = 12, **control: float | bool) -> SiteConfig:
    site = load_site(DEMO).with_clusters(clusters)
    base = ControlConfig(soc_min_pct=20.0, soc_max_pct=95.0, degradation_cost_per_kwh=0.15)
    return replace(site, control=replace(base, **control))  # type: ignore[arg-type]


def test_zero_clusters_leave_the_bill_unchanged() -> None:
    ts = MIDNIGHT + 60.0 * np.arange(240, dtype=np.float64)  # 4 h at 1 min
    load = 3e6 + 1e6 * np.sin(np.arange(240) / 7.0)
    tariff = bundled("shanghai_ci_two_part")
    r = replay(demo(0), tariff, Trace(ts, load))
    assert r.battery_w.tolist() == [0.0] * 240
    assert r.grid_w.tolist() == load.tolist()
    assert r.capacity_wh == 0.0
    assert r.alarms == {"no_battery_available": 240}
    rep = evaluate(demo(0), tariff, r, EconomicsConfig(), 0.0)
    assert rep["battery"]["bill"]["total"] == rep["baseline"]["bill"]["total"]
    assert rep["savings"]["net"] == 0.0
    assert rep["optimum"] is None  # nothing to optimise without a battery


def test_a_demand_peak_shaved_by_hand() -> None:
    # 15-min steps of 600 / 900 / 600 / 600 kW, a fixed demand target of 800 kW (aimed 1 % under:
    # 792 kW), flat 0.5 per kWh and 10 per kW-month, TOU off. Step 2: discharge 900 - 792 = 108 kW
    # for 0.25 h = 27 kWh, which leaves the fleet 27 / 0.96 = 28.125 kWh lower: under the 1 % (50 kWh)
    # balancing dead band, so the other steps stay at 0 W.
    # Baseline: 0.25 x 2700 x 0.5 + 900 x 10 = 9337.5; battery: 0.25 x 2592 x 0.5 + 792 x 10 = 8244.
    ts = MIDNIGHT + 900.0 * np.arange(4, dtype=np.float64)
    load = np.array([600e3, 900e3, 600e3, 600e3])
    site = demo(12, demand_target_w=800e3, tou_enabled=False)
    # one decision per 15-min step, as the figures above assume (`max_hold_s`: no sub-steps)
    r = replay(site, flat_tariff(), Trace(ts, load), max_hold_s=900.0)
    assert r.battery_w.tolist() == pytest.approx([0.0, 108e3, 0.0, 0.0], abs=1e-3)
    assert r.grid_w.tolist() == pytest.approx([600e3, 792e3, 600e3, 600e3], abs=1e-3)
    assert r.start_wh - r.end_wh == pytest.approx(27e3 / 0.96, abs=1e-3)
    rep = evaluate(site, flat_tariff(), r, EconomicsConfig(degradation_cost_per_kwh=0.15), 0.0)
    assert rep["baseline"]["bill"]["total"] == pytest.approx(9337.5)
    assert rep["battery"]["bill"]["total"] == pytest.approx(8244.0, abs=1e-6)
    assert rep["baseline"]["peak_kw"] == pytest.approx(900.0)
    assert rep["battery"]["peak_kw"] == pytest.approx(792.0, abs=1e-6)
    assert rep["battery_use"]["discharge_kwh"] == pytest.approx(27.0, abs=1e-6)
    assert rep["savings"]["net"] == pytest.approx(9337.5 - 8244.0 - 27.0 * 0.15, abs=1e-6)
    # an hour of trace is no year's evidence: the report says so instead of an NPV
    assert rep["annual_estimate"]["basis"] == "not_enough_data"
    assert (rep["roi"]["annual_savings"], rep["roi"]["npv"], rep["roi"]["irr"]) == (None, None, None)
    # the optimum ending at the same stored energy can shave to 750 kW (average of 900 and 600
    # would need more energy than is allowed out); it is at least as good as the controller
    assert rep["optimum"]["savings"] >= rep["savings"]["net"] - 1e-6
    assert 0.0 < rep["optimum"]["controller_share"] <= 1.0 + 1e-9


def test_a_ramp_limit_holds_the_grid_through_a_load_step() -> None:
    # 1-s steps, the load jumps by 1 MW once; limit 200 kW/s. Without the battery one second is
    # over the limit; with it the grid climbs 200 kW per second and none is.
    n = 60
    ts = MIDNIGHT + 12 * 3600.0 + np.arange(n, dtype=np.float64)
    load = np.where(np.arange(n) < 20, 3e6, 4e6)
    site = demo(12, ramp_limit_w_per_s=200e3, tou_enabled=False)
    # no seeded day profile: with no demand history the shaver holds back and only the ramp acts
    r = replay(site, flat_tariff(), Trace(ts, load), seed_profile=False)
    steps = np.abs(np.diff(r.grid_w))
    # within the limit but for the PCS's first-order lag (tau 0.1 s): e^-10 of the 1 MW step is left over
    assert steps.max() <= 200e3 + 1e6 * math.exp(-10.0)
    assert r.grid_w[-1] == pytest.approx(4e6, abs=1.0)  # back on the load once the ramp caught up
    rep = evaluate(site, flat_tariff(), r, EconomicsConfig(), 200e3, with_optimum=False)
    assert rep["baseline"]["ramp_over_limit_s"] == 1.0
    assert rep["baseline"]["ramp_over_limit_share"] == pytest.approx(1.0 / n)
    assert rep["battery"]["ramp_over_limit_s"] == float(np.sum(steps > 200e3))
    assert rep["battery"]["ramp_max_kw_per_s"] < 200.05


def test_day_profile_is_the_first_days_interval_means_from_local_midnight() -> None:
    # starts at 06:00 local, 5-min steps over two days; load = 1 kW x the 15-min slot of the day,
    # plus 1 MW on the second day (which must not count). Slot 24 (06:00) is the first one seen.
    ts = MIDNIGHT + 6 * 3600.0 + 300.0 * np.arange(2 * 288, dtype=np.float64)
    local_slot = ((ts - MIDNIGHT) % 86400.0) // 900.0
    load = 1000.0 * local_slot + np.where(ts >= MIDNIGHT + 6 * 3600.0 + 86400.0, 1e6, 0.0)
    prof = day_profile(Trace(ts, load), 900.0, TZ)
    assert prof == [1000.0 * k for k in range(96)]
    short = day_profile(Trace(ts[:3], load[:3]), 900.0, TZ)  # one interval only: the rest unknown
    assert short[24] == 24000.0
    assert sum(1 for v in short if v != v) == 95


def test_site_for_overrides_clusters_and_ramp_limit() -> None:
    s = site_for(load_site(DEMO), clusters=5, ramp_limit_w_per_s=1e5)
    assert len(s.clusters) == 5
    assert sum(len(p.clusters) for p in s.pcs) == 5
    assert s.control.ramp_limit_w_per_s == 1e5


def test_the_reused_fleet_starts_from_the_device_limits() -> None:
    sn = snap(1e6)
    memo = FleetMemo()
    f = build_fleet(sn, frozenset(), memo)
    f.apply_window(90.0, 95.0)  # every cluster is at 50 %: below the floor, nothing may discharge
    assert f.dis_w == 0.0
    g = build_fleet(sn, frozenset(), memo)
    assert g is f  # same snapshot objects: the memo
    assert g.dis_w == g.max_dis_w > 0.0
    assert build_fleet(sn, frozenset({"c01"}), memo) is not f  # other maintenance: rebuilt
    # without a memo (the live loop) nothing is kept between calls
    h = build_fleet(sn, frozenset())
    assert h is not build_fleet(sn, frozenset()) and h is not f


def test_trace_must_be_regular() -> None:
    ts = np.array([0.0, 1.0, 2.0, 5.0, 6.0])
    with pytest.raises(ValueError, match=r"sample 4: timestamp 5.0 is 3 s after"):
        Trace(ts, np.ones(5), source="x.csv")


def write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def test_read_csv_takes_iso_and_unix_times(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", ["timestamp,power_w", "2026-07-15T00:00:00,1000", "2026-07-15T00:00:01,2000.5"])
    ts, w = read_csv(p, TZ)
    assert ts.tolist() == [MIDNIGHT, MIDNIGHT + 1]  # naive times are site-local
    assert w.tolist() == [1000.0, 2000.5]
    p = write(tmp_path / "b.csv", [f"{MIDNIGHT:.0f},5", f"{MIDNIGHT + 900:.0f},6"])
    assert read_csv(p, TZ)[0].tolist() == [MIDNIGHT, MIDNIGHT + 900]


@pytest.mark.parametrize(
    ("rows", "line", "what"),
    [
        (["timestamp,power_w", "0,1", "1,abc"], 3, "power_w 'abc' is not a number"),
        (["0,1", "yesterday,2"], 2, "is neither Unix seconds nor ISO 8601"),
        (["0,1", "1,2,3"], 2, "expected 2 fields"),
        (["5,1", "4,2"], 2, "does not come after"),
    ],
)
def test_read_csv_names_file_and_line(tmp_path: Path, rows: list[str], line: int, what: str) -> None:
    p = write(tmp_path / "bad.csv", rows)
    with pytest.raises(ConfigError, match=f"bad.csv: line {line}: .*{what}"):
        read_csv(p, TZ)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "analyze", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_cli_json_sweep_and_plot(tmp_path: Path) -> None:
    # 2 days at 1 min with a midday bump: the battery must cut the bill; the sweep's 0-cluster row saves 0
    t = np.arange(2 * 1440)
    hour = (t % 1440) / 60.0
    load = 3e6 + 1.5e6 * np.exp(-(((hour - 14.0) / 2.0) ** 2)) + 2e5 * np.sin(t / 5.0)
    rows = ["timestamp,power_w"] + [f"{MIDNIGHT + 60 * k:.0f},{w:.1f}" for k, w in enumerate(load)]
    csv = write(tmp_path / "load.csv", rows)
    png = tmp_path / "out.png"
    r = cli(str(csv), "--json", "--quiet", "--clusters", "6", "--sweep-clusters", "0,6", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["site"]["clusters"] == 6
    base = bill(MIDNIGHT + 60.0 * t, load, bundled("shanghai_ci_two_part"))
    assert rep["baseline"]["bill"]["total"] == pytest.approx(base.total, rel=1e-5)  # CSV rounds to 0.1 W
    assert rep["battery"]["bill"]["total"] < rep["baseline"]["bill"]["total"]
    assert rep["battery"]["peak_kw"] < rep["baseline"]["peak_kw"]
    assert 0.0 < rep["optimum"]["controller_share"] <= 1.0
    assert [s["clusters"] for s in rep["sweep"]] == [0, 6]
    assert rep["sweep"][0]["net_savings"] == 0.0
    assert rep["sweep"][1]["net_savings"] == rep["stored_energy"]["adjusted_net_savings"]
    # two July days, no whole billing month: the energy part per day x 365, the month's demand
    # saving once a month x 12 (not x 182.5 as a per-day scaling would count it)
    est = rep["annual_estimate"]
    demand = rep["baseline"]["bill"]["demand_charge"] - rep["battery"]["bill"]["demand_charge"]
    per_day = (rep["stored_energy"]["adjusted_net_savings"] - demand) / 2.0
    assert (est["basis"], est["months"]) == ("running_month", ["2026-07-01"])
    assert est["annual_savings"] == pytest.approx(per_day * 365.0 + demand * 12.0, rel=1e-9)
    assert rep["roi"]["annual_savings"] == est["annual_savings"]
    assert est["low"] <= est["annual_savings"] <= est["high"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a 1 min trace shows nothing of a 0.1-2 Hz band: no figures, and the reason
    osc = rep["oscillation"]
    assert osc["band_hz"] == [0.1, 2.0] and osc["analysed_hz"] is None and osc["removed_share"] is None
    assert "beyond the Nyquist frequency of a trace sampled every 60 s" in osc["note"]
    assert rep["replay"]["build"] == "python"  # the tests run the pure package (`make fast` is mypyc)


def test_cli_bad_csv_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    csv = write(tmp_path / "broken.csv", ["timestamp,power_w", "0,100", "60,oops"])
    r = cli(str(csv), "--quiet")
    assert r.returncode == 2
    assert f"{csv}: line 3: power_w 'oops' is not a number" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_decides_once_per_agent_cycle_on_a_finer_trace(tmp_path: Path) -> None:
    # 10 min at 0.1 s: the agent decides once per site cycle_s (1 s in the demo site), not every
    # sample; --cycle overrides it, and a bad value is refused naming the option.
    n = 6000
    rows = ["timestamp,power_w"] + [f"{MIDNIGHT + 0.1 * k:.1f},{3e6 + 1e6 * ((k // 37) % 2):.1f}" for k in range(n)]
    csv = write(tmp_path / "fine.csv", rows)
    for extra, cycle in (((), 1.0), (("--cycle", "0.5"), 0.5), (("--cycle", "0.04"), 0.1)):
        r = cli(str(csv), "--json", "--quiet", "--no-optimum", *extra)
        assert r.returncode == 0, r.stderr
        rep = json.loads(r.stdout)["replay"]
        assert rep["step_s"] == pytest.approx(0.1) and rep["cycle_s"] == pytest.approx(cycle)
        assert sum(rep["decided_by"].values()) == round(n * 0.1 / cycle)
    r = cli(str(csv), "--quiet", "--no-optimum", "--cycle", "1")
    assert r.returncode == 0 and "steps of 0.1 s, deciding every 1 s in" in r.stdout, r.stderr
    r = cli(str(csv), "--quiet", "--cycle", "-1")
    assert r.returncode == 2 and "--cycle" in r.stderr and "-1" in r.stderr and "Traceback" not in r.stderr


def test_cli_reports_the_oscillation_in_a_band(tmp_path: Path) -> None:
    # 10 min at 0.1 s of a +-500 kW square wave with a 7.4 s period: its odd harmonics 1..13
    # (0.135..1.76 Hz) fall in 0.1-2 Hz, 8/pi^2 x sum(1/k^2) = 97.1 % of its energy: RMS ~493 kW
    n = 6000
    rows = ["timestamp,power_w"] + [f"{MIDNIGHT + 0.1 * k:.1f},{3e6 + 1e6 * ((k // 37) % 2):.1f}" for k in range(n)]
    csv = write(tmp_path / "fine.csv", rows)
    r = cli(str(csv), "--json", "--quiet", "--no-optimum", "--ramp-limit", "200")
    assert r.returncode == 0, r.stderr
    osc = json.loads(r.stdout)["oscillation"]
    assert osc["analysed_hz"] == [0.1, 2.0] and osc["nyquist_hz"] == pytest.approx(5.0) and osc["note"] == ""
    assert osc["load_rms_kw"] == pytest.approx(500.0 * math.sqrt(0.971), rel=0.02)
    assert osc["removed_share"] == pytest.approx(1.0 - (osc["grid_rms_kw"] / osc["load_rms_kw"]) ** 2, rel=1e-9)
    r = cli(str(csv), "--quiet", "--no-optimum", "--band-hz", "4", "9")
    assert r.returncode == 0, r.stderr
    assert "oscillation 4-9 Hz: RMS" in r.stdout and "(analysed 4-5 Hz: the band above 5 Hz is beyond" in r.stdout
    r = cli(str(csv), "--quiet", "--band-hz", "2", "1")
    assert r.returncode == 2 and "--band-hz" in r.stderr and "Traceback" not in r.stderr


def _per_second(x: np.ndarray) -> np.ndarray:
    return x[: len(x) // 10 * 10].reshape(-1, 10).mean(axis=1)


def test_a_1_s_agent_over_a_0_1_s_trace_and_pcs_in_grid_control() -> None:
    # A 0.1 s trace with a 1.2 MW load step inside a second, the agent deciding every 10 steps (1 s).
    # Setpoint-mode PCS answer only at the next cycle, so the second's average jumps by most of the
    # step; PCS in grid-power control take it on their own meter within tenths of a second.
    n = 600
    ts = MIDNIGHT + 12 * 3600.0 + np.arange(n, dtype=np.float64) * 0.1
    load = np.where(np.arange(n) < 203, 2e6, 3.2e6)
    site = demo(12, ramp_limit_w_per_s=200e3, tou_enabled=False)
    fixed = replay(site, flat_tariff(), Trace(ts, load), seed_profile=False, decide_every=10)
    assert sum(fixed.decided_by.values()) == n // 10  # one decision per cycle
    pcc_site = replace(site, pcs=tuple(replace(p, grid_control="pcc") for p in site.pcs))
    pcc = replay(pcc_site, flat_tariff(), Trace(ts, load), seed_profile=False, decide_every=10)
    jump_fixed = np.abs(np.diff(_per_second(fixed.grid_w))).max()
    jump_pcc = np.abs(np.diff(_per_second(pcc.grid_w))).max()
    assert jump_fixed > 500e3
    assert jump_pcc <= 200e3  # the PCS's reference moves at up to 100 kW/s; the step adds a small blip
    # the load handed back to the grid as the battery's use of its window asks (agent.control.pcc):
    # closing in with the time constant window / full ramp, 2,508 kW / 100 kW/s = 25 s
    left = 1.2e6 * math.exp(-(ts[-1] - ts[203]) / 25.08)  # 247 kW of the step after 39.6 s
    assert pcc.battery_w[-1] == pytest.approx(left, rel=0.01)
    assert pcc.grid_w[-1] == pytest.approx(3.2e6 - left, rel=0.001)
    with pytest.raises(ValueError, match="decide_every"):
        replay(site, flat_tariff(), Trace(ts, load), decide_every=0)


def test_cli_planner_reports_solves_and_forecast_accuracy(tmp_path: Path) -> None:
    # 2 days at 5 min, the same day twice: day one has no history (no plan), day two is planned
    # every 15 min (96 solves) against a forecast of the first day
    t = np.arange(2 * 288)
    hour = (t % 288) / 12.0
    load = 3e6 + 1.5e6 * np.exp(-(((hour - 14.0) / 2.0) ** 2))
    rows = ["timestamp,power_w"] + [f"{MIDNIGHT + 300 * k:.0f},{w:.1f}" for k, w in enumerate(load)]
    csv = write(tmp_path / "load.csv", rows)
    r = cli(str(csv), "--json", "--quiet", "--planner")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    pl = rep["planner"]
    assert (pl["solves"], pl["failures"], pl["intervals_without_forecast"]) == (96, 0, 96)
    assert pl["forecast"]["mape"] < 1e-6  # the second day is the first again
    assert pl["solve_ms"]["p99"] >= pl["solve_ms"]["p50"] > 0.0
    assert rep["replay"]["decided_by"].get("plan", 0) > 0
    assert rep["battery"]["peak_kw"] <= rep["baseline"]["peak_kw"]
    r = cli(str(csv), "--quiet", "--planner")
    assert r.returncode == 0, r.stderr
    assert "planner: 96 solves (0 failed, 96 intervals before a day of history)" in r.stdout


def test_a_replay_given_the_days_before_starts_where_running_through_them_leaves_the_controller() -> None:
    """`history`: the controller starts the trace with the profile and the ring of the last days
    (envelope.ring_of) it would have after running through those days, not the trace's first day."""
    tariff = bundled("shanghai_ci_two_part")
    # from 00:10 seven days before the month (its first interval a third seen: not counted), to two
    # days into the month
    ts = MIDNIGHT - 7 * 86400.0 + 600.0 + 60.0 * np.arange(9 * 1440 - 10, dtype=np.float64)
    rng = np.random.default_rng(5)
    load = 3e6 + 4e5 * np.sin(np.arange(len(ts)) / 97.0) + rng.normal(0.0, 5e4, len(ts))
    month = int(np.searchsorted(ts, MIDNIGHT))
    site = demo()
    run = Replay(site, tariff, Trace(ts, load))
    run.run(0, month + 1)  # the first step of the month closes the day's last interval
    ran = run.st.interval
    seeded = Replay(site, tariff, Trace(ts[month:], load[month:]), history=Trace(ts[:month], load[:month])).st.interval
    assert len(seeded.past) == 7 * 96 and len(ran.past) == 7 * 96
    assert [v != v for v in seeded.past] == [v != v for v in ran.past]
    assert sum(v != v for v in seeded.past) == 1  # 7 days ago 00:00-00:15
    known = [k for k, v in enumerate(ran.past) if v == v]
    assert [seeded.past[k] for k in known] == pytest.approx([ran.past[k] for k in known], rel=1e-12)
    assert seeded.profile == pytest.approx(ran.profile, rel=1e-12)
    # the last day's means, not the month's first day (which the cold start's seed_profile takes)
    cold = Replay(site, tariff, Trace(ts[month:], load[month:])).st.interval
    assert cold.past == () and cold.profile != pytest.approx(seeded.profile, rel=1e-3)
