"""Staged expansion: the dynamic programme on hand-checked tables (agent.economics.expansion)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from agent.economics.expansion import (
    ExpansionCosts,
    Fade,
    day_one,
    evaluate,
    first_stage_pct,
    flows,
    interpolate,
    irr,
    optimal,
)
from agent.economics.roi import npv
from agent.offline.expansion import limits_met

# Two plan years, candidates 0 / 1 / 2 clusters, a PCS per 2 clusters, discount 25 % (factors 1,
# 0.8 and 0.64: exact by hand). Year 1 buys at 200 per cluster, year 2 at 150; a PCS costs 50 and a
# stage 10; O&M 5 per cluster-year.
COUNTS = [0, 1, 2]
SAVINGS = [[0.0, 300.0, 380.0], [0.0, 350.0, 700.0]]


def costs(max_add: int = 2) -> ExpansionCosts:
    return ExpansionCosts(
        cluster_price=(200.0, 150.0),
        pcs_price=(50.0, 50.0),
        clusters_per_pcs=2,
        stage_cost=10.0,
        om_per_cluster=5.0,
        om_fixed=0.0,
        discount_rate=0.25,
        max_add=max_add,
    )


# Every schedule by hand (purchase x factor at its start, (savings - O&M) x factor at its end):
#   0,0:  0
#   0,1:  -(150+50+10) x 0.8 + (350-5) x 0.64                             =  52.8
#   0,2:  -(300+50+10) x 0.8 + (700-10) x 0.64                            = 153.6
#   1,1:  -(200+50+10) + (300-5) x 0.8 + (350-5) x 0.64                   = 196.8
#   1,2:  -260 + 236 - (150+0+10) x 0.8 + 690 x 0.64  (the PCS has room)  = 289.6
#   2,2:  -(400+50+10) + (380-10) x 0.8 + 441.6                           = 277.6
BY_HAND = {(0, 0): 0.0, (0, 1): 52.8, (0, 2): 153.6, (1, 1): 196.8, (1, 2): 289.6, (2, 2): 277.6}


def test_every_schedule_priced_as_by_hand() -> None:
    for sched, value in BY_HAND.items():
        assert evaluate("x", list(sched), COUNTS, SAVINGS, costs()).npv == pytest.approx(value, abs=1e-9)


def test_the_optimum_buys_one_then_one() -> None:
    s = optimal(COUNTS, SAVINGS, costs())
    assert s.adds == [(1, 1), (2, 1)]
    assert s.npv == pytest.approx(289.6, abs=1e-9)
    assert [r.installed for r in s.rows] == [1, 2]
    assert [r.capex for r in s.rows] == [260.0, 160.0]
    assert [r.cash for r in s.rows] == pytest.approx([35.0, 530.0])
    assert [r.cumulative_discounted for r in s.rows] == pytest.approx([-24.0, 289.6])
    # cumulative cash: -260 +295 over year 1 (crosses 0 at 260/295), -160 at year 2's start (-125),
    # +690 over year 2: >= 0 from 1 + 125/690 on
    assert s.payback_years == pytest.approx(1.0 + 125.0 / 690.0, abs=1e-12)
    assert flows(s.rows) == pytest.approx([-260.0, 135.0, 690.0])
    assert s.irr is not None and -260.0 + 135.0 / (1 + s.irr) + 690.0 / (1 + s.irr) ** 2 == pytest.approx(0, abs=1e-6)


def random_costs(rng: random.Random, years: int) -> ExpansionCosts:
    return ExpansionCosts(
        cluster_price=tuple(rng.uniform(50, 200) for _ in range(years)),
        pcs_price=tuple(rng.uniform(0, 60) for _ in range(years)),
        clusters_per_pcs=rng.choice([1, 2, 3]),
        stage_cost=rng.uniform(0, 50),
        om_per_cluster=rng.uniform(0, 10),
        om_fixed=rng.uniform(0, 20),
        discount_rate=rng.uniform(0, 0.2),
        max_add=2,
    )


def best_of_all(counts: list[int], sav: list[list[float]], c: ExpansionCosts, fade: Fade | None = None) -> float:
    """The highest NPV of every schedule adding 0..2 clusters a year, by enumeration."""
    best = -math.inf
    for path in itertools.product(counts, repeat=c.years):
        steps = [b - a for a, b in zip((0, *path), path, strict=False)]
        if any(s < 0 or s > 2 for s in steps):
            continue
        best = max(best, evaluate("x", list(path), counts, sav, c, fade).npv)
    return best


def test_the_optimum_is_the_best_of_every_schedule_on_random_tables() -> None:
    # exhaustive check of exactness: 4 years, 4 counts, max 2 a year, 200 seeded tables
    rng = random.Random(16)
    counts = [0, 1, 2, 4]
    for _ in range(200):
        c = random_costs(rng, 4)
        sav = [[0.0, *sorted(rng.uniform(0, 150) for _ in range(3))] for _ in range(4)]
        best = best_of_all(counts, sav, c)
        opt = optimal(counts, sav, c)
        assert opt.npv == pytest.approx(best, abs=1e-9)
        assert opt.npv >= day_one(counts, sav, c).npv - 1e-9 and opt.npv >= -1e-12


def test_day_one_is_sized_for_the_final_year_and_priced_on_the_real_path() -> None:
    # flat final-year savings: 1 cluster -260 + 345 x 1.44 = 236.8; 2 clusters -460 + 690 x 1.44 = 533.6
    d = day_one(COUNTS, SAVINGS, costs())
    assert d.adds == [(1, 2)]
    assert d.npv == pytest.approx(277.6, abs=1e-9)  # on the real, growing savings
    # -460 + 370 in year 1 leaves -90, which year 2's 690 recovers 90/690 of the way in
    assert d.payback_years == pytest.approx(1.0 + 90.0 / 690.0, abs=1e-12)
    none = evaluate("no battery", [0, 0], COUNTS, SAVINGS, costs())
    assert (none.npv, none.payback_years, none.irr, none.adds) == (0.0, None, None, [])


def test_max_add_limits_the_plan_and_day_one() -> None:
    s = optimal(COUNTS, SAVINGS, costs(max_add=1))
    assert s.adds == [(1, 1), (2, 1)]  # the same: it never needed 2 at once
    d = day_one(COUNTS, SAVINGS, costs(max_add=1))
    assert d.adds == [(1, 1)] and d.npv == pytest.approx(196.8, abs=1e-9)
    with pytest.raises(ValueError, match=r"schedule 'x': year 1: adds 2 clusters, more than max_add 1"):
        evaluate("x", [2, 2], COUNTS, SAVINGS, costs(max_add=1))


def test_a_tie_keeps_the_smaller_purchase() -> None:
    # free clusters that save nothing: every schedule is worth 0; the optimum buys none
    c = ExpansionCosts((0.0, 0.0), (0.0, 0.0), 1, 0.0, 0.0, 0.0, 0.1, 2)
    s = optimal(COUNTS, [[0.0, 0.0, 0.0]] * 2, c)
    assert (s.adds, s.npv) == ([], 0.0)


def test_one_purchase_and_level_savings_match_the_single_size_roi() -> None:
    # the convention of agent.economics.roi: capex at 0, level cash at the end of years 1..N
    c = ExpansionCosts((1000.0,) * 10, (0.0,) * 10, 1, 200.0, 10.0, 30.0, 0.07, 5)
    s = evaluate("x", [2] * 10, COUNTS, [[0.0, 0.0, 400.0]] * 10, c)
    cash = 400.0 - 2 * 10.0 - 30.0
    assert s.npv == pytest.approx(npv(0.07, 2200.0, cash, 10), abs=1e-9)
    assert s.payback_years == pytest.approx(2200.0 / cash, abs=1e-12)
    assert s.irr is not None and npv(s.irr, 2200.0, cash, 10) == pytest.approx(0.0, abs=1e-6)


def test_irr_none_when_the_cash_has_two_roots_or_none() -> None:
    # -100 + 230 x - 132 x^2 = 0 at x = 1/1.1 and 1/1.2: both 10 % and 20 % make the NPV 0
    assert irr([-100.0, 230.0, -132.0]) is None
    # -100 + 10 x + 10 x^2 = 0 at x = (sqrt(41) - 1) / 2: a rate of 2 / (sqrt(41) - 1) - 1, about -63 %
    assert irr([-100.0, 10.0, 10.0]) == pytest.approx(2.0 / (math.sqrt(41.0) - 1.0) - 1.0, abs=1e-9)
    assert irr([0.0, 0.0]) is None
    assert irr([-100.0, 110.0]) == pytest.approx(0.10, abs=1e-9)


def test_payback_none_when_never_recovered() -> None:
    s = evaluate("x", [1, 1], COUNTS, [[0.0, 10.0, 0.0], [0.0, 10.0, 0.0]], costs())
    assert s.payback_years is None and s.npv < 0


@pytest.mark.parametrize(
    ("counts", "savings", "message"),
    [
        ([1, 2], SAVINGS, "candidate counts must rise strictly from 0"),
        ([0, 2, 1], SAVINGS, "candidate counts must rise strictly from 0"),
        (COUNTS, SAVINGS[:1], "savings has 1 years, the prices 2"),
        (COUNTS, [[0.0, 1.0], [0.0, 1.0, 2.0]], "savings of year 1: 2 values for 3 candidate counts"),
        (COUNTS, [[0.0, 1.0, 2.0], [0.0, math.nan, 2.0]], "savings of year 2: not all finite"),
    ],
)
def test_bad_tables_are_named(counts: list[int], savings: list[list[float]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        optimal(counts, savings, costs())


def test_notes_say_where_the_grid_or_the_limit_stopped_the_plan() -> None:
    s1, d1 = optimal(COUNTS, SAVINGS, costs(max_add=1)), day_one(COUNTS, SAVINGS, costs(max_add=1))
    assert limits_met(COUNTS, 1, s1, d1) == [
        "the staged plan ends at the largest candidate (2 clusters): a larger size may pay more;"
        " add larger counts to [plan] clusters",
        "the staged plan adds max_add_per_year (1) in year(s) 1, 2: the limit binds",
        "day one can buy at most max_add_per_year (1) clusters at once (it buys 1)",
    ]
    s2, d2 = optimal(COUNTS, SAVINGS, costs()), day_one(COUNTS, SAVINGS, costs())
    assert limits_met(COUNTS, 2, s2, d2) == [limits_met(COUNTS, 1, s1, d1)[0]]
    small = [[0.0, 300.0, 300.0], [0.0, 350.0, 350.0]]  # a second cluster earns nothing: stop at 1
    s3, d3 = optimal(COUNTS, small, costs()), day_one(COUNTS, small, costs())
    assert s3.adds == [(1, 1)] and limits_met(COUNTS, 2, s3, d3) == []


# Capacity fade, by hand: candidates 0 / 10 / 20, three years, 1 %/cycle (a large rate for round
# numbers), 10 equivalent cycles a year with 10 clusters and 5 with 20; no discounting, 1 a cluster.
FADE_COUNTS = [0, 10, 20]
FADE_SAVINGS = [[0.0, 100.0, 150.0], [0.0, 100.0, 200.0], [0.0, 100.0, 200.0]]
FADE = Fade(0.01, ((0.0, 10.0, 5.0),) * 3)


def flat_costs(years: int = 3) -> ExpansionCosts:
    return ExpansionCosts((1.0,) * years, (0.0,) * years, 10, 0.0, 0.0, 0.0, 0.0, 20)


def test_a_two_stage_plan_with_fade_by_hand() -> None:
    # Stage A: 10 clusters in year 1; stage B: 10 more in year 2. Mid-year cycles since purchase:
    #   year 1: A 5 -> 0.95: held 9.5, savings 95 (0..100 at 9.5 of 10)
    #   year 2: A 10 + 2.5 = 12.5 -> 0.875, B 2.5 -> 0.975: held 18.5, savings 100 + 0.85 x 100 = 185
    #   year 3: A 15 + 2.5 = 17.5 -> 0.825, B 7.5 -> 0.925: held 17.5, savings 175
    # NPV -10 + 95 - 10 + 185 + 175 = 435 (at nameplate: 480)
    s = evaluate("x", [10, 20, 20], FADE_COUNTS, FADE_SAVINGS, flat_costs(), FADE)
    assert [r.held for r in s.rows] == pytest.approx([9.5, 18.5, 17.5], abs=1e-12)
    assert [r.savings for r in s.rows] == pytest.approx([95.0, 185.0, 175.0], abs=1e-9)
    assert s.npv == pytest.approx(435.0, abs=1e-9)
    assert evaluate("x", [10, 20, 20], FADE_COUNTS, FADE_SAVINGS, flat_costs()).npv == 480.0
    # the stage bought in year 1 holds 82.5 % in year 3 (the one bought in year 2: 92.5 %)
    assert first_stage_pct(s, FADE_COUNTS, FADE) == pytest.approx(82.5, abs=1e-9)
    # bought in year 2 with 10 installed: 10 cycles that year, 2.5 by the middle of year 3 (at 20)
    late = evaluate("x", [0, 10, 20], FADE_COUNTS, FADE_SAVINGS, flat_costs(), FADE)
    assert first_stage_pct(late, FADE_COUNTS, FADE) == pytest.approx(87.5, abs=1e-9)
    # no fade is the nameplate plan, row for row
    zero = evaluate("x", [10, 20, 20], FADE_COUNTS, FADE_SAVINGS, flat_costs(), Fade(0.0, FADE.cycles))
    assert [r.savings for r in zero.rows] == [100.0, 200.0, 200.0] and [r.held for r in zero.rows] == [10, 20, 20]


def test_fade_floors_at_the_simulators_five_percent_and_interpolates_between_sizes() -> None:
    assert Fade(0.1, ()).holds(5.0) == pytest.approx(0.5) and Fade(0.1, ()).holds(15.0) == 0.05
    assert interpolate([0, 10, 20], [0.0, 100.0, 150.0], 15.0) == 125.0
    assert interpolate([0, 10, 20], [0.0, 100.0, 150.0], 10.0) == 100.0
    with pytest.raises(ValueError, match=r"fade cycles: expected 3 years of 3 counts \(as the savings\), got \[3\]"):
        evaluate("x", [10, 20, 20], FADE_COUNTS, FADE_SAVINGS, flat_costs(), Fade(0.01, ((0.0, 1.0, 1.0),)))


def test_the_fade_search_is_the_best_of_every_schedule_on_random_tables() -> None:
    # exhaustive check of the branch and bound: 5 years, 4 counts, max 2 a year, 150 seeded tables
    # with fade up to 3 %/cycle over 0-20 cycles a year (savings not always rising with size)
    rng = random.Random(17)
    counts = [0, 1, 2, 4]
    differ = 0
    for _ in range(150):
        c = random_costs(rng, 5)
        sav = [[0.0, *(rng.uniform(-20, 150) for _ in range(3))] for _ in range(5)]
        fade = Fade(rng.uniform(0, 0.03), tuple((0.0, *(rng.uniform(0, 20) for _ in range(3))) for _ in range(5)))
        best = best_of_all(counts, sav, c, fade)
        opt = optimal(counts, sav, c, fade)
        assert opt.exact and opt.npv == pytest.approx(best, abs=1e-9)
        assert opt.npv >= day_one(counts, sav, c, fade).npv - 1e-9 and opt.npv >= -1e-12
        differ += opt.adds != optimal(counts, sav, c).adds
    assert differ > 0  # fade moved some plans (else this test would not tell the searches apart)


def test_the_fade_search_stops_at_its_node_limit_and_says_so() -> None:
    s = optimal(FADE_COUNTS, FADE_SAVINGS, flat_costs(), FADE, max_nodes=1)
    assert not s.exact and s.as_dict()["exact"] is False
    # the best it had: the nameplate optimum (buy 20 in year 1) priced with fade
    assert s.adds == optimal(FADE_COUNTS, FADE_SAVINGS, flat_costs()).adds
    assert optimal(FADE_COUNTS, FADE_SAVINGS, flat_costs(), FADE).exact
