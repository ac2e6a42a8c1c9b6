"""ROI maths against independently computed numbers, and the [economics] table."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from agent.economics.roi import economics_config, irr, npv, roi
from agent.model.config import load_site
from common.tomlcheck import ConfigError

DEMO = Path(__file__).resolve().parent.parent / "agent" / "sites" / "demo.toml"


def npv_by_sum(rate: float, flows: list[float]) -> float:
    return sum(cf / (1.0 + rate) ** y for y, cf in enumerate(flows))


def irr_by_roots(flows: list[float]) -> float:
    """Real positive root x of sum cf_y x^y = 0, with x = 1 / (1 + r)."""
    roots = np.roots(flows[::-1])  # highest power first
    x = [float(r.real) for r in roots if abs(r.imag) < 1e-9 and r.real > 0]
    assert len(x) == 1
    return 1.0 / x[0] - 1.0


def test_npv_hand_numbers() -> None:
    # capex 1000, 300 a year for 5 years at 10 %: 300 x 3.790787 - 1000 = 137.236
    assert npv(0.10, 1000.0, 300.0, 5) == pytest.approx(137.2360, abs=1e-4)
    assert npv(0.0, 1000.0, 300.0, 5) == 500.0
    assert npv(0.07, 5e6, 8e5, 12) == pytest.approx(npv_by_sum(0.07, [-5e6] + [8e5] * 12), rel=1e-12)


def test_irr_matches_polynomial_roots() -> None:
    assert irr(1000.0, 300.0, 5) == pytest.approx(irr_by_roots([-1000.0] + [300.0] * 5), abs=1e-9)
    assert irr(1000.0, 300.0, 5) == pytest.approx(0.152382, abs=1e-6)
    # a project that never pays back has a negative IRR, still well defined
    assert irr(1000.0, 150.0, 5) == pytest.approx(irr_by_roots([-1000.0] + [150.0] * 5), abs=1e-9)
    assert irr(1000.0, 150.0, 5) < 0  # type: ignore[operator]
    assert irr(1000.0, 0.0, 5) is None


def test_roi_from_measured_savings() -> None:
    # 60 days measured, 100k saved in total; an annual estimate of 730k
    r = roi(
        capex=2_000_000.0,
        annual_opex=36_500.0,
        discount_rate=0.08,
        life_years=10,
        realized_savings=100_000.0,
        days=60.0,
        annual_savings=730_000.0,
    )
    assert r.opex_to_date == pytest.approx(6_000.0)
    assert r.recovered == pytest.approx(94_000.0 / 2_000_000.0)
    assert r.annual_savings == pytest.approx(730_000.0)
    assert r.simple_payback_years == pytest.approx(2_000_000.0 / 693_500.0)
    assert r.remaining_payback_years == pytest.approx(1_906_000.0 / 693_500.0)
    assert r.npv == pytest.approx(npv_by_sum(0.08, [-2e6] + [693_500.0] * 10), rel=1e-12)
    assert r.irr == pytest.approx(irr_by_roots([-2e6] + [693_500.0] * 10), abs=1e-9)
    never = roi(1e6, 50_000.0, 0.08, 10, 1_000.0, 30.0, 1_000.0 * 365 / 30)
    assert math.isinf(never.simple_payback_years)
    assert never.irr is None
    assert never.as_dict()["simple_payback_years"] is None


def test_economics_table_defaults_and_errors() -> None:
    site = load_site(DEMO)
    cfg = economics_config(site)
    assert cfg.degradation_cost_per_kwh == 0.15  # from [control] when [economics] does not say
    site2 = replace(
        site,
        sections={"economics": {"capex_per_cluster": 500_000, "capex_per_pcs": 80_000, "db_path": "x.db"}},
    )
    cfg2 = economics_config(site2)
    assert cfg2.capex(12, 4) == 12 * 500_000 + 4 * 80_000
    assert cfg2.db_path == DEMO.parent / "x.db"
    with pytest.raises(ConfigError, match=r"\[economics\]: key 'discount_rate' must be"):
        economics_config(replace(site, sections={"economics": {"discount_rate": -0.1}}))
    with pytest.raises(ConfigError, match=r"\[economics\]: unknown key\(s\) 'capex'"):
        economics_config(replace(site, sections={"economics": {"capex": 1}}))
