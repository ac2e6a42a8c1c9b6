"""The point catalogue: every measured value of a cluster, a PCS and the site, declared once.

Each sink derives its record from these tables: the API models and views (and with them the
dashboard feed), the MQTT payloads and the telemetry points. So a new point is one line here
(plus the snapshot field it reads); a test checks that every sink carries every point.

A point's `name` is the snapshot attribute it reads (a `Measured`) and its key in every sink.
Derived values (stored energy, cell spread, site SoC, battery power) and the frame of a record
(ids, status, setpoint, nameplate) are not points: each sink states those itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.model.snapshot import ClusterSnapshot, Measured, PcsSnapshot, SiteSnapshot


@dataclass(frozen=True, slots=True)
class PointDef:
    name: str  # snapshot attribute and key in every sink (unit suffix: _w, _pct, _v, _a, _c)
    doc: str  # unit first, then meaning: the API's field description
    flag: bool = False  # a 0/1 read-back: a boolean in JSON (API, MQTT), 1.0/0.0 in telemetry

    @property
    def role(self) -> str:
        """The name without its unit: a site point's meter role, a quality key ("grid")."""
        return self.name.removesuffix("_w")

    def of(self, record: ClusterSnapshot | PcsSnapshot | SiteSnapshot) -> Measured:
        m: Measured = getattr(record, self.name)
        return m


CLUSTER_POINTS: tuple[PointDef, ...] = (
    PointDef("soc_pct", "%"),
    PointDef("soh_pct", "%"),
    PointDef("power_w", "W, positive = discharge"),
    PointDef("max_charge_w", "W, charge the BMS allows now (magnitude)"),
    PointDef("max_discharge_w", "W, discharge the BMS allows now (magnitude)"),
    PointDef("voltage_v", "V"),
    PointDef("current_a", "A, positive = discharge"),
    PointDef("cell_v_max", "V"),
    PointDef("cell_v_min", "V"),
    PointDef("temp_max_c", "degC"),
    PointDef("temp_min_c", "degC"),
    PointDef("cycles", "equivalent full cycles"),
)

PCS_POINTS: tuple[PointDef, ...] = (
    PointDef("power_w", "W, measured AC power, positive = discharge"),
    PointDef("setpoint_w", "W, setpoint read back from the PCS"),
    PointDef(
        "pcc_active",
        "read back: the PCS reports grid-power control (null: not a PCC PCS, or not read)",
        flag=True,
    ),
    PointDef("pcc_grid_w", "W, what the PCS's own grid meter reads (PCC PCS only)"),
)

SITE_POINTS: tuple[PointDef, ...] = (
    PointDef("grid_w", "W, grid power, positive = import"),
    PointDef("load_w", "W, site load (GPU racks and the rest)"),
    PointDef("pv_w", "W, PV output"),
)
