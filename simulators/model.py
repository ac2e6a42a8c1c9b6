"""The whole simulated site as pure physics: battery plant + load + PV + grid connection.

grid = load - pv - battery (import positive). In a grid outage (grid_up False) the PCS units
carry load - pv together; what they cannot carry is reported as unserved (or, with surplus PV
they cannot absorb, curtailed). Meter voltage and frequency read 0 during an outage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drivers import keys as K
from simulators.load import LoadModel, Offset
from simulators.physics import BatteryPlant

RACK_ROWS = 8  # rack-load meters with per-row points (rack_row_N_w) see the load split evenly


@dataclass(slots=True)
class Meter:
    """Energy counters of one meter (import = positive power)."""

    power_w: float = 0.0
    import_wh: float = 0.0
    export_wh: float = 0.0

    def add(self, power_w: float, dt: float) -> None:
        self.power_w = power_w
        if power_w >= 0.0:
            self.import_wh += power_w * dt / 3600.0
        else:
            self.export_wh -= power_w * dt / 3600.0


@dataclass(slots=True)
class SiteModel:
    plant: BatteryPlant
    load: Offset
    pv: LoadModel | None = None
    grid_up: bool = True
    voltage_v: float = 400.0  # meter line-to-line voltage while the grid is up
    frequency_hz: float = 50.0
    grid: Meter = field(default_factory=Meter)
    load_meter: Meter = field(default_factory=Meter)
    pv_meter: Meter = field(default_factory=Meter)
    battery_w: float = 0.0
    unserved_w: float = 0.0
    unserved_wh: float = 0.0
    curtailed_w: float = 0.0

    @property
    def t(self) -> float:
        return self.plant.t

    def step(self, dt: float) -> None:
        """Advance `dt` s: the load and PV at the end of the step, the plant over the step."""
        t = self.plant.t + dt
        load = self.load.at(t)
        pv = self.pv.at(t) if self.pv is not None else 0.0
        if self.grid_up:
            batt = self.plant.step(None, dt, net_w=load - pv)
            grid = load - pv - batt
            self.unserved_w = self.curtailed_w = 0.0
        else:
            batt = self.plant.step(None, dt, island_w=load - pv)
            gap = load - pv - batt
            grid = 0.0
            self.unserved_w = max(0.0, gap)
            self.curtailed_w = max(0.0, -gap)
            self.unserved_wh += self.unserved_w * dt / 3600.0
        self.battery_w = batt
        self.grid.add(grid, dt)
        self.load_meter.add(load, dt)
        self.pv_meter.add(pv, dt)

    def meter_values(self, role: str) -> dict[str, float | int | str]:
        """What the meter with `role` (grid, load, rack, pv) reports, by canonical key.

        Power is positive in the role's own direction (grid import, load consumption, PV
        generation); `energy_import_wh` counts that direction. During an outage the grid meter
        reads 0 V / 0 Hz; the site bus (load and PV meters) is held up by the PCS units.
        """
        m = self.grid if role == "grid" else (self.pv_meter if role == "pv" else self.load_meter)
        live = self.grid_up or role != "grid"
        v = self.voltage_v if live else 0.0
        state = K.STATE_ONLINE if role != "pv" or m.power_w > 0.0 else K.STATE_STANDBY
        row_w = m.power_w / RACK_ROWS
        vals: dict[str, float | int | str] = {f"rack_row_{i}_w": row_w for i in range(1, RACK_ROWS + 1)}
        return vals | {
            K.POWER_W: m.power_w,
            K.VOLTAGE_V: v,
            K.CURRENT_A: m.power_w / (v * 3**0.5) if v else 0.0,
            K.FREQUENCY_HZ: self.frequency_hz if live else 0.0,
            K.ENERGY_IMPORT_WH: m.import_wh,
            K.ENERGY_EXPORT_WH: m.export_wh,
            K.STATE: state,
            K.ALARMS: 0,
        }
