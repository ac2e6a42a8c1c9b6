"""The site as the agent saw it in one cycle: immutable, SI units, every value with quality.

Sign conventions (one meaning everywhere):
- battery / PCS / cluster power: positive = discharge (into the site), negative = charge;
- grid power: positive = import;  grid = load - pv - battery.

Control code reads only this; it never touches a device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from agent.pickling import fast_pickle
from drivers.reading import Quality


@fast_pickle
@dataclass(frozen=True, slots=True)
class Measured:
    """A measured quantity in SI units with its quality and age (s) at snapshot time."""

    value: float
    quality: Quality = Quality.GOOD
    age_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.quality is Quality.GOOD and math.isfinite(self.value)

    @staticmethod
    def missing(quality: Quality = Quality.COMM_ERROR) -> Measured:
        return Measured(math.nan, quality, math.inf)


class ClusterStatus(StrEnum):
    ONLINE = "online"  # BMS reports a usable state and the agent trusts its data
    FAULT = "fault"  # the BMS reports a fault or alarm that forbids operation
    OFFLINE = "offline"  # no trustworthy data (comm loss, stale, removed)
    MAINTENANCE = "maintenance"  # isolated by an operator; never commanded


class PcsStatus(StrEnum):
    ONLINE = "online"
    FAULT = "fault"  # tripped or reporting a fault
    OFFLINE = "offline"  # comm loss or stale


# Numeric codes for telemetry (InfluxDB fields are numeric only).
CLUSTER_STATUS_CODE: dict[ClusterStatus, int] = {
    ClusterStatus.ONLINE: 0,
    ClusterStatus.FAULT: 1,
    ClusterStatus.OFFLINE: 2,
    ClusterStatus.MAINTENANCE: 3,
}
PCS_STATUS_CODE: dict[PcsStatus, int] = {PcsStatus.ONLINE: 0, PcsStatus.FAULT: 1, PcsStatus.OFFLINE: 2}


@fast_pickle
@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """One battery cluster (rack string + BMS). Limits are magnitudes in W (>= 0)."""

    id: str
    pcs_id: str
    status: ClusterStatus
    capacity_wh: float  # nameplate energy (config)
    soc_pct: Measured
    max_charge_w: Measured  # what the BMS allows right now (AChaMax x V)
    max_discharge_w: Measured  # (ADisChaMax x V)
    power_w: Measured = field(default_factory=Measured.missing)
    soh_pct: Measured = field(default_factory=Measured.missing)
    voltage_v: Measured = field(default_factory=Measured.missing)
    current_a: Measured = field(default_factory=Measured.missing)
    cell_v_max: Measured = field(default_factory=Measured.missing)
    cell_v_min: Measured = field(default_factory=Measured.missing)
    temp_max_c: Measured = field(default_factory=Measured.missing)
    temp_min_c: Measured = field(default_factory=Measured.missing)
    cycles: Measured = field(default_factory=Measured.missing)
    alarms: int = 0  # BMS event bitfield (SunSpec 802 Evt1)
    # In maintenance, but its BMS still reports the contactor closed and the agent can open it:
    # its PCS is held at 0 W until it is open (a PCS drives all its clusters on one DC bus).
    isolating: bool = False

    @property
    def trusted(self) -> bool:
        """May this cluster be commanded at all? Online, with a good SoC and good limits."""
        return (
            self.status is ClusterStatus.ONLINE
            and self.soc_pct.ok
            and self.max_charge_w.ok
            and self.max_discharge_w.ok
        )

    @property
    def energy_wh(self) -> float:
        """Stored energy from SoC and nameplate (NaN when SoC is unknown)."""
        return self.capacity_wh * self.soc_pct.value / 100.0


@fast_pickle
@dataclass(frozen=True, slots=True)
class PcsSnapshot:
    """One power conversion system and the clusters wired behind it."""

    id: str
    cluster_ids: tuple[str, ...]
    status: PcsStatus
    rated_w: float  # apparent/active power rating, magnitude
    power_w: Measured = field(default_factory=Measured.missing)
    setpoint_w: Measured = field(default_factory=Measured.missing)  # read back
    # The site file runs this PCS in grid-power (PCC) control ([[pcs]] grid_control = "pcc"): it
    # regulates the grid import on its own meter toward the target the plan gives it.
    grid_control: bool = False
    pcc_active: Measured = field(default_factory=Measured.missing)  # read back: 1 while in the mode

    @property
    def trusted(self) -> bool:
        return self.status is PcsStatus.ONLINE


@fast_pickle
@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """Everything one control cycle knows. `t_wall` is timezone-aware site-local time."""

    seq: int
    t_mono: float
    t_wall: datetime
    grid_w: Measured  # positive = import
    load_w: Measured  # GPU racks + rest of the site load
    pv_w: Measured  # 0 W, GOOD, at sites without PV
    grid_up: bool  # utility supply present (False during an outage)
    clusters: tuple[ClusterSnapshot, ...]
    pcs: tuple[PcsSnapshot, ...]

    @property
    def battery_w(self) -> float:
        """Measured battery output (sum of PCS AC power, NaN if any trusted PCS is unknown)."""
        total = 0.0
        for p in self.pcs:
            if p.status is PcsStatus.OFFLINE:
                continue
            if not p.power_w.ok:
                return math.nan
            total += p.power_w.value
        return total

    @property
    def has_grid_control(self) -> bool:
        """Is any PCS configured for grid-power (PCC) control?"""
        return any(p.grid_control for p in self.pcs)

    def cluster(self, cluster_id: str) -> ClusterSnapshot | None:
        for c in self.clusters:
            if c.id == cluster_id:
                return c
        return None
