"""Builders shared by the control tests: snapshots, a price table. (No tests in this module.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from agent.model.config import ControlConfig
from agent.model.snapshot import ClusterSnapshot, ClusterStatus, Measured, PcsSnapshot, PcsStatus, SiteSnapshot

TZ = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 7, 15, 12, 0, 0, tzinfo=TZ)  # a flat-price hour on the Shanghai tariff


@dataclass(frozen=True)
class TablePrices:
    """Energy price by local hour range [start, end), one demand rate all day: a plain price table."""

    table: tuple[tuple[float, float, float], ...]  # (start hour, end hour, price per kWh)
    rate: float = 0.0  # per kW-month

    def energy_price(self, t: datetime) -> float:
        h = t.hour + t.minute / 60.0
        for a, b, p in self.table:
            if a <= h < b:
                return p
        raise KeyError(f"no price at {t}")

    def demand_rate(self, t: datetime) -> float:
        return self.rate


SHANGHAI = TablePrices(
    (
        (0, 8, 0.372036),
        (8, 11, 1.010784),
        (11, 18, 0.662376),
        (18, 21, 1.010784),
        (21, 24, 0.372036),
    ),
    rate=40.8,
)
FLAT = TablePrices(((0, 24, 0.5),), rate=0.0)

# The demo site's control figures: 20-95 %, 96 % each way, 0.15 per kWh degradation.
CFG = ControlConfig(soc_min_pct=20.0, soc_max_pct=95.0, degradation_cost_per_kwh=0.15)


def cluster(
    cid: str,
    pcs_id: str,
    soc: float = 50.0,
    dis: float = 209e3,
    chg: float = 209e3,
    cap: float = 418e3,
    status: ClusterStatus = ClusterStatus.ONLINE,
) -> ClusterSnapshot:
    return ClusterSnapshot(cid, pcs_id, status, cap, Measured(soc), Measured(chg), Measured(dis))


def fleet(
    n: int = 12,
    per_pcs: int = 3,
    soc: float = 50.0,
    dis: float = 209e3,
    chg: float = 209e3,
    rated: float = 630e3,
) -> tuple[tuple[ClusterSnapshot, ...], tuple[PcsSnapshot, ...]]:
    """n identical clusters, `per_pcs` behind each PCS (ids c01.., pcs1..)."""
    cl = tuple(cluster(f"c{i + 1:02d}", f"pcs{i // per_pcs + 1}", soc, dis, chg) for i in range(n))
    npcs = (n + per_pcs - 1) // per_pcs
    pcs = tuple(
        PcsSnapshot(
            f"pcs{j + 1}",
            tuple(c.id for c in cl if c.pcs_id == f"pcs{j + 1}"),
            PcsStatus.ONLINE,
            rated,
            Measured(0.0),
        )
        for j in range(npcs)
    )
    return cl, pcs


def snap(
    load: float,
    pv: float = 0.0,
    battery: float = 0.0,
    t_mono: float = 1000.0,
    t_wall: datetime = NOON,
    clusters: tuple[ClusterSnapshot, ...] | None = None,
    pcs: tuple[PcsSnapshot, ...] | None = None,
    grid_up: bool = True,
    seq: int = 1,
    grid: Measured | None = None,
    load_m: Measured | None = None,
) -> SiteSnapshot:
    """A snapshot whose grid meter reads load - pv - battery (the battery's present output)."""
    if clusters is None or pcs is None:
        clusters, pcs = fleet()
    return SiteSnapshot(
        seq=seq,
        t_mono=t_mono,
        t_wall=t_wall,
        grid_w=grid if grid is not None else Measured(load - pv - battery),
        load_w=load_m if load_m is not None else Measured(load),
        pv_w=Measured(pv),
        grid_up=grid_up,
        clusters=clusters,
        pcs=pcs,
    )
