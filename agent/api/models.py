"""Response and request bodies. Field descriptions carry the unit; they are the OpenAPI reference.

Numbers are SI (W, Wh, V, A, s, %, degC). A value the agent does not trust right now is null,
never a made-up number. Battery power positive = discharge; grid power positive = import.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, create_model

from agent.model.points import CLUSTER_POINTS, PCS_POINTS, SITE_POINTS, PointDef


def _with_points(name: str, head: type[BaseModel], points: tuple[PointDef, ...]) -> type[BaseModel]:
    """`head` with one nullable field per catalogue point (agent/model/points.py), after its own."""
    fields: dict[str, Any] = {
        p.name: (bool | None if p.flag else float | None, Field(description=p.doc)) for p in points
    }
    return create_model(name, __base__=head, __module__=__name__, __doc__=head.__doc__, **fields)


class BoundOut(BaseModel):
    source: str = Field(description="controller that set this window, in priority order")
    lo_w: float = Field(description="W, lowest site battery power allowed (negative = charge)")
    hi_w: float = Field(description="W, highest site battery power allowed (positive = discharge)")
    reason: str


class _SiteHead(BaseModel):
    """The site: power flows, SoC, mode and the active constraint (+ the site points)."""

    seq: int = Field(description="cycle sequence number")
    t_wall: datetime = Field(description="site-local time of the snapshot")
    battery_w: float | None = Field(description="W, measured battery (PCS AC) power, positive = discharge")
    grid_up: bool = Field(description="utility supply present")
    soc_pct: float | None = Field(description="%, capacity-weighted SoC of clusters with a good SoC")
    energy_wh: float | None = Field(description="Wh, energy stored in clusters with a good SoC")
    capacity_wh: float = Field(description="Wh, nameplate energy of all clusters")
    clusters_online: int = Field(description="clusters the controller may command")
    clusters_total: int
    mode: str = Field(description="plan mode: auto, conservative, outage, manual, idle")
    operator_mode: str = Field(description="mode the operator asked for")
    setpoint_w: float = Field(description="W, battery power commanded this cycle")
    requested_w: float = Field(description="W, what the policy wanted before dispatch")
    shortfall_w: float = Field(description="W, |requested - achievable|")
    decided_by: str = Field(description="the active constraint: controller that set the final value")
    mode_bound: str | None = Field(
        None,
        description="the bound (device_limits, soc_max, reserve, no_export, ramp) that set the battery power"
        " instead of the mode's own controller, e.g. 'ramp' when mode conservative (a bad grid meter) still"
        " discharges for ramp support; null when the mode's controller set it",
    )
    reason: str = Field(description="why, in words")
    step_cause: str | None = Field(
        None,
        description="with ramp support on, the controller whose bound left no room inside the ramp window this"
        " cycle (the grid moved past the ramp limit): device_limits for a safety trip (BMS fault, lost PCS) or a"
        " load step beyond the fleet's power, edges or reserve, no_export, grid_import_limit; null when none",
    )
    bounds: list[BoundOut]
    grid_target_w: float | None = Field(
        None,
        description="W, grid import target written to the PCS in grid-power (PCC) control, which regulate"
        " the grid toward it on their own meter; null when every PCS follows its setpoint",
    )
    grid_ramp_w_per_s: float | None = Field(
        None, description="W/s, the ramp those PCS move their grid reference at; null as above"
    )
    active_alarms: int
    critical_alarms: int


if TYPE_CHECKING:  # the point fields are added at import; to mypy the model is its head
    SiteOut = _SiteHead
else:
    SiteOut = _with_points("SiteOut", _SiteHead, SITE_POINTS)


class _ClusterHead(BaseModel):
    """One battery cluster: its frame and derived values (+ the cluster points)."""

    id: str
    pcs_id: str
    status: str = Field(description="online, fault or offline from its BMS; maintenance while held")
    trusted: bool = Field(description="the controller may command it this cycle")
    maintenance: bool = Field(description="isolated by an operator or the site file")
    quality: str = Field(description="worst quality of SoC and limits: good, stale, comm_error, ...")
    age_s: float | None = Field(description="s, age of the oldest of SoC and limits")
    capacity_wh: float = Field(description="Wh, nameplate")
    energy_wh: float | None = Field(description="Wh, capacity x SoC")
    setpoint_w: float = Field(description="W, this cycle's share of the site setpoint")
    cell_spread_v: float | None = Field(description="V, cell_v_max - cell_v_min")
    alarms: int = Field(description="BMS event bitfield (SunSpec 802 Evt1), 0 = none")
    allowed_charge_w: float | None = Field(
        description="W, charge the agent allows (magnitude): max_charge_w, or less where its PCS is derated"
    )
    allowed_discharge_w: float | None = Field(
        description="W, discharge the agent allows (magnitude): max_discharge_w, or less where derated"
    )


class _PcsHead(BaseModel):
    """One PCS: its frame and this cycle's command (+ the PCS points)."""

    id: str
    status: str = Field(description="online, fault or offline")
    cluster_ids: list[str]
    rated_w: float = Field(description="W, rating")
    commanded_w: float = Field(description="W, setpoint written this cycle")
    quality: str
    age_s: float | None = Field(description="s")
    grid_control: bool = Field(
        description="regulating the grid import on its own meter this cycle (grid-power/PCC control)"
    )


if TYPE_CHECKING:
    ClusterOut = _ClusterHead
    PcsOut = _PcsHead
