"""Dispatch across PCS units and clusters: SoC weighting, limits, ratings, exclusions, shortfall."""

from __future__ import annotations

import math

import pytest

from agent.control import dispatch
from agent.model.snapshot import ClusterSnapshot, ClusterStatus, Measured, PcsSnapshot, PcsStatus
from drivers.reading import Quality
from tests.test_control_support import cluster, fleet, snap


def approx(d: dict[str, float]) -> dict[str, object]:
    return {k: pytest.approx(v, abs=1e-6) for k, v in d.items()}


def test_equal_clusters_share_equally() -> None:
    cl, pcs = fleet()
    d = dispatch(1_200_000.0, snap(5e6, clusters=cl, pcs=pcs))
    assert d.cluster_w == approx({c.id: 100_000.0 for c in cl})
    assert d.pcs_w == approx({"pcs1": 300_000.0, "pcs2": 300_000.0, "pcs3": 300_000.0, "pcs4": 300_000.0})
    assert d.achieved_w == pytest.approx(1_200_000.0)
    assert d.shortfall_w == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("site_w", "expected"),
    [
        # discharge: weight = SoC above the floor (20 %): 40 : 20 -> 2/3 : 1/3
        (300_000.0, {"a": 200_000.0, "b": 100_000.0}),
        # charge: weight = room below the ceiling (95 %): 35 : 55
        (-180_000.0, {"a": -70_000.0, "b": -110_000.0}),
        (0.0, {"a": 0.0, "b": 0.0}),
    ],
)
def test_soc_weighting_brings_clusters_together(site_w: float, expected: dict[str, float]) -> None:
    cl = (cluster("a", "p", soc=60.0), cluster("b", "p", soc=40.0))
    pcs = (PcsSnapshot("p", ("a", "b"), PcsStatus.ONLINE, 1e6),)
    d = dispatch(site_w, snap(5e6, clusters=cl, pcs=pcs), floor_pct=20.0, ceil_pct=95.0)
    assert d.cluster_w == approx(expected)
    assert d.pcs_w == approx({"p": site_w})


def test_cluster_limit_saturates_and_the_rest_is_shared() -> None:
    cl = (cluster("a", "p", dis=50_000.0), cluster("b", "p"), cluster("c", "p"))
    pcs = (PcsSnapshot("p", ("a", "b", "c"), PcsStatus.ONLINE, 1e6),)
    d = dispatch(450_000.0, snap(5e6, clusters=cl, pcs=pcs))
    assert d.cluster_w == approx({"a": 50_000.0, "b": 200_000.0, "c": 200_000.0})


def test_pcs_rating_caps_its_clusters_and_others_take_the_rest() -> None:
    cl = (cluster("a", "p1"), cluster("b", "p1"), cluster("c", "p2"), cluster("d", "p2"))
    pcs = (
        PcsSnapshot("p1", ("a", "b"), PcsStatus.ONLINE, 200_000.0),
        PcsSnapshot("p2", ("c", "d"), PcsStatus.ONLINE, 1e6),
    )
    d = dispatch(600_000.0, snap(5e6, clusters=cl, pcs=pcs))
    assert d.pcs_w == approx({"p1": 200_000.0, "p2": 400_000.0})
    assert d.cluster_w == approx({"a": 100_000.0, "b": 100_000.0, "c": 200_000.0, "d": 200_000.0})


def test_untrusted_units_get_nothing_and_their_share_moves() -> None:
    cl: tuple[ClusterSnapshot, ...] = (
        cluster("ok1", "p1"),
        cluster("fault", "p1", status=ClusterStatus.FAULT),
        cluster("maint", "p1"),  # held by the operator
        cluster("ok2", "p2"),
        cluster("behind_dead_pcs", "p3"),
    )
    stale = cluster("stale", "p2")
    stale = type(stale)(
        "stale",
        "p2",
        ClusterStatus.ONLINE,
        418e3,
        Measured(50.0, Quality.STALE, 9.0),
        Measured(1e5),
        Measured(1e5),
    )
    cl = (*cl, stale)
    pcs = (
        PcsSnapshot("p1", ("ok1", "fault", "maint"), PcsStatus.ONLINE, 1e6),
        PcsSnapshot("p2", ("ok2", "stale"), PcsStatus.ONLINE, 1e6),
        PcsSnapshot("p3", ("behind_dead_pcs",), PcsStatus.FAULT, 1e6),
    )
    d = dispatch(300_000.0, snap(5e6, clusters=cl, pcs=pcs), maintenance=frozenset({"maint"}))
    assert d.cluster_w == approx(
        {"ok1": 150_000.0, "fault": 0.0, "maint": 0.0, "ok2": 150_000.0, "behind_dead_pcs": 0.0, "stale": 0.0}
    )
    assert d.pcs_w == approx({"p1": 150_000.0, "p2": 150_000.0, "p3": 0.0})


def test_shortfall_is_reported_and_the_rest_still_dispatched() -> None:
    cl = (cluster("a", "p", dis=100_000.0), cluster("b", "p", dis=0.0))
    pcs = (PcsSnapshot("p", ("a", "b"), PcsStatus.ONLINE, 1e6),)
    d = dispatch(250_000.0, snap(5e6, clusters=cl, pcs=pcs))
    assert d.cluster_w == approx({"a": 100_000.0, "b": 0.0})
    assert d.achieved_w == pytest.approx(100_000.0)
    assert d.shortfall_w == pytest.approx(150_000.0)


def test_clusters_at_the_floor_do_not_discharge() -> None:
    cl = (cluster("low", "p", soc=20.0), cluster("high", "p", soc=70.0))
    pcs = (PcsSnapshot("p", ("low", "high"), PcsStatus.ONLINE, 1e6),)
    d = dispatch(300_000.0, snap(5e6, clusters=cl, pcs=pcs), floor_pct=20.0)
    assert d.cluster_w == approx({"low": 0.0, "high": 209_000.0})
    assert d.shortfall_w == pytest.approx(91_000.0)


def test_non_finite_request_is_refused() -> None:
    with pytest.raises(ValueError, match="site_w"):
        dispatch(math.nan, snap(5e6))
