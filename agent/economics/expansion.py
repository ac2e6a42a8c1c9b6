"""Staged expansion: when to add how many clusters, by dynamic programming over (year, installed),
or, with capacity fade, by an exact branch and bound over the schedules.

Pure arithmetic over a table the offline replay fills in (agent.offline.expansion): the annual
savings of each plan year's load with each candidate installed cluster count.

Timing, the same convention as agent.economics.roi (capex at year 0, cash at the end of each year):
clusters added in plan year y (1..H) are paid at the start of that year, time y-1, discounted
by (1 + r)^-(y-1); the year's savings less O&M arrive at its end, time y, discounted by
(1 + r)^-y. A purchase costs the clusters at that year's price, the PCS units the new clusters
need beyond the free slots of those already installed (`clusters_per_pcs` to a PCS), and a fixed
cost per stage (works, commissioning) in every year that adds any. O&M is per installed cluster
per year plus a fixed amount in every year with a battery. Nothing is sold back at the end of the
horizon (no salvage value) and clusters are never removed.

The optimum: V_{H+1}(n) = 0; V_y(n) = max over m >= n in the candidate grid, m - n <= max_add, of
  -purchase_y(n -> m) (1 + r)^-(y-1) + (S_y(m) - O&M(m)) (1 + r)^-y + V_{y+1}(m),
from n = 0 before year 1. That is exact over the grid: every schedule the grid allows is one
path, including "everything on day one" (m in year 1, nothing after) and "no battery" (0
throughout), so the staged plan's NPV is at least theirs. Ties go to the smaller purchase.
Every schedule, the optimum's included, is then priced by the one function `evaluate`, so the
NPV the report shows is the sum of its own table's discounted cash flows.

Capacity fade (`Fade`, the simulator's model: a cluster holds max(floor, 1 - per_cycle x its
equivalent full cycles) of nameplate). Every installed cluster runs the fleet's equivalent cycles
(the dispatch balances SoC): in year y with m clusters, the cycles the table's cell (y, m) ran. A
stage bought at the start of year s has, by the middle of year y, run the cycles of years s..y-1
and half of year y's; the fleet's held capacity in year y (in nameplate clusters) is the sum over
its stages, and the year's savings are the table's row interpolated linearly at it (0 at 0
clusters): a stage bought in year 1 holds less in year 10 than one bought in year 8. O&M and
purchases stay per nameplate cluster. Interpolating is the table's own model of a smaller battery
(linear between replayed sizes: where savings are concave in size, a slight understatement); the
cycles are the nameplate cell's (a faded fleet runs a little fewer nameplate-equivalent cycles:
its fade, if anything, slightly overstated).

With fade a year's value depends on the schedule's history (which stages, at which cycles), so the
recursion above no longer holds. The optimum is then found by depth-first branch and bound over the
schedules: a partial schedule's value so far, plus the value-to-go of the recursion above run on
each year's savings capped at the best of the row up to that size (a faded fleet of m nameplate
clusters holds at most m, and the interpolated row is at most its best value up to m), bounds every
completion from above; a branch whose bound is not above the best schedule found is cut. The first
incumbent is the nameplate optimum priced with fade. Exact, unless `max_nodes` partial schedules
are visited first (then the best found, and `exact` is False).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ExpansionCosts:
    """Prices and limits of a growth plan (currency; plan years 1..H index the tuples)."""

    cluster_price: tuple[float, ...]  # per cluster bought at the start of year y
    pcs_price: tuple[float, ...]  # per PCS bought at the start of year y
    clusters_per_pcs: int
    stage_cost: float  # fixed cost of each year that adds clusters (installation, commissioning)
    om_per_cluster: float  # O&M per installed cluster per year
    om_fixed: float  # O&M per year while any cluster is installed
    discount_rate: float
    max_add: int  # most clusters one year can add

    def __post_init__(self) -> None:
        if len(self.pcs_price) != len(self.cluster_price):
            raise ValueError(
                f"pcs_price has {len(self.pcs_price)} years, cluster_price {len(self.cluster_price)}: one per plan year"
            )
        if self.clusters_per_pcs < 1:
            raise ValueError(f"clusters_per_pcs must be >= 1, got {self.clusters_per_pcs}")
        if self.max_add < 0:
            raise ValueError(f"max_add must be >= 0, got {self.max_add}")

    @property
    def years(self) -> int:
        return len(self.cluster_price)

    def pcs_for(self, clusters: int) -> int:
        return -(-clusters // self.clusters_per_pcs)

    def purchase(self, year: int, have: int, to: int) -> float:
        """What going from `have` to `to` clusters costs at the start of plan year `year` (1-based)."""
        add = to - have
        if add <= 0:
            return 0.0
        pcs = self.pcs_for(to) - self.pcs_for(have)
        return self.cluster_price[year - 1] * add + self.pcs_price[year - 1] * pcs + self.stage_cost

    def om(self, installed: int) -> float:
        return self.om_per_cluster * installed + self.om_fixed if installed > 0 else 0.0

    def discount(self, t: float) -> float:
        return float((1.0 + self.discount_rate) ** -t)


@dataclass(frozen=True, slots=True)
class Fade:
    """Capacity fade per equivalent full cycle, and the cycles a year each table cell ran (module doc)."""

    per_cycle: float  # fraction of nameplate lost per equivalent full cycle (0.003 %/cycle: 3e-5)
    cycles: tuple[tuple[float, ...], ...]  # equivalent full cycles a year, per plan year and candidate count
    floor: float = 0.05  # the least a cluster holds (simulators.physics: 5 % of nameplate)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.per_cycle) and 0.0 <= self.per_cycle < 1.0):
            raise ValueError(f"fade per_cycle must be a fraction of nameplate in [0, 1), got {self.per_cycle!r}")
        if not all(math.isfinite(c) and c >= 0.0 for row in self.cycles for c in row):
            raise ValueError("fade cycles must be finite numbers >= 0")

    def holds(self, cycles: float) -> float:
        """The fraction of nameplate a cluster holds after `cycles` equivalent full cycles."""
        return max(self.floor, 1.0 - self.per_cycle * cycles)


@dataclass(frozen=True, slots=True)
class _Fleet:
    """What a schedule has built by the start of a year: the installed count, the equivalent full
    cycles every cluster bought on day one has run, and each stage's (those cycles at its purchase,
    clusters)."""

    installed: int = 0
    cycles: float = 0.0
    stages: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True, slots=True)
class YearRow:
    """One plan year of a schedule (currency)."""

    year: int
    add: int
    installed: int
    capex: float  # paid at the start of the year
    savings: float  # the year's annual savings with `installed` clusters (net of battery wear)
    om: float
    cash: float  # savings - om - capex
    discounted: float  # -capex (1 + r)^-(y-1) + (savings - om) (1 + r)^-y
    cumulative_discounted: float
    held: float = math.nan  # nameplate clusters the fleet holds in mid-year after fade (= installed without)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A purchase schedule priced year by year."""

    name: str
    rows: tuple[YearRow, ...]
    npv: float
    payback_years: float | None  # from day one until the cumulative cash stays >= 0; None: never
    irr: float | None  # None: no single rate makes the NPV 0 (nothing bought, or none / several roots)
    exact: bool = True  # False: the fade search stopped at its node limit (the best schedule it found)

    @property
    def adds(self) -> list[tuple[int, int]]:
        """(year, clusters added) for the years that buy."""
        return [(r.year, r.add) for r in self.rows if r.add > 0]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "schedule": [{"year": y, "add": a} for y, a in self.adds],
            "npv": self.npv,
            "payback_years": self.payback_years,
            "irr": self.irr,
            "exact": self.exact,
            "capex_total": sum(r.capex for r in self.rows),
            "years": [
                {
                    "year": r.year,
                    "add": r.add,
                    "installed": r.installed,
                    "held": r.held,
                    "capex": r.capex,
                    "savings": r.savings,
                    "om": r.om,
                    "cash": r.cash,
                    "discounted": r.discounted,
                    "cumulative_discounted": r.cumulative_discounted,
                }
                for r in self.rows
            ],
        }


