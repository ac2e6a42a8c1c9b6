"""Economics settings and return on investment: pure arithmetic over the realized savings.

`EconomicsConfig` is the site file's `[economics]` table (read by the ledger and by this module).
ROI takes what the ledger has measured (savings to date over the days it covers) and the annual
estimate built by billing month (agent.economics.annual), and projects the estimate flat over the
project life: NPV at the configured discount rate and the IRR of the same cash flows (end-of-year,
capex at year 0). Without an estimate (less than a day counted) there is no NPV, IRR or payback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from agent.model.config import SiteConfig
from common.tomlcheck import Table

DAYS_PER_YEAR = 365.0


@dataclass(frozen=True, slots=True)
class EconomicsConfig:
    degradation_cost_per_kwh: float = 0.0  # currency per kWh discharged
    outage_value_per_min: float = 0.0  # currency per minute the battery carried the load in an outage
    capex_per_cluster: float = 0.0
    capex_per_pcs: float = 0.0
    capex_installation: float = 0.0
    annual_opex: float = 0.0
    # what a grid connection upgrade costs per kW: the battery that lets the site run on a smaller
    # connection ([control] grid_import_limit_w) avoids it, and the ROI counts that (0: not counted)
    connection_capex_per_kw: float = 0.0
    discount_rate: float = 0.08
    project_life_years: int = 15
    db_path: Path | None = None  # None: the caller's state directory decides
    min_coverage: float = 0.9  # share of an interval with good data for it to count
    max_hold_s: float = 5.0  # longest a ledger sample stands for (a longer gap is missing data)
    trailing_days: float = 365.0  # window of whole billing months the annual estimate uses

    def capex(self, clusters: int, pcs: int) -> float:
        return self.capex_per_cluster * clusters + self.capex_per_pcs * pcs + self.capex_installation


def economics_config(site: SiteConfig) -> EconomicsConfig:
    """Validate `[economics]` of a site file; degradation cost defaults to [control]'s."""
    t = Table(site.sections.get("economics", {}), f"{site.path} [economics]")
    db = t.text("db_path", None)
    cfg = EconomicsConfig(
        degradation_cost_per_kwh=t.number("degradation_cost_per_kwh", site.control.degradation_cost_per_kwh, lo=0.0),
        outage_value_per_min=t.number("outage_value_per_min", 0.0, lo=0.0),
        capex_per_cluster=t.number("capex_per_cluster", 0.0, lo=0.0),
        capex_per_pcs=t.number("capex_per_pcs", 0.0, lo=0.0),
        capex_installation=t.number("capex_installation", 0.0, lo=0.0),
        annual_opex=t.number("annual_opex", 0.0, lo=0.0),
        connection_capex_per_kw=t.number("connection_capex_per_kw", 0.0, lo=0.0),
        discount_rate=t.number("discount_rate", 0.08, lo=0.0, hi=1.0),
        project_life_years=t.integer("project_life_years", 15, lo=1, hi=50),
        db_path=None if db is None else (site.path.parent / db),
        min_coverage=t.number("min_coverage", 0.9, lo=0.0, hi=1.0, lo_open=True),
        max_hold_s=t.number("max_hold_s", max(5.0, 3.0 * site.cycle_s), lo=site.cycle_s),
        trailing_days=t.number("trailing_days", 365.0, lo=1.0, hi=366.0),
    )
    t.done()
    return cfg


def npv(rate: float, capex: float, annual_cash: float, years: int) -> float:
    """-capex + sum over years 1..N of annual_cash / (1 + rate)^y (annuity form)."""
    if rate == 0.0:
        return -capex + annual_cash * years
    return -capex + annual_cash * (1.0 - (1.0 + rate) ** -years) / rate


def irr(capex: float, annual_cash: float, years: int) -> float | None:
    """Rate with npv = 0, or None when the investment never returns anything (cash <= 0).

    NPV of a level annuity falls strictly with the rate, from +inf near -100 % to -capex, so
    the root is unique and bisection finds it.
    """
    if annual_cash <= 0.0 or capex <= 0.0:
        return None
    lo, hi = -0.999999, 1.0
    while npv(hi, capex, annual_cash, years) > 0.0:
        hi *= 2.0
        if hi > 1e6:
            return None
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if npv(mid, capex, annual_cash, years) > 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True, slots=True)
class Roi:
    capex: float
    realized_savings: float  # net of degradation, to date
    days: float  # days the ledger covers
    opex_to_date: float
    recovered: float  # (realized - opex to date) / capex: payback to date, 1.0 = paid back
    annual_savings: float | None  # the annual estimate (None: not enough data to annualise)
    simple_payback_years: float | None  # capex / (annual savings - opex); inf if never
    remaining_payback_years: float | None  # from today at the annual estimate; 0 if already paid back
    npv: float | None
    irr: float | None

    def as_dict(self) -> dict[str, float | None]:
        def fin(x: float | None) -> float | None:
            return x if x is not None and math.isfinite(x) else None

        return {
            "capex": self.capex,
            "realized_savings": self.realized_savings,
            "days": self.days,
            "opex_to_date": self.opex_to_date,
            "recovered": self.recovered,
            "annual_savings": self.annual_savings,
            "simple_payback_years": fin(self.simple_payback_years),
            "remaining_payback_years": fin(self.remaining_payback_years),
            "npv": self.npv,
            "irr": self.irr,
        }


def roi(
    capex: float,
    annual_opex: float,
    discount_rate: float,
    life_years: int,
    realized_savings: float,
    days: float,
    annual_savings: float | None,
) -> Roi:
    """Return on investment from measured savings to date (over `days`) and the annual estimate
    (agent.economics.annual); with no estimate (too little counted) no payback, NPV or IRR."""
    opex_to_date = annual_opex * days / DAYS_PER_YEAR
    net_to_date = realized_savings - opex_to_date
    recovered = net_to_date / capex if capex > 0 else math.inf
    if annual_savings is None:
        return Roi(capex, realized_savings, days, opex_to_date, recovered, None, None, None, None, None)
    cash = annual_savings - annual_opex
    simple = capex / cash if cash > 0 else math.inf
    left = capex - net_to_date
    remaining = 0.0 if left <= 0 else (left / cash if cash > 0 else math.inf)
    return Roi(
        capex=capex,
        realized_savings=realized_savings,
        days=days,
        opex_to_date=opex_to_date,
        recovered=recovered,
        annual_savings=annual_savings,
        simple_payback_years=simple,
        remaining_payback_years=remaining,
        npv=npv(discount_rate, capex, cash, life_years),
        irr=irr(capex, cash, life_years),
    )