else:
    ClusterOut = _with_points("ClusterOut", _ClusterHead, CLUSTER_POINTS)
    PcsOut = _with_points("PcsOut", _PcsHead, PCS_POINTS)


class DeviceOut(BaseModel):
    id: str
    kind: str = Field(description="meter, pcs or cluster")
    role: str = Field(description="meters: grid, load, pv or rack")
    profile: str
    endpoint: str = Field(description="host:port/unit")
    health: dict[str, Any] | None = Field(description="communication health from the driver (null: not polled yet)")


class AlarmOut(BaseModel):
    id: str = Field(description="code@source")
    code: str
    source: str
    severity: str = Field(description="info, warning or critical")
    title: dict[str, str] = Field(description="what the code means, by language: en, zh (the alarm catalogue)")
    message: str = Field(description="this occurrence's detail (the device's error, the quality seen)")
    raised_at: datetime
    cleared_at: datetime | None
    acked_by: str | None
    active: bool


class AlarmsOut(BaseModel):
    active: list[AlarmOut]
    history: list[AlarmOut] = Field(description="cleared alarms, newest first")


class DemandOut(BaseModel):
    source: str = Field(description="'provider' (billing ledger) or 'observed' (seen by the API since it started)")
    since: datetime | None = Field(description="observed: first cycle the API saw")
    interval_s: float = Field(description="s, demand interval")
    interval_start: datetime | None
    interval_elapsed_s: float | None = Field(description="s")
    interval_avg_w: float | None = Field(description="W, average grid import so far this interval")
    month_peak_w: float | None = Field(description="W, highest interval average import this month")
    month_peak_at: datetime | None = Field(description="start of that interval")
    target_w: float | None = Field(description="W, demand target the shaving controller holds")
    target_source: str | None = Field(description="config, plan or provider")
    target_reason: str | None = Field(description="the shaving controller's reason this cycle")


class RampOut(BaseModel):
    window_s: float = Field(description="s, span of the cycles analysed")
    samples: int
    limit_w_per_s: float = Field(description="W/s, configured grid ramp limit (0 = off)")
    load_max_w_per_s: float | None = Field(description="W/s, largest load step seen")
    grid_max_w_per_s: float | None = Field(description="W/s, largest grid import step seen")
    load_p99_w_per_s: float | None = Field(description="W/s")
    grid_p99_w_per_s: float | None = Field(description="W/s")
    smoothing_pct: float | None = Field(description="%, 100 x (1 - sum|grid steps| / sum|load steps|)")
    grid_over_limit: int = Field(description="cycles whose grid step exceeded the limit")


class CycleOut(BaseModel):
    cycle_s: float = Field(description="s, configured period")
    last_cycle_ms: float | None = Field(description="ms, wall time of the last cycle")
    last_poll_ms: float | None = Field(description="ms")
    last_write_ms: float | None = Field(description="ms")
    p50_ms: float = Field(description="ms, over the last 600 cycles")
    p99_ms: float = Field(description="ms")
    max_ms: float = Field(description="ms")
    cycles: int
    overruns: int = Field(description="cycles skipped because one ran over its period")
    last_cycle_age_s: float | None = Field(description="s since the last published cycle")


class OperatorOut(BaseModel):
    mode: str
    override_w: float | None = Field(description="W, operator setpoint while active")
    override_remaining_s: float | None = Field(description="s until the override expires (null: none)")
    reserve_load_w: float = Field(description="W, effective backup reserve load")
    reserve_minutes: float = Field(description="min, effective backup reserve duration")
    reserve_from: str = Field(description="'site' (site file) or 'operator'")
    maintenance: list[str] = Field(description="clusters isolated for maintenance")
    derate: dict[str, float] = Field(default_factory=dict, description="%, operator caps by cluster id")


class HistoryOut(BaseModel):
    t: list[float] = Field(description="s, Unix time of each cycle")
    load_w: list[float | None] = Field(description="W")
    grid_w: list[float | None] = Field(description="W")
    battery_w: list[float | None] = Field(description="W")
    pv_w: list[float | None] = Field(description="W")
    soc_pct: list[float | None] = Field(description="%")


class LiveOut(BaseModel):
    """One cycle as streamed to the dashboard (and GET /api/live)."""

    site: SiteOut
    clusters: list[ClusterOut]
    pcs: list[PcsOut]
    demand: DemandOut
    operator: OperatorOut
    alarms: list[AlarmOut] = Field(description="active alarms")
    cycle_ms: float = Field(description="ms, this cycle's wall time")


class WhoAmI(BaseModel):
    name: str
    role: str = Field(description="viewer or operator")


class Problem(BaseModel):
    detail: str = Field(description="what was wrong, naming the field")


# --- control requests: unknown fields and wrong types are refused (422) ----------------------
class _Req(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ModeReq(_Req):
    mode: str = Field(description="auto, idle or conservative")


class OverrideReq(_Req):
    setpoint_w: float = Field(description="W, site battery power to hold, positive = discharge")
    duration_s: float = Field(description="s, expiry (at most 4 h)")


class ReserveReq(_Req):
    reserve_load_w: float = Field(description="W, critical load the reserve must carry")
    reserve_minutes: float = Field(description="min, for how long")


class MaintenanceReq(_Req):
    on: StrictBool = Field(description="true: isolate for maintenance; false: return to service")


class DerateReq(_Req):
    max_power_pct: float = Field(
        ge=10.0, le=100.0, description="%, cap on the cluster's (and so its PCS's) BMS limits; 100 lifts it"
    )


class ControlOut(BaseModel):
    accepted: bool
    operator: OperatorOut
