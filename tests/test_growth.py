"""`ems-agent analyze BASE.csv --growth GROWTH.toml` end to end, and the growth file's checks."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.cli.analyze import load_trace
from agent.economics.expansion import ExpansionCosts, Fade, interpolate, optimal
from agent.economics.roi import economics_config
from agent.model.config import load_site
from agent.offline.growth import load_growth, year_trace
from common.tomlcheck import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "agent" / "sites" / "demo.toml"
MIDNIGHT = datetime(2026, 7, 15, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()

GROWTH = """
[plan]
horizon_years = 10
discount_rate = 0.07
clusters = [0, 3, 6]
max_add_per_year = 6
clusters_per_pcs = 3

[prices]
cluster = [200_000, 150_000, 120_000]
pcs = 100_000
stage = 50_000
om_per_cluster = 3_000
om_fixed = 20_000

[[year]]
scale = 0.6
[[year]]
scale = 1.0
[[year]]
load = "big.csv"
"""


def write_load(path: Path, peak_w: float, days: int = 2) -> Path:
    """`days` at 15 min: 1 MW with a midday bump to `peak_w` (demand charges to shave)."""
    k = np.arange(days * 96)
    hour = (k % 96) / 4.0
    load = 1.0e6 + (peak_w - 1.0e6) * np.exp(-(((hour - 14.0) / 2.0) ** 2))
    rows = ["timestamp,power_w"] + [f"{MIDNIGHT + 900 * i:.0f},{w:.1f}" for i, w in enumerate(load)]
    path.write_text("\n".join(rows) + "\n")
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", "analyze", *args], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


@pytest.mark.parametrize("source", ["replay", "optimum"])
def test_growth_report_is_consistent_and_the_staged_plan_beats_day_one_and_nothing(tmp_path: Path, source: str) -> None:
    base = write_load(tmp_path / "base.csv", 1.8e6)
    write_load(tmp_path / "big.csv", 3.6e6)
    (tmp_path / "growth.toml").write_text(GROWTH)
    r = cli(str(base), "--growth", str(tmp_path / "growth.toml"), "--json", "--growth-savings", source)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["savings_source"] == source
    # 3 distinct loads x 2 sizes above 0: years 4-10 keep year 3's load and share its replays
    assert rep["replays"]["count"] == 6
    # a replay runs each 15-min step in 15 sub-steps of 60 s (agent.offline.replay.substeps_for)
    assert rep["replays"]["steps"] == 6 * 192 * (15 if source == "replay" else 1)
    table = rep["savings_table"]
    for later in table[3:]:
        assert later["annual_savings"] == table[2]["annual_savings"]
    assert [row["load"] for row in table] == ["base x 0.6", "base x 1", *["big.csv"] * 8]
    assert [row["load_peak_kw"] for row in table[:3]] == pytest.approx([1080, 1800, 3600], rel=1e-3)
    assert all(row["annual_savings"]["0"] == 0.0 for row in table)
    assert rep["prices"]["cluster"] == [200_000, 150_000, *[120_000] * 8]  # the last price holds
    staged, day1, none = (rep["plans"][k] for k in ("staged", "day_one", "no_battery"))
    # the staged plan is the optimum of a space that holds both others
    assert staged["npv"] >= day1["npv"] - 1e-6
    assert staged["npv"] >= none["npv"] - 1e-6
    assert none["npv"] == 0.0 and none["schedule"] == [] and none["payback_years"] is None
    assert len(day1["schedule"]) == 1 and day1["schedule"][0]["year"] == 1
    for p in (staged, day1, none):
        years = p["years"]
        assert [y["year"] for y in years] == list(range(1, 11))
        assert years[-1]["cumulative_discounted"] == pytest.approx(p["npv"], rel=1e-12, abs=1e-6)
        assert sum(y["add"] for y in years) == years[-1]["installed"]
        assert p["capex_total"] == pytest.approx(sum(y["capex"] for y in years))
        for y, row in zip(years, rep["savings_table"], strict=True):
            # each year's savings are the table's row at the capacity its clusters hold after fade
            # (agent.economics.expansion); its peaks are the table's at the clusters installed
            assert y["held"] <= y["installed"] and (y["held"] < y["installed"] or y["installed"] == 0)
            row_sav = [row["annual_savings"][str(c)] for c in rep["candidates"]]
            assert y["savings"] == interpolate(rep["candidates"], row_sav, y["held"])
            assert y["grid_peak_kw"] == row["grid_peak_kw"][str(y["installed"])]
            assert y["load_peak_kw"] == row["load_peak_kw"]
            assert y["cash"] == pytest.approx(y["savings"] - y["om"] - y["capex"])
    # the plan is the DP's over the report's own table and prices
    counts = rep["candidates"]
    costs = ExpansionCosts(
        tuple(rep["prices"]["cluster"]), tuple(rep["prices"]["pcs"]), 3, 50_000, 3_000, 20_000, 0.07, 6
    )
    sav = [[row["annual_savings"][str(c)] for c in counts] for row in table]
    cycles = tuple(tuple(row["cycles_per_year"][str(c)] for c in counts) for row in table)
    assert rep["capacity_fade"]["pct_per_cycle"] == 0.003  # the simulator's, the plan's default
    best = optimal(counts, sav, costs, Fade(0.003 / 100.0, cycles))
    assert staged["schedule"] == [{"year": y, "add": a} for y, a in best.adds]
    assert staged["npv"] == best.npv
    # the owner's text report: the same figures
    png = tmp_path / "plan.png"
    t = cli(
        str(base), "--growth", str(tmp_path / "growth.toml"), "--quiet", "--plot", str(png), "--growth-savings", source
    )
    assert t.returncode == 0, t.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"plot: {png}" in t.stdout
    assert f"{staged['npv']:,.0f}" in t.stdout and f"{day1['npv']:,.0f}" in t.stdout
    assert "staged plan, year by year:" in t.stdout
    assert "capacity fade: 0.003 % of nameplate per equivalent full cycle from each stage's purchase" in t.stdout


def test_the_fade_rate_is_the_simulators_unless_the_plan_sets_it(tmp_path: Path) -> None:
    site = load_site(DEMO)
    p = tmp_path / "g.toml"
    p.write_text("[plan]\nclusters = [3]\n[prices]\ncluster = 1\n" + YEAR)
    assert load_growth(p, site, economics_config(site)).fade_pct_per_cycle == 0.003
    p.write_text("[plan]\nclusters = [3]\nfade_pct_per_cycle = 0\n[prices]\ncluster = 1\n" + YEAR)
    assert load_growth(p, site, economics_config(site)).fade_pct_per_cycle == 0.0


def test_a_growth_cell_is_analyze_own_annual_estimate(tmp_path: Path) -> None:
    # 12 clusters, 3 to a PCS, are the demo's own wiring: the growth table's cell must be the
    # annual savings `analyze --clusters 12` reports for the same trace (one replay, one estimate)
    base = write_load(tmp_path / "base.csv", 3.0e6)
    (tmp_path / "g.toml").write_text(
        "[plan]\nhorizon_years = 1\nclusters = [12]\nclusters_per_pcs = 3\n[prices]\ncluster = 1\n[[year]]\nscale = 1\n"
    )
    g = cli(str(base), "--growth", str(tmp_path / "g.toml"), "--json", "--quiet")
    a = cli(str(base), "--clusters", "12", "--json", "--quiet", "--no-optimum")
    assert g.returncode == 0 and a.returncode == 0, g.stderr + a.stderr
    cell = json.loads(g.stdout)["savings_table"][0]["annual_savings"]["12"]
    assert cell == json.loads(a.stdout)["roi"]["annual_savings"]
    assert cell > 0


def growth_error(tmp_path: Path, text: str) -> str:
    p = tmp_path / "growth.toml"
    p.write_text(text)
    site = load_site(DEMO)
    with pytest.raises(ConfigError) as e:
        load_growth(p, site, economics_config(site))
    return str(e.value).replace(str(p), "G")


YEAR = "[[year]]\nscale = 1\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (YEAR, "G: key 'plan' is required"),
        ("[plan]\n" + YEAR, "G [plan]: key 'clusters' is required"),
        ("[plan]\nclusters = 4\n" + YEAR, "G [plan]: key 'clusters' must be a list of cluster counts 0..1000, got 4"),
        ("[plan]\nclusters = [0, -3]\n" + YEAR, "key 'clusters' must be a list of cluster counts 0..1000"),
        ("[plan]\nclusters = [3]\nhorizon = 5\n" + YEAR, "G [plan]: unknown key(s) 'horizon'"),
        ("[plan]\nclusters = [3]\nhorizon_years = 0\n" + YEAR, "G [plan]: key 'horizon_years' must be between 1"),
        ("[plan]\nclusters = [3]\ndiscount_rate = -0.1\n" + YEAR, "G [plan]: key 'discount_rate' must be >= 0"),
        ("[plan]\nclusters = [3]\nmax_add_per_year = 0\n" + YEAR, "G [plan]: key 'max_add_per_year' must be between 1"),
        (
            "[plan]\nclusters = [3]\nfade_pct_per_cycle = -0.003\n" + YEAR,
            "G [plan]: key 'fade_pct_per_cycle' must be >= 0 and <= 1, got -0.003",
        ),
        ("[plan]\nclusters = [3]\n", "G: no [[year]]"),
        (
            "[plan]\nclusters = [3]\nhorizon_years = 1\n" + YEAR * 2,
            "G: 2 [[year]] tables for a horizon of 1 years ([plan] horizon_years)",
        ),
        ("[plan]\nclusters = [3]\n[[year]]\n", "G [[year]] #1: key 'load' or 'scale': give exactly one"),
        (
            "[plan]\nclusters = [3]\n[[year]]\nscale = 1\nload = 'a.csv'\n",
            "G [[year]] #1: key 'load' or 'scale': give exactly one",
        ),
        ("[plan]\nclusters = [3]\n[[year]]\nscale = 0\n", "G [[year]] #1: key 'scale' must be > 0"),
        (
            "[plan]\nclusters = [3]\n[[year]]\nscale = 1\npv = 'p.csv'\npv_scale = 2\n",
            "G [[year]] #1: key 'pv' and 'pv_scale' are exclusive",
        ),
        ("[plan]\nclusters = [3]\n[[year]]\nscale = 1\nload_w = 2\n", "G [[year]] #1: unknown key(s) 'load_w'"),
        (
            "[plan]\nclusters = [3]\nhorizon_years = 2\n[prices]\ncluster = [1, 2, 3]\n" + YEAR,
            "G [prices]: key 'cluster' must be a number or a list of 1 to 2 numbers (one per plan year)",
        ),
        (
            "[plan]\nclusters = [3]\n[prices]\npcs = [1, -2]\n" + YEAR,
            "G [prices]: key 'pcs' must hold numbers >= 0, got -2",
        ),
        ("[plan]\nclusters = [3]\n[prices]\ncluster = 'cheap'\n" + YEAR, "G [prices]: key 'cluster' must hold numbers"),
        ("[plan]\nclusters = [3]\n[prices]\nom_fixed = -1\n" + YEAR, "G [prices]: key 'om_fixed' must be >= 0"),
        ("[plan]\nclusters = [3]\n[prices]\nom = 1\n" + YEAR, "G [prices]: unknown key(s) 'om'"),
        ("[plan]\nclusters = [3]\n[extra]\n" + YEAR, "G: unknown key(s) 'extra'"),
    ],
)
def test_bad_growth_files_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    assert message in growth_error(tmp_path, text)


def test_cli_growth_errors_exit_2_naming_the_file(tmp_path: Path) -> None:
    base = write_load(tmp_path / "base.csv", 2e6, days=1)
    short = write_load(tmp_path / "short.csv", 2e6, days=1)
    short.write_text("\n".join(short.read_text().splitlines()[:40]) + "\n")  # under a day
    g = tmp_path / "g.toml"
    g.write_text("[plan]\nclusters = [3]\nhorizon_years = 2\n[[year]]\nscale = 1\n[[year]]\nload = 'short.csv'\n")
    r = cli(str(base), "--growth", str(g), "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{g}: short.csv: not enough data yet" in r.stderr and "a growth plan needs a day of trace" in r.stderr
    g.write_text("[plan]\nclusters = [3]\n[[year]]\nload = 'missing.csv'\n")
    r = cli(str(base), "--growth", str(g), "--quiet")
    assert r.returncode == 2 and f"{tmp_path / 'missing.csv'}" in r.stderr
    g.write_text("[plan]\nclusters = [3]\n[[year]]\nscale = 2\npv_scale = 2\n")
    r = cli(str(base), "--growth", str(g), "--quiet")
    assert r.returncode == 2 and f"{g} [[year]] #1: key 'pv_scale' needs a PV trace (--pv or 'pv')" in r.stderr
    r = cli(str(base), "--growth", str(g), "--quiet", "--sweep-clusters", "0,3")
    assert r.returncode == 2 and "--sweep-clusters: not with --growth" in r.stderr
    r = cli(str(base), "--growth", str(g), "--quiet", "--planner")
    assert r.returncode == 2 and "--planner: not with --growth" in r.stderr
    r = cli(str(base), "--growth", str(g), "--quiet", "--plot", str(tmp_path / "x.html"))
    assert r.returncode == 2 and "--plot: " in r.stderr and "must end in .png with --growth" in r.stderr
    r = cli(str(base), "--growth-cache", str(tmp_path / "c.json"), "--quiet")
    assert r.returncode == 2 and "--growth-cache: only with --growth" in r.stderr


def test_growth_cache_reuses_replays_until_an_input_changes(tmp_path: Path) -> None:
    base = write_load(tmp_path / "base.csv", 2.4e6)
    g = tmp_path / "g.toml"
    plan = "[plan]\nhorizon_years = 3\nclusters = [0, 3, 6]\n[prices]\ncluster = {price}\n[[year]]\nscale = 1\n"
    g.write_text(plan.format(price=200_000) + "[[year]]\nscale = 1.5\n")
    cache = tmp_path / "cache.json"
    first = cli(str(base), "--growth", str(g), "--growth-cache", str(cache), "--json", "--quiet")
    assert first.returncode == 0, first.stderr
    a = json.loads(first.stdout)
    assert (a["replays"]["count"], a["replays"]["cached"]) == (4, 0)
    assert len(json.loads(cache.read_text())["cells"]) == 4
    # other prices: no replay changes, every cell from the cache, the same table
    g.write_text(plan.format(price=100_000) + "[[year]]\nscale = 1.5\n")
    second = cli(str(base), "--growth", str(g), "--growth-cache", str(cache), "--json", "--quiet")
    b = json.loads(second.stdout)
    assert (b["replays"]["count"], b["replays"]["cached"]) == (0, 4)
    assert b["savings_table"] == a["savings_table"]
    assert b["plans"]["day_one"]["npv"] > a["plans"]["day_one"]["npv"]  # cheaper clusters
    # another year-2 load: its two cells are replayed, year 1's are not
    g.write_text(plan.format(price=100_000) + "[[year]]\nscale = 2\n")
    third = json.loads(cli(str(base), "--growth", str(g), "--growth-cache", str(cache), "--json", "--quiet").stdout)
    assert (third["replays"]["count"], third["replays"]["cached"]) == (2, 2)
    assert third["savings_table"][0] == a["savings_table"][0]
    assert len(json.loads(cache.read_text())["cells"]) == 6
    # the same samples from another file name: still the cached results
    moved = tmp_path / "moved.csv"
    moved.write_text(base.read_text())
    again = cli(str(moved), "--growth", str(g), "--growth-cache", str(cache), "--json", "--quiet")
    assert (json.loads(again.stdout)["replays"]["count"], json.loads(again.stdout)["replays"]["cached"]) == (0, 4)
    # the optimum's figures are other results: not the replays' from the cache
    opt = cli(
        str(base), "--growth", str(g), "--growth-cache", str(cache), "--json", "--quiet", "--growth-savings", "optimum"
    )
    assert (json.loads(opt.stdout)["replays"]["count"], json.loads(opt.stdout)["replays"]["cached"]) == (4, 0)
    # a damaged cache is reported and replaced, never trusted
    cache.write_text('{"format": 1, "cells": {"x": {"annual_savings": "lots"}}')
    r = cli(str(base), "--growth", str(g), "--growth-cache", str(cache), "--json", "--quiet")
    assert r.returncode == 0 and f"warning: {cache}: unreadable" in r.stderr
    assert json.loads(r.stdout)["replays"]["count"] == 4
    assert len(json.loads(cache.read_text())["cells"]) == 4


KEY = """
import numpy as np
from agent.economics.tariff import bundled
from agent.model.config import load_site
from agent.offline import replay_cache
t = bundled("shanghai_ci_two_part")
print(replay_cache.key(load_site("agent/sites/demo.toml").with_clusters(6, 3), t))
t.energy_prices(np.array([1.78e9, 1.78e9 + 86400.0]))  # a used tariff: its memos filled
print(replay_cache.key(load_site("agent/sites/demo.toml").with_clusters(6, 3), t))
"""


def test_replay_cache_key_is_the_same_in_every_process() -> None:
    # no hash-ordered set or memo in the key: two processes with other hash seeds agree
    outs = [
        subprocess.run(
            [sys.executable, "-c", KEY], capture_output=True, text=True, cwd=ROOT, env={"PYTHONHASHSEED": seed}
        ).stdout.split()
        for seed in ("1", "2")
    ]
    assert len(outs[0]) == 2 and outs[0] == outs[1] and outs[0][0] == outs[0][1]


def test_a_price_is_required_when_the_site_has_none(tmp_path: Path) -> None:
    site = load_site(DEMO)
    p = tmp_path / "g.toml"
    p.write_text("[plan]\nclusters = [3]\n" + YEAR)
    with pytest.raises(ConfigError, match=r"\[prices\]: key 'cluster' is required"):
        load_growth(p, site, replace(economics_config(site), capex_per_cluster=0.0))
    # with the site's [economics], its prices are the defaults (the demo's: 480,000 per cluster)
    plan = load_growth(p, site, economics_config(site))
    assert plan.costs.cluster_price == (480_000.0,) * 15 and plan.costs.pcs_price == (250_000.0,) * 15
    assert (plan.costs.stage_cost, plan.costs.om_fixed, plan.costs.discount_rate) == (1_200_000.0, 150_000.0, 0.07)
    assert (plan.horizon, plan.counts, plan.costs.clusters_per_pcs, plan.costs.max_add) == (15, (0, 3), 3, 3)


def test_year_traces_scale_the_load_and_pv_or_read_their_own(tmp_path: Path) -> None:
    tz = ZoneInfo("Asia/Shanghai")
    base = write_load(tmp_path / "base.csv", 2e6, days=1)
    pv = tmp_path / "pv.csv"
    pv.write_text("".join(f"{MIDNIGHT + 900 * i:.0f},{1000.0 * i:.1f}\n" for i in range(96)))
    own = tmp_path / "pv2.csv"
    own.write_text("".join(f"{MIDNIGHT + 900 * i:.0f},7.0\n" for i in range(96)))
    (tmp_path / "g.toml").write_text(
        "[plan]\nclusters = [3]\n[prices]\ncluster = 1\n"
        "[[year]]\nscale = 2\npv_scale = 0.5\n[[year]]\nscale = 1\npv = 'pv2.csv'\n[[year]]\nload = 'base.csv'\n"
    )
    site = load_site(DEMO)
    plan = load_growth(tmp_path / "g.toml", site, economics_config(site))
    b = load_trace(base, pv, tz)
    y1, y2, y3 = (year_trace(plan, y, base, pv, load_trace, tz) for y in (1, 2, 3))
    assert y1.load_w.tolist() == (2 * b.load_w).tolist()
    assert y1.pv_w is not None and b.pv_w is not None and y1.pv_w.tolist() == (0.5 * b.pv_w).tolist()
    assert y2.load_w.tolist() == b.load_w.tolist() and y2.pv_w is not None and set(y2.pv_w.tolist()) == {7.0}
    assert y3.load_w.tolist() == b.load_w.tolist() and y3.pv_w is not None and y3.pv_w.tolist() == b.pv_w.tolist()
    assert year_trace(plan, 9, base, pv, load_trace, tz).load_w.tolist() == b.load_w.tolist()  # year 3's after


def test_a_planning_site_is_told_the_growth_replays_do_not_plan(tmp_path: Path) -> None:
    base = write_load(tmp_path / "base.csv", 2.4e6, days=1)
    site = tmp_path / "site.toml"
    site.write_text(DEMO.read_text() + "\n[planner]\nenabled = true\n")  # the demo site, planning
    g = tmp_path / "g.toml"
    g.write_text("[plan]\nhorizon_years = 2\nclusters = [3]\n[[year]]\nscale = 1\n")
    r = cli(str(base), "--site", str(site), "--growth", str(g), "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["notes"] == [
        f"{site} [planner] is enabled, but the growth replays run the heuristic policy without it"
    ]
