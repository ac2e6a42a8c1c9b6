"""Site state of charge: one definition for every reader (API, MQTT, telemetry, dashboard, replay).

The site SoC is the capacity-weighted mean SoC of the clusters whose SoC reading is good,
whatever their status: how full the installed battery is, as far as it is known. A cluster in
maintenance or behind a PCS that is down still holds its energy. What the controller may
command is a different figure, the fleet's (agent.control.fleet.Fleet.soc_pct: trusted clusters
only, clamped to 0-100 %), and it is not shown as the site SoC.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.model.snapshot import ClusterSnapshot


class SiteSoc:
    __slots__ = ("capacity_wh", "energy_wh", "soc_pct")

    def __init__(self, soc_pct: float | None, energy_wh: float | None, capacity_wh: float) -> None:
        self.soc_pct = soc_pct  # % (None: no cluster with a good SoC)
        self.energy_wh = energy_wh  # Wh stored in those clusters (None likewise)
        self.capacity_wh = capacity_wh  # Wh nameplate of those clusters


def site_soc(clusters: Iterable[ClusterSnapshot]) -> SiteSoc:
    cap = 0.0
    pct_wh = 0.0  # sum of capacity x SoC %
    for c in clusters:
        s = c.soc_pct
        if s.ok:
            cap += c.capacity_wh
            pct_wh += c.capacity_wh * s.value
    if cap <= 0.0:
        return SiteSoc(None, None, 0.0)
    return SiteSoc(pct_wh / cap, pct_wh / 100.0, cap)
