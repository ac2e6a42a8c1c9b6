"""Cluster health reaches MQTT (retained topic, once per day close) and telemetry (`health` points)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from agent.live.hub import CycleRecord, Hub
from agent.model.plan import Plan
from agent.mqtt import parse_mqtt
from agent.mqtt.link import MqttLink
from agent.telemetry.feed import Feed
from agent.telemetry.schema import MEASUREMENTS, line

from .fakes import snapshot_for

READOUT: dict[str, Any] = {
    "version": 3,
    "days": 3,
    "clusters": {
        "c01": {
            "group": "x",
            "latest": {"cluster_id": "c01", "day": 9, "cell_spread_mv": 14.5, "capacity_pct": None, "samples": 80},
            "trend_per_day": {"cell_spread_mv": 3.0, "resistance_mohm": None},
            "efc_total": 12.5,
            "throughput_kwh_total": 9000.0,
            "flagged": ["cell_spread_mv"],
        }
    },
    "recommendations": [{"cluster_id": "c01", "text": "cluster c01: cell spread rising"}],
}


def _rec(hub: Hub) -> CycleRecord:
    t = datetime(2026, 11, 24, 12, 0, tzinfo=hub.site.timezone)
    plan = Plan(
        seq=1, mode="auto", site_setpoint_w=0.0, requested_w=0.0, decided_by="idle", reason="",
        bounds=(), pcs_setpoints_w={}, cluster_setpoints_w={},
    )  # fmt: skip
    return CycleRecord(snapshot_for(hub.site, 1, 1.0, t), plan, 1.0, 1.0, 0.0, 0)


def test_mqtt_publishes_health_retained_once_per_version(make_hub) -> None:  # type: ignore[no-untyped-def]
    hub: Hub = make_hub()
    readout = dict(READOUT)
    hub.providers["health"] = lambda: readout
    link = MqttLink(parse_mqtt(hub.site), hub)
    rec = _rec(hub)
    link.submit(rec)
    link.submit(rec)
    health = [m for m in link._out if m.topic == link.topics.health]
    assert len(health) == 1 and health[0].retain and health[0].qos == 1
    payload = health[0].payload if isinstance(health[0].payload, bytes) else health[0].payload()
    assert json.loads(payload) == {"v": 1, **READOUT}
    assert link.topics.health.endswith(f"/{hub.site.id}/health")
    readout["version"] = 4  # a day closed
    link.submit(rec)
    assert len([m for m in link._out if m.topic == link.topics.health]) == 2


def test_mqtt_without_health_provider_publishes_no_health(make_hub) -> None:  # type: ignore[no-untyped-def]
    hub: Hub = make_hub()
    link = MqttLink(parse_mqtt(hub.site), hub)
    link.submit(_rec(hub))
    assert not [m for m in link._out if m.topic == link.topics.health]


def test_telemetry_writes_health_points_when_a_day_closed(make_hub) -> None:  # type: ignore[no-untyped-def]
    hub: Hub = make_hub()
    hub.providers["health"] = lambda: READOUT
    feed = Feed(hub, ledger_every_s=60.0)
    rec = _rec(hub)
    first = [p for p in feed.points(feed.capture(rec), {}) if p.measurement == "health"]
    again = [p for p in feed.points(feed.capture(rec), {}) if p.measurement == "health"]
    assert "health" in MEASUREMENTS and again == []
    (p,) = first
    assert dict(p.tags) == {"site": hub.site.id, "cluster": "c01"}
    assert p.fields == {
        "cell_spread_mv": 14.5,
        "trend_cell_spread_mv": 3.0,
        "efc_total": 12.5,
        "throughput_kwh_total": 9000.0,
        "recommendations": 1.0,
    }
    assert line(p).startswith(f"health,cluster=c01,site={hub.site.id} cell_spread_mv=14.5,trend_cell_spread_mv=3.0,")
