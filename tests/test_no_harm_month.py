"""Issue 13's promise on a real load: with the battery, the month's billed peak is never above the
peak without it, and the bill never higher (net of wear).

Two days of the policy suite's flat load (bench/policy_suite.py: the Frontier HPL run, 15 s samples
held, repeated end to end at a 4 MW mean; the days after the suite's seven days of history) at 60 s
on the Shanghai two-part tariff, through the offline replay of the demo site (12 clusters, no
reserve), as the suite runs it. The heuristic's time-of-use raise charged 140 kW on top of this
load's own plateau on the second morning and billed 4,664 kW against 4,537 kW without the battery,
a loss of 1,883 CNY over the two days; the suite prints PASS/FAIL on all its loads and tariffs.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import agent
from agent.economics.optimum import resample_mean
from agent.economics.roi import EconomicsConfig
from agent.economics.tariff import bundled
from agent.model.config import load_site
from agent.offline.replay import Trace, evaluate, replay

FRONTIER = Path("/work/shared/data/frontier-hpl-system-15s.csv")  # Frontier's HPL run, system power, 15 s
HISTORY_DAYS, DAYS = 7, 2


def flat_month(tariff_name: str) -> Trace:
    with FRONTIER.open() as f:
        rows = [float(r["sum vals"]) for r in csv.DictReader(f)]
    run = np.repeat(np.asarray(rows, dtype=np.float64), 15)
    run *= 4e6 / float(run.mean())
    load = np.resize(run, (HISTORY_DAYS + DAYS) * 86400)[HISTORY_DAYS * 86400 :]
    start = datetime(2026, 7, 1, tzinfo=bundled(tariff_name).timezone).timestamp()
    ts, w = resample_mean(start + np.arange(len(load), dtype=np.float64), load, 60.0)
    return Trace(ts, w, None, "flat")


@pytest.mark.skipif(not FRONTIER.exists(), reason=f"needs {FRONTIER}")
def test_the_battery_never_bills_a_higher_peak_nor_costs_more_than_no_battery() -> None:
    tariff = bundled("shanghai_ci_two_part")
    site = load_site(Path(agent.__file__).parent / "sites" / "demo.toml").with_clusters(12)
    control = replace(site.control, reserve_load_w=0.0, fast_lane_s=0.0)
    site = replace(site, control=control, timezone=tariff.timezone)
    res = replay(site, tariff, flat_month("shanghai_ci_two_part"), start_soc_pct=50.0)
    econ = EconomicsConfig(degradation_cost_per_kwh=control.degradation_cost_per_kwh)
    rep = evaluate(site, tariff, res, econ, 0.0, with_optimum=False)
    assert rep["baseline"]["peak_kw"] == pytest.approx(4537.5, abs=0.1)  # the load's own peak
    assert rep["battery"]["peak_kw"] <= rep["baseline"]["peak_kw"]
    assert rep["savings"]["net"] > 0.0
