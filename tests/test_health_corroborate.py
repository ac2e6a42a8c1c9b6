"""Whether a cluster's capacity echoes its resistance rise: shares of the margin to end of life,
and what assess says when it does not (the connection finding, with its safety proposal)."""

from __future__ import annotations

import math

import pytest

from agent.health.assess import CONNECTION_ACTION, MIN_PEERS, RULES, assess
from agent.health.corroborate import Evidence, against_peers, wear_share
from tests.test_health_peers import _excursion, _resistance_fleet, row

R_RULE = next(r for r in RULES if r.name == "resistance_mohm")
C_RULE = next(r for r in RULES if r.name == "capacity_pct")


def test_wear_share_is_the_share_of_the_margin_to_the_limit_used() -> None:
    assert wear_share(106.0, 90.0, R_RULE) == pytest.approx(16.0 / 60.0)  # 150 mOhm limit
    assert wear_share(97.0, 99.0, C_RULE) == pytest.approx(2.0 / 19.0)  # 80 % limit, falling is bad
    assert wear_share(101.0, 99.0, C_RULE) == pytest.approx(-2.0 / 19.0)  # above the fleet: none used
    assert wear_share(155.0, 150.0, R_RULE) == pytest.approx(5.0 / 8.0)  # a fleet at the limit: min_gap


@pytest.mark.parametrize(
    ("r_share", "c_share", "corroborated"),
    [
        (0.2, 0.1, True),  # half the resistance's share: the cells wearing
        (0.2, 0.099, False),
        (0.2, -0.05, False),  # capacity above the fleet (CS2_38)
        (0.2, math.nan, False),  # capacity not measured: cannot corroborate
        (-0.1, math.nan, True),  # no rise to echo
    ],
)
def test_the_capacity_must_show_half_the_resistance_share(r_share: float, c_share: float, corroborated: bool) -> None:
    assert Evidence(r_share, c_share, "").corroborated is corroborated


def test_no_peer_evidence_from_too_few_peers() -> None:
    peers = {f"c{i}": [row(f"c{i}", d) for d in range(10)] for i in range(MIN_PEERS - 1)}
    assert against_peers(peers, "c0", R_RULE, C_RULE, MIN_PEERS) is None


def test_the_connection_finding_derates_then_proposes_isolation_at_the_limit() -> None:
    h = _resistance_fleet(_excursion, days=130)
    (early,) = assess({c: rows[:40] for c, rows in h.items()})
    assert (early.cluster_id, early.indicator, early.basis, early.action) == (
        "c3", "resistance_mohm", "connection", CONNECTION_ACTION,
    )  # fmt: skip
    assert early.proposal == {
        "kind": "derate",
        "max_power_pct": 70.0,
        "command": {"command": "derate", "cluster_id": "c3", "max_power_pct": 70.0},
    }
    assert "capacity 98.93 % vs fleet 98.97 %: the capacity does not show the rise" in early.text
    (late,) = assess({c: rows[:72] for c, rows in h.items()})  # c3 at 150 mOhm
    assert (late.basis, late.days_to_limit) == ("connection", 0.0)
    assert late.proposal == {"kind": "isolate", "command": {"command": "maintenance", "cluster_id": "c3", "on": True}}
    assert "at or past the limit (150 mΩ)" in late.text and "end of life" not in late.text


def test_the_end_of_an_excursion_is_no_new_rise() -> None:
    # The end-of-life forecast's quadratic, with the excursion inside its 100-day window, reads
    # the drop back (day 100) and the flat level after it as a rise: with a level back among its
    # peers' and no capacity echo, that is the fit, not the cluster (before: the connection
    # finding on 25 of days 101-199, as CS2_38 on cycles ~217-232)
    h = _resistance_fleet(_excursion, days=200)
    said = [end - 1 for end in range(102, 201) if assess({c: rows[:end] for c, rows in h.items()})]
    assert said == []
