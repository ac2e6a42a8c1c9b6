"""The smallest grid connection a battery holds (agent/offline/connection.py) and what the replay
report and the ROI make of a grid_import_limit_w (issue 14, item 4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.economics.optimum import BatterySpec
from agent.economics.roi import EconomicsConfig, economics_config
from agent.model.config import load_site
from agent.offline.connection import feasible, smallest_connection_w
from agent.offline.replay import Trace, evaluate, replay
from common.tomlcheck import ConfigError
from tests.test_analyze import MIDNIGHT, demo, flat_tariff
from tests.test_config import MINIMAL, write

# 1 kWh, 1 kW each way, lossless, the whole window usable, starting full; hourly steps
KWH = BatterySpec(
    energy_wh=1000.0, power_w=1000.0, charge_efficiency=1.0, discharge_efficiency=1.0, start_soc_pct=100.0
)


def test_two_hours_above_the_connection_need_the_energy_for_both() -> None:
    net = np.array([500.0, 1500.0, 1500.0, 500.0])
    # 2 h x (1500 - L) <= 1000 Wh  =>  L >= 1000 W
    assert feasible(net, 3600.0, 1000.0, KWH) and not feasible(net, 3600.0, 999.0, KWH)
    assert smallest_connection_w(net, 3600.0, KWH, tol_w=0.01) == pytest.approx(1000.0, abs=0.01)


def test_recharging_under_the_connection_counts() -> None:
    # 1500 - L out, then L - 500 back in, then 1500 - L out again: 1500 - L <= 2 (L - 500)  =>  L >= 833.3
    net = np.array([1500.0, 500.0, 1500.0])
    assert smallest_connection_w(net, 3600.0, KWH, tol_w=0.01) == pytest.approx(2500.0 / 3.0, abs=0.01)


def test_the_power_limit_bounds_it_from_below() -> None:
    net = np.array([500.0, 3000.0, 500.0])  # 1 kW at most: 2 kW, however much energy there is
    big = BatterySpec(energy_wh=1e9, power_w=1000.0, start_soc_pct=50.0)
    assert smallest_connection_w(net, 1.0, big) == 2000.0


def test_the_report_and_the_roi_count_the_avoided_upgrade() -> None:
    # 15-min steps of 600 / 900 / 600 / 600 kW, one cluster (418 kWh, 209 kW), a 800 kW connection
    ts = MIDNIGHT + 900.0 * np.arange(4, dtype=np.float64)
    load = np.array([600e3, 900e3, 600e3, 600e3])
    site = demo(1, grid_import_limit_w=800e3, tou_enabled=False)
    r = replay(site, flat_tariff(), Trace(ts, load))
    assert r.grid_w.max() <= 800e3 + 1e-3
    econ = EconomicsConfig(capex_per_cluster=50_000.0, connection_capex_per_kw=100.0)
    rep = evaluate(site, flat_tariff(), r, econ, 0.0, with_optimum=False)
    gc = rep["grid_connection"]
    # 209 kW of battery under a 900 kW peak, with the energy for the 15 min: 691 kW would do
    assert (gc["peak_net_kw"], gc["smallest_kw"], gc["limit_kw"]) == (900.0, 691.0, 800.0)
    assert (gc["steps_above_limit"], gc["avoided_kw"], gc["avoided_upgrade_capex"]) == (0, 100.0, 10_000.0)
    pcs = sum(1 for p in site.pcs if p.clusters)
    assert rep["roi"]["capex"] == 50_000.0 + econ.capex_per_pcs * pcs - 10_000.0
    assert rep["roi"]["avoided_connection_upgrade"] == 10_000.0
    # no limit set: the bound is still reported, nothing is counted in the ROI
    rep = evaluate(demo(1, tou_enabled=False), flat_tariff(), r, econ, 0.0, with_optimum=False)
    assert rep["grid_connection"]["limit_kw"] is None and rep["roi"]["avoided_connection_upgrade"] == 0.0


def test_connection_capex_is_a_validated_economics_key(tmp_path: Path) -> None:
    ok = load_site(write(tmp_path, MINIMAL + "[economics]\nconnection_capex_per_kw = 120\n"))
    assert economics_config(ok).connection_capex_per_kw == 120.0
    bad = load_site(write(tmp_path, MINIMAL + "[economics]\nconnection_capex_per_kw = -1\n"))
    with pytest.raises(ConfigError, match="connection_capex_per_kw"):
        economics_config(bad)
