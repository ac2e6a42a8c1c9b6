"""The site as the agent saw it in one cycle: immutable, SI units, every value with quality.

Sign conventions (one meaning everywhere):
- battery / PCS / cluster power: positive = discharge (into the site), negative = charge;
- grid power: positive = import;  grid = load - pv - battery.

Control code reads only this; it never touches a device.

The per-cycle classes are frozen dataclasses with a hand-written `__init__` (init=False): the one
dataclasses generates is interpreted Python even in the mypyc build (`make fast`), ~0.9 µs per
object, while this one compiles to direct slot stores (~60 ns); the offline replay builds several
per step for millions of steps. `object.__setattr__` is how a frozen dataclass sets its own
fields; the generated `__init__` does the same. Equality, repr, `replace()` and pickling are the
dataclass's as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from agent.model.pickling import fast_pickle
from drivers.reading import Quality


@dataclass(frozen=True, slots=True, init=False)
class Measured:
    """A measured quantity in SI units with its quality and age (s) at snapshot time."""

    value: float
    quality: Quality
    age_s: float

    def __init__(self, value: float, quality: Quality = Quality.GOOD, age_s: float = 0.0) -> None:
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "quality", quality)
        object.__setattr__(self, "age_s", age_s)

    @property
    def ok(self) -> bool:
        return self.quality is Quality.GOOD and math.isfinite(self.value)

    @staticmethod
    def missing(quality: Quality = Quality.COMM_ERROR) -> Measured:
        return Measured(math.nan, quality, math.inf)


MISSING = Measured.missing()  # a value no device gave (immutable, so one object serves everywhere)


class ClusterStatus(StrEnum):
    ONLINE = "online"  # BMS reports a usable state and the agent trusts its data
    FAULT = "fault"  # the BMS reports a fault or alarm that forbids operation
    OFFLINE = "offline"  # no trustworthy data (comm loss, stale, removed)
    # Not a device status: what the API, MQTT and telemetry show for a cluster an operator holds
    # out of service (decide()'s OperatorState.maintenance input; `shown_status`). Snapshots never carry it.
    MAINTENANCE = "maintenance"


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


@dataclass(frozen=True, slots=True, init=False)
class ClusterSnapshot:
    """One battery cluster (rack string + BMS). Limits are magnitudes in W (>= 0)."""

    id: str
    pcs_id: str
    status: ClusterStatus
    capacity_wh: float  # nameplate energy (config)
    soc_pct: Measured
    max_charge_w: Measured  # what the BMS allows right now (AChaMax x V)
    max_discharge_w: Measured  # (ADisChaMax x V)
    power_w: Measured
    soh_pct: Measured
    voltage_v: Measured
    current_a: Measured
    cell_v_max: Measured
    cell_v_min: Measured
    temp_max_c: Measured
    temp_min_c: Measured
    cycles: Measured
    alarms: int  # BMS event bitfield (SunSpec 802 Evt1)
    # The agent can open and close its contactor (its profile maps connect_cmd): one the operator
    # holds in maintenance that still reports itself online has its PCS held at 0 W until it is
    # open (agent.control.fleet; a PCS drives all its clusters on one DC bus).
    switchable: bool

    def __init__(
        self,
        id: str,
        pcs_id: str,
        status: ClusterStatus,
        capacity_wh: float,
        soc_pct: Measured,
        max_charge_w: Measured,
        max_discharge_w: Measured,
        power_w: Measured = MISSING,
        soh_pct: Measured = MISSING,
        voltage_v: Measured = MISSING,
        current_a: Measured = MISSING,
        cell_v_max: Measured = MISSING,
        cell_v_min: Measured = MISSING,
        temp_max_c: Measured = MISSING,
        temp_min_c: Measured = MISSING,
        cycles: Measured = MISSING,
        alarms: int = 0,
        switchable: bool = False,
    ) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "pcs_id", pcs_id)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "capacity_wh", capacity_wh)
        object.__setattr__(self, "soc_pct", soc_pct)
        object.__setattr__(self, "max_charge_w", max_charge_w)
        object.__setattr__(self, "max_discharge_w", max_discharge_w)
        object.__setattr__(self, "power_w", power_w)
        object.__setattr__(self, "soh_pct", soh_pct)
        object.__setattr__(self, "voltage_v", voltage_v)
        object.__setattr__(self, "current_a", current_a)
        object.__setattr__(self, "cell_v_max", cell_v_max)
        object.__setattr__(self, "cell_v_min", cell_v_min)
        object.__setattr__(self, "temp_max_c", temp_max_c)
        object.__setattr__(self, "temp_min_c", temp_min_c)
        object.__setattr__(self, "cycles", cycles)
        object.__setattr__(self, "alarms", alarms)
        object.__setattr__(self, "switchable", switchable)

    @property
    def trusted(self) -> bool:
        """May this cluster be commanded at all? Online, with a good SoC and good limits."""
        return (
            self.status is ClusterStatus.ONLINE and self.soc_pct.ok and self.max_charge_w.ok and self.max_discharge_w.ok
        )

    @property
    def energy_wh(self) -> float:
        """Stored energy from SoC and nameplate (NaN when SoC is unknown)."""
        return self.capacity_wh * self.soc_pct.value / 100.0


@dataclass(frozen=True, slots=True, init=False)
class PcsSnapshot:
    """One power conversion system and the clusters wired behind it."""

    id: str
    cluster_ids: tuple[str, ...]
    status: PcsStatus
    rated_w: float  # apparent/active power rating, magnitude
    power_w: Measured
    setpoint_w: Measured  # read back
    # The site file runs this PCS in grid-power (PCC) control ([[pcs]] grid_control = "pcc"): it
    # regulates the grid import on its own meter toward the target the plan gives it. (One the agent
    # took out of the mode, its meter disagreeing with the site's, stays True here: decide()'s
    # pcc_off says so, agent/live/pcc_watch.py; Plan.grid_control names the PCS in the mode.)
    grid_control: bool
    pcc_active: Measured  # read back: 1 while in the mode
    pcc_grid_w: Measured  # read back: what the PCS's own grid meter reads (import positive)

    def __init__(
        self,
        id: str,
        cluster_ids: tuple[str, ...],
        status: PcsStatus,
        rated_w: float,
        power_w: Measured = MISSING,
        setpoint_w: Measured = MISSING,
        grid_control: bool = False,
        pcc_active: Measured = MISSING,
        pcc_grid_w: Measured = MISSING,
    ) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "cluster_ids", cluster_ids)
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "rated_w", rated_w)
        object.__setattr__(self, "power_w", power_w)
        object.__setattr__(self, "setpoint_w", setpoint_w)
        object.__setattr__(self, "grid_control", grid_control)
        object.__setattr__(self, "pcc_active", pcc_active)
        object.__setattr__(self, "pcc_grid_w", pcc_grid_w)

    @property
    def trusted(self) -> bool:
        return self.status is PcsStatus.ONLINE


@dataclass(frozen=True, slots=True, init=False)
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

    def __init__(
        self,
        seq: int,
        t_mono: float,
        t_wall: datetime,
        grid_w: Measured,
        load_w: Measured,
        pv_w: Measured,
        grid_up: bool,
        clusters: tuple[ClusterSnapshot, ...],
        pcs: tuple[PcsSnapshot, ...],
    ) -> None:
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "t_mono", t_mono)
        object.__setattr__(self, "t_wall", t_wall)
        object.__setattr__(self, "grid_w", grid_w)
        object.__setattr__(self, "load_w", load_w)
        object.__setattr__(self, "pv_w", pv_w)
        object.__setattr__(self, "grid_up", grid_up)
        object.__setattr__(self, "clusters", clusters)
        object.__setattr__(self, "pcs", pcs)

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


def shown_status(c: ClusterSnapshot, maintenance: frozenset[str]) -> ClusterStatus:
    """The status the sinks show: MAINTENANCE for a cluster in the operator's hold (`maintenance`:
    the set the cycle's decide() was given, CycleRecord.maintenance), else what its BMS reported."""
    return ClusterStatus.MAINTENANCE if c.id in maintenance else c.status


fast_pickle(Measured)
fast_pickle(ClusterSnapshot)
fast_pickle(PcsSnapshot)
fast_pickle(SiteSnapshot)