def _check(
    counts: Sequence[int], savings: Sequence[Sequence[float]], costs: ExpansionCosts, fade: Fade | None = None
) -> None:
    if list(counts) != sorted(set(counts)) or not counts or counts[0] != 0:
        raise ValueError(f"candidate counts must rise strictly from 0, got {list(counts)}")
    if len(savings) != costs.years:
        raise ValueError(f"savings has {len(savings)} years, the prices {costs.years}")
    for y, row in enumerate(savings, start=1):
        if len(row) != len(counts):
            raise ValueError(f"savings of year {y}: {len(row)} values for {len(counts)} candidate counts")
        if not all(math.isfinite(s) for s in row):
            raise ValueError(f"savings of year {y}: not all finite: {list(row)}")
    got = [len(r) for r in fade.cycles] if fade is not None else None
    if got is not None and got != [len(counts)] * len(savings):
        n = len(counts)
        raise ValueError(f"fade cycles: expected {len(savings)} years of {n} counts (as the savings), got {got}")


def _year_value(costs: ExpansionCosts, year: int, have: int, to: int, saving: float) -> tuple[float, float]:
    """(capex, discounted value) of plan year `year` going from `have` to `to` clusters."""
    capex = costs.purchase(year, have, to)
    return capex, -capex * costs.discount(year - 1) + (saving - costs.om(to)) * costs.discount(year)


