"""One point catalogue (agent/model/points.py): every sink carries every cluster, PCS and site
point under its catalogue name, with the value the snapshot holds, and the catalogue is every
measured value the snapshot has."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from agent.api.mirror import Mirror
from agent.api.observer import Observer
from agent.api.views import cluster_out, pcs_out, site_out
from agent.live.hub import CycleRecord
from agent.model.operator import OperatorState
from agent.model.plan import Plan
from agent.model.points import CLUSTER_POINTS, PCS_POINTS, SITE_POINTS, PointDef
from agent.model.snapshot import ClusterSnapshot, Measured, PcsSnapshot, SiteSnapshot
from agent.mqtt.topics import cluster_payload, pcs_payload, state_payload
from agent.telemetry.schema import points_for

from .fakes import demo_site, snapshot_for

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def _measured_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.type in ("Measured", Measured)}


@pytest.mark.parametrize(
    ("points", "cls"),
    [(CLUSTER_POINTS, ClusterSnapshot), (PCS_POINTS, PcsSnapshot), (SITE_POINTS, SiteSnapshot)],
)
def test_the_catalogue_is_every_measured_value_of_the_snapshot(points: tuple[PointDef, ...], cls: type) -> None:
    names = [p.name for p in points]
    assert len(names) == len(set(names))
    assert set(names) == _measured_fields(cls)


def _distinct(points: tuple[PointDef, ...], base: float) -> dict[str, float]:
    """A distinct value per point (a flag reads 1: in the mode)."""
    return {p.name: 1.0 if p.flag else base + i for i, p in enumerate(points)}


def _record() -> tuple[CycleRecord, dict[str, float], dict[str, float], dict[str, float]]:
    site = demo_site()
    snap = snapshot_for(site, 7, 7.0, T0)
    cv, pv, sv = _distinct(CLUSTER_POINTS, 1000.0), _distinct(PCS_POINTS, 2000.0), _distinct(SITE_POINTS, 3000.0)
    c0 = dataclasses.replace(snap.clusters[0], **{k: Measured(v) for k, v in cv.items()})
    p0 = dataclasses.replace(snap.pcs[0], **{k: Measured(v) for k, v in pv.items()})
    snap = dataclasses.replace(
        snap, clusters=(c0, *snap.clusters[1:]), pcs=(p0, *snap.pcs[1:]), **{k: Measured(v) for k, v in sv.items()}
    )
    plan = Plan(7, "auto", 0.0, 0.0, "idle", "", (), {p.id: 0.0 for p in snap.pcs}, {c.id: 0.0 for c in snap.clusters})
    return CycleRecord(snap, plan, 10.0, 8.0, 2.0, 0), cv, pv, sv


def _as_json(points: tuple[PointDef, ...], values: dict[str, float]) -> dict[str, Any]:
    return {p.name: (values[p.name] == 1.0) if p.flag else values[p.name] for p in points}


def _pick(d: dict[str, Any], points: tuple[PointDef, ...]) -> dict[str, Any]:
    return {p.name: d.get(p.name, "missing") for p in points}


def test_the_api_and_the_dashboard_feed_carry_every_point() -> None:
    rec, cv, pv, sv = _record()
    s = rec.snapshot
    assert _pick(cluster_out(s.clusters[0], 0.0, False).model_dump(), CLUSTER_POINTS) == _as_json(CLUSTER_POINTS, cv)
    assert _pick(pcs_out(s.pcs[0], 0.0).model_dump(), PCS_POINTS) == _as_json(PCS_POINTS, pv)
    assert _pick(site_out(rec, OperatorState(), []).model_dump(), SITE_POINTS) == _as_json(SITE_POINTS, sv)
    # the dashboard's feed: the SSE / GET /api/live JSON
    live = json.loads(Observer(Mirror(demo_site())).live_json(rec))
    assert _pick(live["clusters"][0], CLUSTER_POINTS) == _as_json(CLUSTER_POINTS, cv)
    assert _pick(live["pcs"][0], PCS_POINTS) == _as_json(PCS_POINTS, pv)
    assert _pick(live["site"], SITE_POINTS) == _as_json(SITE_POINTS, sv)


def test_mqtt_carries_every_point() -> None:
    rec, cv, pv, sv = _record()
    s = rec.snapshot
    assert _pick(cluster_payload(s.clusters[0], 0.0, T0), CLUSTER_POINTS) == _as_json(CLUSTER_POINTS, cv)
    assert _pick(pcs_payload(s.pcs[0], 0.0, T0), PCS_POINTS) == _as_json(PCS_POINTS, pv)
    state = state_payload(rec)
    assert _pick(state, SITE_POINTS) == _as_json(SITE_POINTS, sv)
    assert state["quality"] == {"grid": "good", "load": "good", "pv": "good"}


def test_telemetry_carries_every_point() -> None:
    rec, cv, pv, sv = _record()
    pts = points_for(rec, "demo")

    def fields(measurement: str, **tags: str) -> dict[str, float]:
        (pt,) = [p for p in pts if p.measurement == measurement and dict(p.tags) == {"site": "demo", **tags}]
        return pt.fields

    assert _pick(fields("cluster", cluster="c01", pcs="pcs1"), CLUSTER_POINTS) == cv
    assert _pick(fields("pcs", pcs="pcs1"), PCS_POINTS) == pv
    assert _pick(fields("site"), SITE_POINTS) == sv
    for p in SITE_POINTS:
        assert fields("meter", meter=p.role)["power_w"] == sv[p.name]


def test_a_point_nobody_measured_is_null_in_json_and_absent_in_telemetry() -> None:
    site = demo_site()
    snap = snapshot_for(site, 1, 1.0, T0)  # the PCS have no PCC read-backs
    rec = CycleRecord(snap, Plan(1, "auto", 0.0, 0.0, "idle", "", (), {}, {}), 10.0, 8.0, 2.0, 0)
    assert pcs_payload(snap.pcs[0], None, T0)["pcc_grid_w"] is None
    assert pcs_payload(snap.pcs[0], None, T0)["pcc_active"] is None
    assert pcs_out(snap.pcs[0], 0.0).model_dump()["pcc_active"] is None
    (pcs1,) = [p for p in points_for(rec, "demo") if p.measurement == "pcs" and ("pcs", "pcs1") in p.tags]
    assert "pcc_grid_w" not in pcs1.fields and "pcc_active" not in pcs1.fields
