"""Slow degradation injected into chosen simulated clusters, and an accelerated-time fleet run.

Four kinds, each starting on a given (simulated) day and growing linearly with a rate per day:

- "resistance":    pack resistance rises by `rate` (fraction of nominal) per day;
- "cell_drift":    one cell drifts away from the others by `rate` volts per day (cell spread);
- "capacity_fade": usable capacity falls by `rate` (fraction of nominal) per day;
- "cooling":       the liquid-cooling conductance falls by `rate` (fraction of nominal) per day
                   (a clogging loop or failing pump: the module runs hotter for the same losses).

Healthy clusters get no entry here; their realistic spread comes from per-cluster variation
and measurement noise in the physics.

The accelerated-time fleet run that applies these lives in simulators/aging.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("resistance", "cell_drift", "capacity_fade", "cooling")


@dataclass(frozen=True, slots=True)
class Degradation:
    cluster_id: str
    kind: str
    start_day: float
    rate: float  # per day, unit depends on kind (see module doc)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"degradation kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"degradation rate for {self.cluster_id} must be >= 0, got {self.rate!r}")
        if not math.isfinite(self.start_day):
            raise ValueError(f"degradation start_day for {self.cluster_id} must be finite, got {self.start_day!r}")


@dataclass(frozen=True, slots=True)
class Effects:
    resistance_factor: float = 1.0  # multiplies nominal internal resistance
    cell_offset_v: float = 0.0  # extra spread of the weakest cell
    capacity_factor: float = 1.0  # multiplies nominal capacity
    cooling_factor: float = 1.0  # multiplies the cooling conductance


def effects(items: tuple[Degradation, ...], cluster_id: str, day: float) -> Effects:
    r, dv, cap, cool = 1.0, 0.0, 1.0, 1.0
    for d in items:
        if d.cluster_id != cluster_id or day <= d.start_day:
            continue
        g = (day - d.start_day) * d.rate
        if d.kind == "resistance":
            r += g
        elif d.kind == "cell_drift":
            dv += g
        elif d.kind == "capacity_fade":
            cap -= g
        else:
            cool -= g
    # Floors keep the physics finite; by then every limit has long been crossed.
    return Effects(r, dv, max(0.05, cap), max(0.02, cool))