def interpolate(counts: Sequence[int], row: Sequence[float], clusters: float) -> float:
    """A year's savings row at `clusters` (0 .. counts[-1]), linear between candidates; exact at one."""
    i = bisect_right(counts, clusters) - 1
    if i >= len(counts) - 1:
        return row[-1]
    if clusters <= counts[i]:
        return row[i]
    w = (clusters - counts[i]) / (counts[i + 1] - counts[i])
    return row[i] + w * (row[i + 1] - row[i])


def _faded_year(
    counts: Sequence[int], savings: Sequence[Sequence[float]], fade: Fade, year: int, fleet: _Fleet, j: int
) -> tuple[float, float, _Fleet]:
    """(savings, held clusters, the fleet at the next year's start) of plan year `year` with
    counts[j] installed, after `fleet` (the module doc's fade)."""
    to = counts[j]
    stages = (*fleet.stages, (fleet.cycles, to - fleet.installed)) if to > fleet.installed else fleet.stages
    run = fade.cycles[year - 1][j]
    mid = fleet.cycles + run / 2.0
    held = sum(n * fade.holds(mid - k0) for k0, n in stages)
    return interpolate(counts, savings[year - 1], held), held, _Fleet(to, fleet.cycles + run, stages)


def evaluate(
    name: str,
    installed: Sequence[int],
    counts: Sequence[int],
    savings: Sequence[Sequence[float]],
    costs: ExpansionCosts,
    fade: Fade | None = None,
    exact: bool = True,
) -> Schedule:
    """Price a schedule: `installed[y-1]` clusters during plan year y (each one of `counts`), their
    savings faded by `fade` (None: at nameplate). `exact`: whether a search that chose it was."""
    _check(counts, savings, costs, fade)
    if len(installed) != costs.years:
        raise ValueError(f"schedule {name!r}: {len(installed)} years for a {costs.years}-year plan")
    index = {c: i for i, c in enumerate(counts)}
    rows: list[YearRow] = []
    have, cum = 0, 0.0
    fleet = _Fleet()
    for y, to in enumerate(installed, start=1):
        if to not in index or to < have:
            raise ValueError(f"schedule {name!r}: year {y}: {to} clusters is not a candidate count >= {have}")
        if to - have > costs.max_add:
            raise ValueError(
                f"schedule {name!r}: year {y}: adds {to - have} clusters, more than max_add {costs.max_add}"
            )
        if fade is None:
            saving, held = savings[y - 1][index[to]], float(to)
        else:
            saving, held, fleet = _faded_year(counts, savings, fade, y, fleet, index[to])
        capex, value = _year_value(costs, y, have, to, saving)
        cum += value
        om = costs.om(to)
        rows.append(YearRow(y, to - have, to, capex, saving, om, saving - om - capex, value, cum, held))
        have = to
    return Schedule(name, tuple(rows), cum, payback(rows), irr(flows(rows)), exact)


