"""`analyze --growth`: the savings table from replays, the staged plan against day one and no battery.

Each plan year's load (agent.offline.growth) is replayed once per candidate cluster count through
the same replay and evaluation as `analyze` and its `--sweep-clusters` (agent.offline.replay): the
annual savings estimate of that replay, net of battery wear, fills one cell of the table. Distinct
loads are replayed once each (years after the last [[year]], and years with the same definition,
share their row); no battery saves 0 by definition and is not replayed. agent.economics.expansion
then chooses the schedule by dynamic programming and prices it and the two comparisons.

Capacity fade: every replay runs the clusters at nameplate (a month fades them by a fraction of a
percent), and the plans apply it year by year (agent.economics.expansion's Fade): each stage's
clusters lose the plan's `fade_pct_per_cycle` (the simulator's model) for every equivalent full
cycle since their purchase, at the cycles each year's replay of the installed count ran, and a
year's savings are the table's at the capacity the stages still hold. Their wear also enters as
the site's degradation cost per kWh discharged (the ledger's and the ROI's one model of it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agent.economics.annual import estimate
from agent.economics.expansion import Fade, Schedule, day_one, evaluate, first_stage_pct, optimal
from agent.economics.roi import EconomicsConfig
from agent.economics.tariff import Tariff
from agent.model.config import SiteConfig
from agent.offline import replay_cache
from agent.offline.growth import GrowthPlan, YearLoad
from agent.offline.replay import (
    BUILD,
    MAX_HOLD_S,
    ProgressFn,
    Trace,
    battery_spec,
    optimum_for,
    replay,
    replay_months,
    substeps_for,
)
from agent.offline.replay import evaluate as evaluate_replay
from agent.offline.report import peak_w
from common.tomlcheck import ConfigError


@dataclass(frozen=True, slots=True)
class Cell:
    """One replay: a year's load with one cluster count."""

    annual_savings: float  # the replay's annual estimate, net of wear (currency a year)
    basis: str  # the estimate's basis (agent.economics.annual)
    peak_kw: float  # the grid's highest demand-interval average with the battery
    cycles_per_year: float  # equivalent full cycles, annualised
    wall_s: float
    steps: int


@dataclass(frozen=True, slots=True)
class SavingsTable:
    loads: tuple[YearLoad, ...]  # the distinct loads, in plan order
    baseline_peak_kw: tuple[float, ...]  # per distinct load
    counts: tuple[int, ...]
    cells: dict[tuple[int, int], Cell]  # (distinct load index, count) -> replay; count 0 absent
    cached: int = 0  # of the cells, those taken from the replay cache (not replayed this run)
    source: str = "replay"  # what filled the cells: the live policy's replays or the optimum

    def savings(self, plan: GrowthPlan) -> list[list[float]]:
        """Annual savings per plan year 1..H and candidate count (0 for no battery)."""
        return [[self.cell(plan, y, c)[0] for c in self.counts] for y in range(1, plan.horizon + 1)]

    def cycles(self, plan: GrowthPlan, year: int, count: int) -> float:
        """Equivalent full cycles a year the replay of plan year `year` with `count` clusters ran."""
        return self.cells[(self.row(plan, year), count)].cycles_per_year if count > 0 else 0.0

    def fade(self, plan: GrowthPlan) -> Fade:
        """The plan's fade rate at the cycles every cell ran (agent.economics.expansion's Fade)."""
        cycles = tuple(tuple(self.cycles(plan, y, c) for c in self.counts) for y in range(1, plan.horizon + 1))
        return Fade(plan.fade_pct_per_cycle / 100.0, cycles)

    def row(self, plan: GrowthPlan, year: int) -> int:
        return self.loads.index(plan.load_of(year))

    def cell(self, plan: GrowthPlan, year: int, count: int) -> tuple[float, float]:
        """(annual savings, grid peak kW) of plan year `year` with `count` clusters."""
        i = self.row(plan, year)
        if count == 0:
            return 0.0, self.baseline_peak_kw[i]
        c = self.cells[(i, count)]
        return c.annual_savings, c.peak_kw

    @property
    def replays(self) -> int:
        """Cells replayed in this run (the cached ones were replayed by an earlier one)."""
        return len(self.cells) - self.cached

    @property
    def wall_s(self) -> float:
        """The replays' wall time, cached ones at what they took when they ran."""
        return sum(c.wall_s for c in self.cells.values())


