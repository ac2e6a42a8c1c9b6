"""The site SoC (agent.model.soc): capacity-weighted over the clusters whose SoC reads good."""

from __future__ import annotations

import pytest

from agent.model.snapshot import ClusterSnapshot, ClusterStatus, Measured
from agent.model.soc import site_soc
from drivers.reading import Quality


def cl(cap: float, soc: Measured, status: ClusterStatus = ClusterStatus.ONLINE) -> ClusterSnapshot:
    return ClusterSnapshot("c", "p", status, cap, soc, Measured(1e5), Measured(1e5))


BAD = Measured(50.0, Quality.STALE, 9.0)


@pytest.mark.parametrize(
    ("clusters", "soc", "energy", "cap"),
    [
        ((cl(400e3, Measured(50.0)), cl(200e3, Measured(80.0))), 60.0, 360e3, 600e3),
        # a cluster in maintenance or faulted still holds its energy: it counts while its SoC reads good
        ((cl(400e3, Measured(50.0)), cl(200e3, Measured(80.0), ClusterStatus.MAINTENANCE)), 60.0, 360e3, 600e3),
        ((cl(400e3, Measured(50.0)), cl(200e3, Measured(80.0), ClusterStatus.FAULT)), 60.0, 360e3, 600e3),
        # one whose SoC is stale, missing or not a number does not
        ((cl(400e3, Measured(50.0)), cl(200e3, BAD)), 50.0, 200e3, 400e3),
        ((cl(400e3, Measured(50.0)), cl(200e3, Measured(float("nan")))), 50.0, 200e3, 400e3),
        ((cl(400e3, Measured.missing()),), None, None, 0.0),
        ((), None, None, 0.0),
    ],
)
def test_site_soc(clusters: tuple[ClusterSnapshot, ...], soc: float | None, energy: float | None, cap: float) -> None:
    s = site_soc(clusters)
    assert (s.soc_pct, s.energy_wh, s.capacity_wh) == (soc, energy, cap)
