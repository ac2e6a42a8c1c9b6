"""Staged expansion: the dynamic programme on hand-checked tables (agent.economics.expansion)."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from agent.economics.expansion import ExpansionCosts, day_one, evaluate, flows, irr, optimal
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


def test_the_optimum_is_the_best_of_every_schedule_on_random_tables() -> None:
    # exhaustive check of exactness: 4 years, 4 counts, max 2 a year, 200 seeded tables
    rng = random.Random(16)
    counts = [0, 1, 2, 4]
    for _ in range(200):
        c = ExpansionCosts(
            cluster_price=tuple(rng.uniform(50, 200) for _ in range(4)),
            pcs_price=tuple(rng.uniform(0, 60) for _ in range(4)),
            clusters_per_pcs=rng.choice([1, 2, 3]),
            stage_cost=rng.uniform(0, 50),
            om_per_cluster=rng.uniform(0, 10),
            om_fixed=rng.uniform(0, 20),
            discount_rate=rng.uniform(0, 0.2),
            max_add=2,
        )
        sav = [[0.0, *sorted(rng.uniform(0, 150) for _ in range(3))] for _ in range(4)]
        best = -math.inf
        for path in itertools.product(counts, repeat=4):
            steps = [b - a for a, b in zip((0, *path), path, strict=False)]
            if any(s < 0 or s > 2 for s in steps):
                continue
            best = max(best, evaluate("x", list(path), counts, sav, c).npv)
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
