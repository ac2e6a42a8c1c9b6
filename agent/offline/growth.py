"""The growth plan of `ems-agent analyze BASE.csv --growth GROWTH.toml`: a TOML file, every key checked.

    [plan]
    horizon_years = 10              # years the NPV covers [the site's [economics] project_life_years];
                                    # years after the last [[year]] keep its load
    discount_rate = 0.07            # [the site's [economics] discount_rate]
    clusters = [0, 12, 24, 36]      # candidate installed counts, the grid the plan is optimal over
                                    # (0, no battery, is always one)
    max_add_per_year = 24           # most clusters one year can add [no limit]
    clusters_per_pcs = 3            # a PCS (a copy of the site's first) per this many clusters
                                    # [the site file's most behind one PCS]
    fade_pct_per_cycle = 0.003      # capacity lost per equivalent full cycle, % of nameplate, from
                                    # each stage's purchase (agent.economics.expansion; 0: none)
                                    # [the simulator's, simulators.physics.ClusterParams]

    [prices]                        # currency of the tariff; a number, or one per plan year from
    cluster = [480_000, 440_000]    #   year 1 (the last holds after): prices fall
                                    # [the site's [economics] capex_per_cluster; required without]
    pcs = 250_000                   # per PCS [the site's [economics] capex_per_pcs]
    stage = 1_200_000               # works per year that adds clusters [capex_installation]
    om_per_cluster = 3_000          # O&M per installed cluster and year [0]
    om_fixed = 150_000              # O&M per year with a battery [annual_opex]

    [[year]]                        # plan year 1, 2, ... in order; each one of
    scale = 1.0                     #   the base trace x scale, or
    # load = "year2.csv"            #   its own trace (path relative to this file)
    # pv = "pv2.csv"                # optional: the year's PV trace, or
    # pv_scale = 2.0                #   the --pv trace x pv_scale [the --pv trace as it is]

Errors name the file, the table and the key (ConfigError; the CLI exits 2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.economics.expansion import ExpansionCosts
from agent.economics.roi import EconomicsConfig
from agent.model.config import SiteConfig
from agent.offline.replay import Trace
from common.tomlcheck import REQUIRED, ConfigError, Table, load_toml
from simulators.physics import ClusterParams

MAX_CANDIDATES = 64  # a replay per (year, count): the grid's size is the run's time
MAX_YEARS = 50


@dataclass(frozen=True, slots=True)
class YearLoad:
    """One plan year's load: its own trace or the base x scale, and its PV."""

    load: Path | None  # None: the base trace
    scale: float
    pv: Path | None  # None: the base PV (--pv), if any
    pv_scale: float

    @property
    def label(self) -> str:
        load = self.load.name if self.load is not None else f"base x {self.scale:g}"
        if self.pv is not None:
            return f"{load}, pv {self.pv.name}"
        return load if self.pv_scale == 1.0 else f"{load}, pv x {self.pv_scale:g}"


@dataclass(frozen=True, slots=True)
class GrowthPlan:
    path: Path
    years: tuple[YearLoad, ...]  # plan years 1..len; later years keep the last one's load
    horizon: int
    counts: tuple[int, ...]  # rising, from 0
    costs: ExpansionCosts
    fade_pct_per_cycle: float = ClusterParams().fade_pct_per_cycle  # % of nameplate per equivalent full cycle

    def load_of(self, year: int) -> YearLoad:
        """Plan year `year`'s (1-based) load: after the listed years, the last one's."""
        return self.years[min(year, len(self.years)) - 1]


def _per_year(t: Table, key: str, default: float, horizon: int) -> tuple[float, ...]:
    """A price: one number, or a list of numbers >= 0 from year 1 whose last value holds after."""
    v = t.raw(key, default)
    values = v if isinstance(v, list) else [v]
    if not values or len(values) > horizon:
        t.fail(key, f"must be a number or a list of 1 to {horizon} numbers (one per plan year), got {v!r}")
    for x in values:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
            t.fail(key, f"must hold numbers >= 0, got {x!r}")
    return tuple(float(values[min(y, len(values) - 1)]) for y in range(horizon))


