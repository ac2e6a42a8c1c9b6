"""Micro-benchmark: microseconds per decide() (which includes dispatch) at 12, 64 and 128 clusters.

Run: .venv/bin/python bench/control_bench.py   (prints the median of several runs per size)

The state is threaded through like the live loop; the snapshot changes every cycle (time, load,
SoCs stay) so the demand-interval and price-slot bookkeeping run their real per-cycle path,
including one interval roll-over every 900 cycles.
"""

from __future__ import annotations

import statistics
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from agent.control import decide, initial_state
from agent.model.config import ControlConfig
from agent.model.operator import OperatorState
from agent.model.snapshot import (
    ClusterSnapshot,
    ClusterStatus,
    Measured,
    PcsSnapshot,
    PcsStatus,
    SiteSnapshot,
)

TZ = ZoneInfo("Asia/Shanghai")
HOURS = ((0, 8, 0.372036), (8, 11, 1.010784), (11, 18, 0.662376), (18, 21, 1.010784), (21, 24, 0.372036))


class Shanghai:
    """Price table with a per-hour lookup, about as cheap as the real tariff's minute table."""

    def __init__(self) -> None:
        self.by_hour = [next(p for a, b, p in HOURS if a <= h < b) for h in range(24)]

    def energy_price(self, t: datetime) -> float:
        return self.by_hour[t.hour]

    def demand_rate(self, t: datetime) -> float:
        return 40.8


def snapshots(n: int, cycles: int) -> list[SiteSnapshot]:
    per_pcs = 3
    clusters = tuple(
        ClusterSnapshot(
            f"c{i:03d}",
            f"p{i // per_pcs}",
            ClusterStatus.ONLINE,
            418e3,
            Measured(40.0 + (i % 7) * 5.0),
            Measured(209e3),
            Measured(209e3),
        )
        for i in range(n)
    )
    pcs = tuple(
        PcsSnapshot(f"p{j}", tuple(c.id for c in clusters if c.pcs_id == f"p{j}"), PcsStatus.ONLINE, 630e3)
        for j in range((n + per_pcs - 1) // per_pcs)
    )
    t0 = datetime(2026, 7, 15, 9, 0, tzinfo=TZ)
    out = []
    for k in range(cycles):
        load = 5e6 + (1.5e6 if (k // 7) % 2 else -1.5e6)  # GPU phases swinging every 7 s
        out.append(
            SiteSnapshot(
                k,
                float(k),
                t0 + timedelta(seconds=k),
                Measured(load),
                Measured(load),
                Measured(0.0),
                True,
                clusters,
                pcs,
            )
        )
    return out


def run(n: int, cycles: int = 3000, repeats: int = 5) -> float:
    cfg = ControlConfig(soc_min_pct=20, soc_max_pct=95, reserve_load_w=300e3, reserve_minutes=15,
                        ramp_limit_w_per_s=200e3, degradation_cost_per_kwh=0.15)  # fmt: skip
    op = OperatorState()
    prices = Shanghai()
    snaps = snapshots(n, cycles)
    results = []
    for _ in range(repeats):
        st = initial_state(cfg)
        t0 = time.perf_counter()
        for s in snaps:
            _, st = decide(s, st, cfg, op, prices, False)
        results.append((time.perf_counter() - t0) / cycles * 1e6)
    return statistics.median(results)


def main() -> None:
    for n in (12, 64, 128):
        print(f"{n:4d} clusters: {run(n):7.1f} us per decide()+dispatch (median of 5 x 3000 cycles)")


if __name__ == "__main__":
    main()
