"""A cluster the operator holds in maintenance: the snapshot keeps what its BMS reports, and every
sink shows the hold from the cycle record (CycleRecord.maintenance), with the wire values of before
("maintenance" in JSON, 3 in telemetry); the replay holds the site file's clusters as live does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from agent.api.views import clusters_out, site_out
from agent.control.fleet import build_fleet
from agent.live.alarm_sync import wanted_alarms
from agent.live.hub import Hub
from agent.model.operator import OperatorState
from agent.model.plan import Plan
from agent.model.snapshot import ClusterStatus
from agent.mqtt.topics import cluster_payload
from agent.offline.replay import Trace, replay
from agent.telemetry.schema import points_for
from tests.fakes import Cycles, demo_site, snapshot_for
from tests.test_analyze import MIDNIGHT, demo, flat_tariff

T0 = datetime(2026, 7, 1, 6, tzinfo=UTC)


def test_every_sink_shows_the_hold_of_the_cycle(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub()
    hub.operator = OperatorState(maintenance=frozenset({"c03"}))
    rec = Cycles(hub, T0).next()
    c3 = rec.snapshot.clusters[2]
    assert (c3.id, c3.status, rec.maintenance) == ("c03", ClusterStatus.ONLINE, {"c03"})
    api = {c.id: c for c in clusters_out(rec, hub.operator)}
    assert (api["c03"].status, api["c03"].maintenance, api["c03"].trusted) == ("maintenance", True, False)
    assert (api["c04"].status, api["c04"].maintenance, api["c04"].trusted) == ("online", False, True)
    assert site_out(rec, hub.operator, []).clusters_online == 11
    assert cluster_payload(c3, 0.0, T0, rec.maintenance)["status"] == "maintenance"
    assert cluster_payload(c3, 0.0, T0)["status"] == "online"  # a cycle without the hold
    pts = points_for(rec, "demo")
    status = {dict(p.tags)["cluster"]: p.fields["status"] for p in pts if p.measurement == "cluster"}
    assert status["c03"] == 3.0 and status["c04"] == 0.0


def test_a_held_cluster_raises_no_device_alarm() -> None:
    site = demo_site()
    snap = snapshot_for(site, 1, 1.0, T0)
    faulted = replace(snap.clusters[0], status=ClusterStatus.FAULT)
    snap = replace(snap, clusters=(faulted, *snap.clusters[1:]))
    plan = Plan(1, "auto", 0.0, 0.0, "idle", "", (), {}, {})
    assert "cluster_fault@c01" in wanted_alarms(snap, plan, site.meters, frozenset(), {})
    assert "cluster_fault@c01" not in wanted_alarms(snap, plan, site.meters, frozenset(), {}, frozenset({"c01"}))


def test_the_replay_never_commands_a_cluster_the_site_file_holds() -> None:
    # test_analyze's hand-worked demand peak: one cluster shaves 108 kW, none when the site file holds it
    ts = MIDNIGHT + 900.0 * np.arange(4, dtype=np.float64)
    load = np.array([600e3, 900e3, 600e3, 600e3])
    site = demo(1, demand_target_w=800e3, tou_enabled=False)
    # one decision per 15-min step, as that hand-work assumes (max_hold_s: no sub-steps)
    free = replay(site, flat_tariff(), Trace(ts, load), max_hold_s=900.0)
    assert free.battery_w[:2].tolist() == pytest.approx([0.0, 108e3], abs=1e-3)  # then it recharges
    held = replay(replace(site, maintenance=frozenset({"c01"})), flat_tariff(), Trace(ts, load))
    assert held.battery_w.tolist() == [0.0] * 4
    assert held.end_wh == held.start_wh


def test_a_held_cluster_still_closed_holds_its_pcs_at_zero() -> None:
    """A PCS drives its clusters on one DC bus: while a held cluster's contactor is still closed (it
    reports itself online) and the agent can open it, its whole PCS is out of the fleet."""
    snap = snapshot_for(demo_site(), 1, 1.0, T0)
    c = list(snap.clusters)
    c[0] = replace(c[0], switchable=True)  # c01, behind pcs1
    snap = replace(snap, clusters=tuple(c))
    pcs_of = {x.id: x.pcs_id for x in snap.clusters}
    assert "pcs1" in build_fleet(snap, frozenset()).pcs_ids  # not held: commanded as usual
    assert "pcs1" not in build_fleet(snap, frozenset({"c01"})).pcs_ids
    assert "pcs2" in build_fleet(snap, frozenset({"c01"})).pcs_ids
    c[0] = replace(c[0], status=ClusterStatus.OFFLINE)  # its contactor is open now: the rest carry on
    after = build_fleet(replace(snap, clusters=tuple(c)), frozenset({"c01"}))
    assert "pcs1" in after.pcs_ids and "c01" not in after.ids and pcs_of["c02"] == "pcs1" and "c02" in after.ids