def distinct_loads(plan: GrowthPlan) -> tuple[YearLoad, ...]:
    out: list[YearLoad] = []
    for y in plan.years:
        if y not in out:
            out.append(y)
    return tuple(out)


SOURCES = ("replay", "optimum")
SOURCE_NOTE = {
    "replay": "annual savings of each (year, clusters): one replay of the year's load through the live policy,"
    " its annual estimate, net of wear at degradation_cost_per_kwh per kWh discharged",
    "optimum": "annual savings of each (year, clusters): the perfect-foresight optimum on the year's load"
    " (15-min means, ending at the starting SoC), annualised by billing month, net of wear: the most any"
    " controller saves, not what the live policy does",
}


def _replayed(
    s: SiteConfig, tariff: Tariff, econ: EconomicsConfig, tr: Trace, start_soc_pct: float, every: int,
    progress: ProgressFn | None, max_hold_s: float,
) -> tuple[Cell, dict[str, Any]]:  # fmt: skip
    """The live policy's annual savings on `tr` (as `analyze --sweep-clusters`), and its estimate."""
    res = replay(
        s, tariff, tr, start_soc_pct=start_soc_pct, progress=progress, decide_every=every, max_hold_s=max_hold_s
    )
    r = evaluate_replay(s, tariff, res, econ, s.control.ramp_limit_w_per_s, with_optimum=False)
    cycles = r["battery_use"]["equivalent_cycles"] or 0.0
    saving = r["roi"]["annual_savings"]
    cell = Cell(
        annual_savings=float(saving) if saving is not None else math.nan,
        basis=str(r["annual_estimate"]["basis"]),
        peak_kw=float(r["battery"]["peak_kw"]),
        cycles_per_year=cycles / r["hours"] * 8760.0 if r["hours"] > 0 else 0.0,
        wall_s=res.wall_s,
        steps=res.steps * res.substeps,  # the (sub-)steps the policy ran
    )
    return cell, r["annual_estimate"]


def _optimal(
    s: SiteConfig, tariff: Tariff, econ: EconomicsConfig, tr: Trace, start_soc_pct: float
) -> tuple[Cell, dict[str, Any]]:
    """The perfect-foresight optimum's annual savings on `tr` (agent.offline.replay.optimum_for: the
    most any controller saves on this load and tariff), annualised by billing month as a replay is."""
    if np.any(tr.net_w < 0):
        raise ConfigError(f"{tr.source}: the load net of PV goes below 0 W: the optimum does not model export")
    o = optimum_for(s, tariff, tr, start_soc_pct, start_soc_pct)
    bills = {
        "baseline": {"bill": o.baseline_bill.as_dict()},
        "battery": {"bill": o.bill.as_dict()},
        "savings": {"degradation": -o.degradation_cost},
    }
    power = battery_spec(s).power_w
    est = estimate(replay_months(bills, tariff, 0.0, power), econ.trailing_days)
    dt = float(o.timestamps[1] - o.timestamps[0]) if len(o.timestamps) > 1 else tr.step_s
    hours = len(o.timestamps) * dt / 3600.0
    capacity = sum(d.capacity_wh for d in s.clusters)
    cycles = float(np.sum(np.maximum(o.battery_w, 0.0))) * dt / 3600.0 / capacity if capacity > 0 else 0.0
    cell = Cell(
        annual_savings=est.annual if est.annual is not None else math.nan,
        basis=est.basis,
        peak_kw=peak_w(o.timestamps, o.grid_w, tariff.demand_interval_s, tariff.timezone) / 1000.0,
        cycles_per_year=cycles / hours * 8760.0 if hours > 0 else 0.0,
        wall_s=o.solve_s,
        steps=len(o.timestamps),
    )
    return cell, est.as_dict()