def _counts(t: Table) -> tuple[int, ...]:
    v = t.raw("clusters", None)
    if v is None:
        t.fail("clusters", "is required (the candidate installed cluster counts, e.g. [0, 12, 24])")
    if (
        not isinstance(v, list)
        or not v
        or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 1000 for x in v)
    ):
        t.fail("clusters", f"must be a list of cluster counts 0..1000, got {v!r}")
    counts = sorted(set(v) | {0})
    if len(counts) > MAX_CANDIDATES:
        t.fail("clusters", f"has {len(counts)} counts; at most {MAX_CANDIDATES} (each one is a replay per year)")
    return tuple(counts)


def _year(t: Table, base: Path) -> YearLoad:
    if t.has("load") == t.has("scale"):
        t.fail("load", "or 'scale': give exactly one (the year's own trace, or a factor on the base trace)")
    if t.has("pv") and t.has("pv_scale"):
        t.fail("pv", "and 'pv_scale' are exclusive (the year's own PV trace, or a factor on --pv)")
    load = t.text("load", None)
    pv = t.text("pv", None)
    return YearLoad(
        load=None if load is None else base / load,
        scale=t.number("scale", 1.0, lo=0.0, hi=1000.0, lo_open=True),
        pv=None if pv is None else base / pv,
        pv_scale=t.number("pv_scale", 1.0, lo=0.0, hi=1000.0),
    )


def load_growth(path: Path, site: SiteConfig, econ: EconomicsConfig) -> GrowthPlan:
    """Read and check a growth plan; defaults come from the site file's [economics] and PCS wiring."""
    top = Table(load_toml(path), str(path))
    plan = top.table("plan", required=True)
    prices = top.table("prices")
    years = top.tables("year")
    top.done()
    horizon = plan.integer("horizon_years", econ.project_life_years, lo=1, hi=MAX_YEARS)
    rate = plan.number("discount_rate", econ.discount_rate, lo=0.0, hi=1.0)
    counts = _counts(plan)
    max_add = plan.integer("max_add_per_year", counts[-1], lo=1, hi=1000)
    wired = max((len(p.clusters) for p in site.pcs), default=0)
    per_pcs = plan.integer("clusters_per_pcs", max(1, wired), lo=1, hi=1000)
    fade = plan.number("fade_pct_per_cycle", ClusterParams().fade_pct_per_cycle, lo=0.0, hi=1.0)
    plan.done()
    if not years:
        raise ConfigError(f"{path}: no [[year]]: give at least one plan year's load (scale = 1.0: the base trace)")
    if len(years) > horizon:
        raise ConfigError(
            f"{path}: {len(years)} [[year]] tables for a horizon of {horizon} years ([plan] horizon_years)"
        )
    loads = []
    for y in years:
        loads.append(_year(y, path.parent))
        y.done()
    costs = ExpansionCosts(
        # a plan on free clusters would buy the most it can: no price, no plan
        cluster_price=_per_year(prices, "cluster", econ.capex_per_cluster or REQUIRED, horizon),
        pcs_price=_per_year(prices, "pcs", econ.capex_per_pcs, horizon),
        clusters_per_pcs=per_pcs,
        stage_cost=prices.number("stage", econ.capex_installation, lo=0.0),
        om_per_cluster=prices.number("om_per_cluster", 0.0, lo=0.0),
        om_fixed=prices.number("om_fixed", econ.annual_opex, lo=0.0),
        discount_rate=rate,
        max_add=max_add,
    )
    prices.done()
    return GrowthPlan(path, tuple(loads), horizon, counts, costs, fade)


ReadTrace = Callable[[Path, Path | None, ZoneInfo], Trace]


def year_trace(plan: GrowthPlan, year: int, base: Path, base_pv: Path | None, read: ReadTrace, tz: ZoneInfo) -> Trace:
    """Plan year `year`'s trace: its load file or the base trace, with its PV file or the base PV
    (--pv), read by `read` (the CLI's reader: errors name the file and line), then scaled."""
    y = plan.load_of(year)
    tr = read(y.load or base, y.pv or base_pv, tz)
    if y.scale == 1.0 and y.pv_scale == 1.0:
        return tr
    if tr.pv_w is None and y.pv_scale != 1.0:
        n = plan.years.index(y) + 1
        raise ConfigError(f"{plan.path} [[year]] #{n}: key 'pv_scale' needs a PV trace (--pv or 'pv'), none given")
    pv = tr.pv_w * y.pv_scale if tr.pv_w is not None else None
    return Trace(tr.timestamps, tr.load_w * y.scale, pv, f"{tr.source}, {y.label}")