def first_stage_pct(s: Schedule, counts: Sequence[int], fade: Fade) -> float | None:
    """% of nameplate the schedule's first stage holds in the middle of its last year (the module
    doc's convention: the cycles of the years since its purchase and half the last's); None when
    nothing is bought."""
    bought = next((r.year for r in s.rows if r.add > 0), None)
    if bought is None:
        return None
    index = {c: i for i, c in enumerate(counts)}
    run = [fade.cycles[r.year - 1][index[r.installed]] for r in s.rows]
    return 100.0 * fade.holds(sum(run[bought - 1 : -1]) + run[-1] / 2.0)


def _backward(
    counts: Sequence[int], savings: Sequence[Sequence[float]], costs: ExpansionCosts
) -> tuple[list[list[float]], list[list[int]]]:
    """The module doc's recursion: V_y and the best next count's index, by installed index, for
    y = 1..H+1 (V_{H+1} = 0; no choice there)."""
    n = len(counts)
    later = [0.0] * n  # V_{y+1}, by installed index
    values: list[list[float]] = [later]
    choice: list[list[int]] = []
    for y in range(costs.years, 0, -1):
        now, pick = [0.0] * n, [0] * n
        for i in range(n):
            best, arg = -math.inf, i
            for j in range(i, n):
                if counts[j] - counts[i] > costs.max_add:
                    break  # counts rise: every later j adds more
                v = _year_value(costs, y, counts[i], counts[j], savings[y - 1][j])[1] + later[j]
                if v > best:  # strict: a tie keeps the smaller purchase
                    best, arg = v, j
            now[i], pick[i] = best, arg
        later = now
        values.append(now)
        choice.append(pick)
    values.reverse()
    choice.reverse()
    return values, choice


MAX_NODES = 2_000_000  # partial schedules the fade search visits at most (about a minute)


def optimal(
    counts: Sequence[int],
    savings: Sequence[Sequence[float]],
    costs: ExpansionCosts,
    fade: Fade | None = None,
    max_nodes: int = MAX_NODES,
) -> Schedule:
    """The schedule of the highest NPV over the candidate grid: the module doc's recursion, or with
    `fade`, its branch and bound."""
    _check(counts, savings, costs, fade)
    _, choice = _backward(counts, savings, costs)
    installed, i = [], 0
    for pick in choice:
        i = pick[i]
        installed.append(counts[i])
    if fade is None:
        return evaluate("staged", installed, counts, savings, costs)
    return _search(counts, savings, costs, fade, installed, max_nodes)


def _search(
    counts: Sequence[int],
    savings: Sequence[Sequence[float]],
    costs: ExpansionCosts,
    fade: Fade,
    start: list[int],
    max_nodes: int,
) -> Schedule:
    """The module doc's branch and bound, from the schedule `start` (the nameplate optimum)."""
    capped = [[max(row[: j + 1]) for j in range(len(row))] for row in savings]
    bound, _ = _backward(counts, capped, costs)  # bound[y][j]: value-to-go from year y + 1 (0-based y)
    best = [evaluate("", start, counts, savings, costs, fade).npv]
    best_path = list(start)
    path: list[int] = []
    nodes = [0]
    horizon, n = costs.years, len(counts)

    def visit(y: int, i: int, fleet: _Fleet, acc: float) -> None:  # y: 1-based plan year to decide
        for j in range(i, n):
            if counts[j] - counts[i] > costs.max_add or nodes[0] >= max_nodes:
                return
            nodes[0] += 1
            saving, _, nxt = _faded_year(counts, savings, fade, y, fleet, j)
            value = acc + _year_value(costs, y, counts[i], counts[j], saving)[1]
            if value + bound[y][j] <= best[0] + 1e-9 * max(1.0, abs(best[0])):
                continue  # no completion beats the best found (a tie keeps it)
            path.append(counts[j])
            if y == horizon:
                best[0], best_path[:] = value, path
            else:
                visit(y + 1, j, nxt, value)
            path.pop()

    visit(1, 0, _Fleet(), 0.0)
    return evaluate("staged", best_path, counts, savings, costs, fade, exact=nodes[0] < max_nodes)