def savings_table(
    plan: GrowthPlan,
    site: SiteConfig,
    tariff: Tariff,
    econ: EconomicsConfig,
    traces: Sequence[Trace],
    *,
    source: str = "replay",
    start_soc_pct: float = 50.0,
    decide_every: int = 1,
    progress: Callable[[str], ProgressFn | None] = lambda label: None,
    cache: dict[str, dict[str, Any]] | None = None,
    code: str = "",
    max_hold_s: float = MAX_HOLD_S,
) -> SavingsTable:
    """Fill the table for every distinct load (`traces`, one per `distinct_loads(plan)`) and every
    candidate count above 0, once each. `source`: "replay", the live policy replayed (`site` carries
    the ramp limit and control settings), or "optimum", the perfect-foresight optimum (the bound a
    better controller could reach). `progress(label)` gives each replay its progress callback.
    `cache` (agent.offline.replay_cache): results by the key of their inputs and of `code` (the
    code's digest); found ones are not computed again, new ones are added to it. `max_hold_s`: the
    replays' longest decision inside a coarser trace step (agent.offline.replay.substeps_for)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    loads = distinct_loads(plan)
    if len(traces) != len(loads):
        raise ValueError(f"{len(traces)} traces for {len(loads)} distinct plan-year loads")
    cells: dict[tuple[int, int], Cell] = {}
    todo = [(i, c) for i in range(len(loads)) for c in plan.counts if c > 0]
    cached = 0
    for n, (i, c) in enumerate(todo, start=1):
        s = site.with_clusters(c, plan.costs.clusters_per_pcs)
        tr = traces[i]  # its samples, not its label (a file name: the same load from another path is the same)
        # the sub-steps only where they are replayed: the optimum reads the trace's interval means
        sub = substeps_for(tr.step_s, s.cycle_s, max_hold_s) if source == "replay" else 1
        k = replay_cache.key(
            code, source, s, tariff, tr.timestamps, tr.load_w, tr.pv_w, start_soc_pct, decide_every, econ, sub
        )
        if cache is not None and k in cache:
            cells[(i, c)] = Cell(**cache[k])
            cached += 1
            continue
        if source == "replay":
            label = f"replay {n}/{len(todo)}: {loads[i].label}, {c} clusters"
            cell, est = _replayed(s, tariff, econ, traces[i], start_soc_pct, decide_every, progress(label), max_hold_s)
        else:
            cell, est = _optimal(s, tariff, econ, traces[i], start_soc_pct)
        if est["annual_savings"] is None:
            raise ConfigError(
                f"{plan.path}: {loads[i].label}: {est['note']}; a growth plan needs a day of trace or more"
            )
        cells[(i, c)] = cell
        if cache is not None:
            cache[k] = asdict(cell)
    base = tuple(peak_w(tr.timestamps, tr.net_w, tariff.demand_interval_s, tariff.timezone) / 1000.0 for tr in traces)
    return SavingsTable(loads, base, plan.counts, cells, cached, source)


def _with_peaks(s: Schedule, plan: GrowthPlan, table: SavingsTable) -> dict[str, Any]:
    d = s.as_dict()
    years: list[dict[str, Any]] = d["years"]  # type: ignore[assignment]
    for row in years:
        y, n = int(row["year"]), int(row["installed"])
        row["load_peak_kw"] = table.cell(plan, y, 0)[1]
        row["grid_peak_kw"] = table.cell(plan, y, n)[1]
    return d


def limits_met(counts: Sequence[int], max_add: int, staged: Schedule, first: Schedule) -> list[str]:
    """Where the candidate grid or the yearly limit, not the economics, stopped a plan: the owner
    should widen them before trusting it (an optimum on its grid's edge is the edge's)."""
    notes = []
    last = staged.rows[-1].installed if staged.rows else 0
    if last > 0 and last == counts[-1]:
        notes.append(
            f"the staged plan ends at the largest candidate ({last} clusters): a larger size may pay more;"
            " add larger counts to [plan] clusters"
        )
    full = [r.year for r in staged.rows if r.add == max_add and max_add < counts[-1]]
    if full:
        notes.append(
            f"the staged plan adds max_add_per_year ({max_add}) in year(s) {', '.join(map(str, full))}: the limit binds"
        )
    if any(c > max_add for c in counts):
        size = first.rows[0].installed if first.rows else 0
        notes.append(f"day one can buy at most max_add_per_year ({max_add}) clusters at once (it buys {size})")
    return notes


def expansion_report(plan: GrowthPlan, table: SavingsTable, currency: str, notes: Sequence[str] = ()) -> dict[str, Any]:
    """The staged plan, day one and no battery, with the table, the assumptions and `notes` (the
    caller's, after those on the plan's limits) (JSON-ready)."""
    counts, costs = list(plan.counts), plan.costs
    sav = table.savings(plan)
    fade = table.fade(plan)
    plans = {
        "staged": optimal(counts, sav, costs, fade),
        "day_one": day_one(counts, sav, costs, fade),
        "no_battery": evaluate("no battery", [0] * plan.horizon, counts, sav, costs, fade),
    }
    # what the first clusters of each plan hold in the last year, % of nameplate (mid-year)
    first = {k: first_stage_pct(p, counts, fade) for k, p in plans.items()}
    return {
        "growth_plan": str(plan.path),
        "savings_source": table.source,
        "currency": currency,
        "horizon_years": plan.horizon,
        "discount_rate": costs.discount_rate,
        "candidates": counts,
        "max_add_per_year": costs.max_add,
        "clusters_per_pcs": costs.clusters_per_pcs,
        "prices": {
            "cluster": list(costs.cluster_price),
            "pcs": list(costs.pcs_price),
            "stage": costs.stage_cost,
            "om_per_cluster": costs.om_per_cluster,
            "om_fixed": costs.om_fixed,
        },
        "savings_table": [
            {
                "year": y,
                "load": plan.load_of(y).label,
                "load_peak_kw": table.cell(plan, y, 0)[1],
                "annual_savings": {str(c): s for c, s in zip(counts, sav[y - 1], strict=True)},
                "grid_peak_kw": {str(c): table.cell(plan, y, c)[1] for c in counts},
                "cycles_per_year": {str(c): table.cycles(plan, y, c) for c in counts},
            }
            for y in range(1, plan.horizon + 1)
        ],
        "plans": {k: _with_peaks(v, plan, table) for k, v in plans.items()},
        "replays": {
            "count": table.replays,
            "cached": table.cached,
            "steps": sum(c.steps for c in table.cells.values()),
            "wall_s": table.wall_s,
            "build": BUILD,
            "estimate_basis": sorted({c.basis for c in table.cells.values()}),
        },
        "capacity_fade": {
            "pct_per_cycle": plan.fade_pct_per_cycle,
            "floor_pct": fade.floor * 100.0,
            "first_clusters_last_year_pct": first,
            "search": "exact" if plans["staged"].exact else "stopped at its node limit: the best schedule found",
        },
        "notes": [*limits_met(counts, costs.max_add, plans["staged"], plans["day_one"]), *notes],
        "assumptions": [
            SOURCE_NOTE[table.source],
            "purchases at the start of a plan year, savings and O&M at its end (as the single-size ROI)",
            "no salvage value at the horizon's end; clusters are never removed nor replaced (keep the"
            " horizon within their life); years after the last [[year]] keep its load",
            "capacity fade: each stage's clusters lose fade_pct_per_cycle of nameplate per equivalent full"
            " cycle from their purchase, at the cycles each year's replay of the installed count ran; a"
            " year's savings are its row interpolated linearly at the clusters' mid-year capacity (the"
            " replays themselves run at nameplate)",
        ],
    }


WHAT = {"replay": "the live policy replayed", "optimum": "the perfect-foresight optimum, a bound"}


NAMES = (("staged", "staged"), ("day_one", "day one"), ("no_battery", "no battery"))


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f} %"


def _money(x: float) -> str:
    return f"{x:,.0f}"


def _plan_line(name: str, p: dict[str, Any]) -> str:
    sched = ", ".join(f"y{s['year']}: +{s['add']}" for s in p["schedule"]) or "-"
    irr = f"{p['irr']:.1%}" if p["irr"] is not None else "-"
    pb = f"{p['payback_years']:.1f}" if p["payback_years"] is not None else "-"
    return f"{name:<12}{sched:<34}{_money(p['capex_total']):>14}{_money(p['npv']):>16}{irr:>8}{pb:>10}"


def expansion_text(rep: dict[str, Any]) -> str:
    """The owner's view: the savings table, the three plans, the staged plan year by year."""
    cur, counts = rep["currency"], rep["candidates"]
    out = [
        f"Staged expansion over {rep['horizon_years']} years ({rep['growth_plan']}; {cur},"
        f" discount rate {rep['discount_rate']:.1%}, at most {rep['max_add_per_year']} clusters a year)",
        "",
        f"annual savings by installed clusters (net of battery wear; {WHAT[rep['savings_source']]}):",
        f"{'year':>4}  {'load':<24}{'peak kW':>10}" + "".join(f"{c:>12}" for c in counts),
    ]
    for r in rep["savings_table"]:
        out.append(
            f"{r['year']:>4}  {r['load'][:23]:<24}{r['load_peak_kw']:>10,.0f}"
            + "".join(f"{r['annual_savings'][str(c)]:>12,.0f}" for c in counts)
        )
    out += ["", f"{'plan':<12}{'schedule':<34}{'capex':>14}{'NPV':>16}{'IRR':>8}{'payback y':>10}"]
    for key, name in NAMES:
        out.append(_plan_line(name, rep["plans"][key]))
    out += [
        "",
        "staged plan, year by year:",
        f"{'year':>4}{'add':>5}{'clusters':>9}{'held':>8}{'load peak kW':>14}{'grid peak kW':>14}{'savings':>13}"
        f"{'O&M':>11}{'capex':>13}{'cash':>13}{'cum. disc.':>14}",
    ]
    for r in rep["plans"]["staged"]["years"]:
        out.append(
            f"{r['year']:>4}{r['add']:>5}{r['installed']:>9}{r['held']:>8.1f}"
            f"{r['load_peak_kw']:>14,.0f}{r['grid_peak_kw']:>14,.0f}"
            f"{r['savings']:>13,.0f}{r['om']:>11,.0f}{r['capex']:>13,.0f}{r['cash']:>13,.0f}"
            f"{r['cumulative_discounted']:>14,.0f}"
        )
    rp, fade = rep["replays"], rep["capacity_fade"]
    out += [
        "",
        ("replays" if rep["savings_source"] == "replay" else "optimum solves")
        + f": {rp['count']}"
        + (f" run, {rp['cached']} from the cache" if rp["cached"] else "")
        + f" ({rp['steps']:,} steps; {rp['wall_s']:.1f} s{' when they ran' if rp['cached'] else ''},"
        f" {rp['build']} build);"
        f" annual estimates from {', '.join(rp['estimate_basis']) or '-'}",
        f"capacity fade: {fade['pct_per_cycle']:g} % of nameplate per equivalent full cycle from each stage's"
        f" purchase ('held': the clusters' mid-year capacity, in nameplate clusters); the first clusters hold "
        + ", ".join(
            f"{_pct(fade['first_clusters_last_year_pct'][k])} ({name})" for k, name in NAMES if k != "no_battery"
        )
        + f" in year {rep['horizon_years']}; the staged plan's search: {fade['search']}",
    ]
    out += [f"note: {n}" for n in rep["notes"]]
    out += [f"assumption: {a}" for a in rep["assumptions"]]
    return "\n".join(out)
