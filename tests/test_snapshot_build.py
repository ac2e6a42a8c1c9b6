"""The one snapshot builder (agent/model/build.py): its rules, and the three register models that use it
(live assembly, offline replay, aging run) give the records the rules say."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.model.build import cluster_record, cluster_status, pcs_record, pcs_status
from agent.model.config import load_site
from agent.model.snapshot import MISSING, ClusterStatus, Measured, PcsStatus
from agent.offline.replay import _ClusterView, build_plant
from drivers import keys as k
from drivers.reading import Quality
from simulators.aging import AgingRun

SITE = load_site(Path(__file__).resolve().parents[1] / "agent" / "sites" / "demo.toml")
OK = Measured(50.0)


@pytest.mark.parametrize(
    ("state", "soc", "want"),
    [
        (k.STATE_ONLINE, OK, ClusterStatus.ONLINE),
        (k.STATE_STANDBY, OK, ClusterStatus.ONLINE),
        (k.STATE_FAULT, OK, ClusterStatus.FAULT),
        (k.STATE_OFF, OK, ClusterStatus.OFFLINE),
        (None, OK, ClusterStatus.OFFLINE),
        (k.STATE_ONLINE, Measured(math.nan), ClusterStatus.OFFLINE),
        (k.STATE_ONLINE, Measured(50.0, Quality.STALE, 9.0), ClusterStatus.OFFLINE),
        (k.STATE_FAULT, MISSING, ClusterStatus.OFFLINE),  # a fault it cannot report reliably
    ],
)
def test_cluster_status(state: str | None, soc: Measured, want: ClusterStatus) -> None:
    assert cluster_status(state, soc) is want


@pytest.mark.parametrize(
    ("state", "want"),
    [
        (k.STATE_ONLINE, PcsStatus.ONLINE),
        (k.STATE_STANDBY, PcsStatus.ONLINE),
        (k.STATE_FAULT, PcsStatus.FAULT),
        (k.STATE_OFF, PcsStatus.OFFLINE),
        (None, PcsStatus.OFFLINE),
    ],
)
def test_pcs_status(state: str | None, want: PcsStatus) -> None:
    assert pcs_status(state) is want


@pytest.mark.parametrize(
    ("device", "want"),
    [
        (Measured(500_000.0), 500_000.0),  # the device's own rating lowers the configured one
        (Measured(900_000.0), 700_000.0),  # but never raises it
        (Measured(0.0), 700_000.0),  # a zero rating is no rating
        (Measured(500_000.0, Quality.STALE, 9.0), 700_000.0),
        (MISSING, 700_000.0),
    ],
)
def test_pcs_rating(device: Measured, want: float) -> None:
    assert pcs_record("p1", ("c1",), 700_000.0, k.STATE_ONLINE, OK, rated_w=device).rated_w == want


def test_cluster_record_keeps_every_value() -> None:
    vals = [Measured(float(i)) for i in range(12)]
    c = cluster_record("c1", "p1", 1e6, k.STATE_ONLINE, *vals, alarms=5, switchable=True)
    assert c.status is ClusterStatus.ONLINE
    assert (c.id, c.pcs_id, c.capacity_wh, c.alarms, c.switchable) == ("c1", "p1", 1e6, 5, True)
    got = [
        c.soc_pct, c.max_charge_w, c.max_discharge_w, c.power_w, c.soh_pct, c.voltage_v, c.current_a,
        c.cell_v_max, c.cell_v_min, c.temp_max_c, c.temp_min_c, c.cycles,
    ]  # fmt: skip
    assert got == vals


def test_replay_registers_go_through_the_builder() -> None:
    """The replay shows SoC in 0.1 % and limits in whole kW (its register model), as online clusters."""
    plant = build_plant(SITE, 42.04)
    view = _ClusterView(SITE, plant)
    snaps = view.now()
    assert len(snaps) == len(SITE.clusters)
    for d, s in zip(SITE.clusters, snaps, strict=True):
        cell = plant.clusters[d.id]
        want = cluster_record(
            d.id,
            s.pcs_id,
            d.capacity_wh,
            k.STATE_ONLINE,
            Measured(420 * 0.1),
            Measured(int(cell.max_charge_w / 1000.0 + 0.5) * 1000.0),
            Measured(int(cell.max_discharge_w / 1000.0 + 0.5) * 1000.0),
        )
        assert s == want
    assert view.now() is snaps  # nothing changed: the same tuple


def test_aging_run_statuses_come_from_the_builder() -> None:
    run = AgingRun(n_clusters=3, per_pcs=3)
    c1, c2, _ = run.plant.clusters.values()
    c1.removed = True
    c2.faulted = True
    s = next(iter(run.day(0)))
    assert [c.status for c in s.clusters] == [ClusterStatus.OFFLINE, ClusterStatus.FAULT, ClusterStatus.ONLINE]
    assert [p.status for p in s.pcs] == [PcsStatus.ONLINE]
    assert s.pcs[0].rated_w == 750e3