def day_one(
    counts: Sequence[int], savings: Sequence[Sequence[float]], costs: ExpansionCosts, fade: Fade | None = None
) -> Schedule:
    """Everything bought in year 1: the size with the best NPV on the final year's load (the size
    an owner sizing for the future would pick: its annual savings and cycles as if they held from
    day one), priced on the real growth path. Sizes beyond `max_add` cannot be bought at once: not
    offered."""
    _check(counts, savings, costs, fade)
    flat = [list(savings[-1])] * costs.years
    flat_fade = None if fade is None else Fade(fade.per_cycle, (fade.cycles[-1],) * costs.years, fade.floor)
    best, size = -math.inf, 0
    for c in counts:
        if c == 0 or c > costs.max_add:
            continue
        v = evaluate("", [c] * costs.years, counts, flat, costs, flat_fade).npv
        if v > best:
            best, size = v, c
    return evaluate("day one", [size] * costs.years, counts, savings, costs, fade)


def flows(rows: Sequence[YearRow]) -> list[float]:
    """Cash at times 0..H: the purchase at the start of year t+1 less, and the savings of year t."""
    out = [0.0] * (len(rows) + 1)
    for r in rows:
        out[r.year - 1] -= r.capex
        out[r.year] += r.savings - r.om
    return out


def payback(rows: Sequence[YearRow]) -> float | None:
    """Years from day one until the cumulative cash (purchases at the start of a year, the year's
    savings less O&M earned evenly over it) turns >= 0 for the rest of the horizon; None when
    nothing is bought or it ends below 0. With one purchase and level savings: capex / cash."""
    if not any(r.capex > 0 for r in rows):
        return None
    cum, since = 0.0, 0.0
    for r in rows:
        start = cum - r.capex
        end = start + r.savings - r.om
        if end < 0.0:
            since = math.inf  # below 0 at the year's end: not paid back (yet)
        elif start < 0.0:  # crosses 0 inside the year (end >= 0 > start: the year earns)
            since = r.year - 1 + -start / (end - start)
        cum = end
    return None if math.isinf(since) else since


IRR_LO, IRR_HI = -0.99, 100.0


def _npv_at(cash: Sequence[float], rate: float) -> float:
    return sum(c * (1.0 + rate) ** -t for t, c in enumerate(cash))


def irr(cash: Sequence[float]) -> float | None:
    """The rate at which `cash` (at times 0..H) has NPV 0, when exactly one exists in -99 %..10,000 %.

    A staged plan's cash can change sign several times (a purchase after years of savings), and
    such a series can have several roots: then, as with none, there is no IRR to state."""
    if not any(cash):
        return None
    # a geometric grid on 1 + rate: sign changes of the NPV bracket the roots
    grid = [float((1.0 + IRR_LO) * ((1.0 + IRR_HI) / (1.0 + IRR_LO)) ** (k / 400.0)) - 1.0 for k in range(401)]
    vals = [_npv_at(cash, r) for r in grid]
    brackets = [k for k in range(400) if (vals[k] > 0) != (vals[k + 1] > 0)]
    if len(brackets) != 1:
        return None
    lo, hi = grid[brackets[0]], grid[brackets[0] + 1]
    up = vals[brackets[0]] > 0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if (_npv_at(cash, mid) > 0) == up:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
