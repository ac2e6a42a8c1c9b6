"""The MQTT topic tree and the JSON payloads the agent publishes (units in the key names).

    <prefix>/<site>/status          retained  {"status": "online"|"offline", ...}; the will says offline
    <prefix>/<site>/state           retained  site power flow, SoC, quality per value
    <prefix>/<site>/cluster/<id>    retained  one cluster's state, limits and setpoint
    <prefix>/<site>/pcs/<id>        retained  one PCS's state, read-backs and command
    <prefix>/<site>/plan            retained  the cycle's decision and its constraint window
    <prefix>/<site>/plan/dispatch   retained  the dispatch plan (next 24 h: SoC, grid cap, price) and the
                                              reason it changed; on every change of plan (GET /api/plan's body)
    <prefix>/<site>/alarm           events    an alarm raised or cleared
    <prefix>/<site>/alarm/active    retained  how many alarms are active and the worst severity (on change)
    <prefix>/<site>/savings         retained  the ledger's savings to date (on change: at most every 10 s)
    <prefix>/<site>/health          retained  cluster health: indicators, trends, recommendations (daily)
    <prefix>/<site>/cmd             in        signed operator commands (see agent/mqtt/auth.py)
    <prefix>/<site>/cmd/ack         out       {"id", "accepted", "reason", ...} per command

Values are SI (W, Wh, V, A, s, %); battery power positive = discharge; grid positive = import.
A value nobody measured is JSON null, with its quality next to it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.live.hub import CycleRecord
from agent.model.alarms import Alarm, kind, worst
from agent.model.plan import GridControl, Plan
from agent.model.points import CLUSTER_POINTS, PCS_POINTS, SITE_POINTS, PointDef
from agent.model.snapshot import ClusterSnapshot, Measured, PcsSnapshot, shown_status
from agent.model.soc import site_soc

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str
    site: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.site}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    def cluster(self, cluster_id: str) -> str:
        return f"{self.base}/cluster/{cluster_id}"

    def pcs(self, pcs_id: str) -> str:
        return f"{self.base}/pcs/{pcs_id}"

    @property
    def plan(self) -> str:
        return f"{self.base}/plan"

    @property
    def dispatch(self) -> str:
        """The planner's dispatch plan: under `plan` (a `plan/#` subscriber gets both), not on it:
        `plan` carries the 1 s decision, which existing consumers read."""
        return f"{self.base}/plan/dispatch"

    @property
    def alarm(self) -> str:
        return f"{self.base}/alarm"

    @property
    def alarm_active(self) -> str:
        """The active alarms' summary, retained, so a late subscriber (the fleet view) knows them;
        under `alarm` (an `alarm/#` subscriber gets events and summary), not on it."""
        return f"{self.base}/alarm/active"

    @property
    def savings(self) -> str:
        return f"{self.base}/savings"

    @property
    def health(self) -> str:
        return f"{self.base}/health"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def ack(self) -> str:
        return f"{self.base}/cmd/ack"


def dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _point(p: PointDef, m: Measured) -> float | bool | None:
    """A catalogue point's value as published: null when nobody measured it, a flag as a boolean."""
    v = _num(m.value)
    return v == 1.0 if p.flag and v is not None else v


def state_payload(rec: CycleRecord) -> dict[str, Any]:
    s, p = rec.snapshot, rec.plan
    soc = site_soc(s.clusters)
    return {
        "v": SCHEMA_VERSION,
        "seq": s.seq,
        "t": s.t_wall.isoformat(),
        **{pt.name: _point(pt, pt.of(s)) for pt in SITE_POINTS},
        "battery_w": _num(s.battery_w),
        "quality": {pt.role: pt.of(s).quality.value for pt in SITE_POINTS},
        "grid_up": s.grid_up,
        "soc_pct": soc.soc_pct,
        "energy_wh": soc.energy_wh,
        "capacity_wh": sum(c.capacity_wh for c in s.clusters),
        "setpoint_w": p.site_setpoint_w,
        "mode": p.mode,
        "cycle_ms": rec.cycle_ms,
    }


def cluster_payload(
    c: ClusterSnapshot, setpoint_w: float | None, t: datetime, held: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """`held`: the clusters in the operator's hold that cycle (CycleRecord.maintenance)."""
    return {
        "v": SCHEMA_VERSION,
        "id": c.id,
        "pcs": c.pcs_id,
        "t": t.isoformat(),
        "status": shown_status(c, held).value,
        **{p.name: _point(p, p.of(c)) for p in CLUSTER_POINTS},
        "soc_quality": c.soc_pct.quality.value,
        "alarms": c.alarms,
        "setpoint_w": setpoint_w,
        "capacity_wh": c.capacity_wh,
    }


def pcs_payload(p: PcsSnapshot, command_w: float | None, t: datetime) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "id": p.id,
        "clusters": list(p.cluster_ids),
        "t": t.isoformat(),
        "status": p.status.value,
        **{pt.name: _point(pt, pt.of(p)) for pt in PCS_POINTS},
        "quality": p.power_w.quality.value,
        "command_w": command_w,
        "rated_w": p.rated_w,
    }


def plan_payload(p: Plan, t: datetime) -> dict[str, Any]:
    lo = max((b.lo_w for b in p.bounds), default=None)
    hi = min((b.hi_w for b in p.bounds), default=None)
    return {
        "v": SCHEMA_VERSION,
        "seq": p.seq,
        "t": t.isoformat(),
        "mode": p.mode,
        "setpoint_w": p.site_setpoint_w,
        "requested_w": p.requested_w,
        "shortfall_w": p.shortfall_w,
        "decided_by": p.decided_by,
        "reason": p.reason,
        "window_w": [lo, hi],
        "bounds": [{"source": b.source, "lo_w": b.lo_w, "hi_w": b.hi_w, "reason": b.reason} for b in p.bounds],
        "pcs_setpoints_w": dict(p.pcs_setpoints_w),
        "grid_control": grid_control_payload(p.grid_control),
        "alarms": list(p.alarms),
    }


def grid_control_payload(gc: GridControl | None) -> dict[str, Any] | None:
    """What the PCS in grid-power (PCC) control were told (None: every PCS follows its setpoint)."""
    if gc is None:
        return None
    return {
        "target_w": gc.target_w,
        "ramp_w_per_s": gc.ramp_w_per_s,
        "grid_min_w": gc.grid_min_w,
        "pcs": {
            pid: {"share": lim.share, "max_discharge_w": lim.max_discharge_w, "max_charge_w": lim.max_charge_w}
            for pid, lim in gc.pcs.items()
        },
    }


def alarm_payload(a: Alarm, active: bool) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "id": a.id,
        "code": a.code,
        "source": a.source,
        "severity": a.severity.value,
        "active": active,
        "title": kind(a.code).text(),
        "message": a.message,
        "raised_at": a.raised_at.isoformat(),
        "cleared_at": a.cleared_at.isoformat() if a.cleared_at is not None else None,
        "acked_by": a.acked_by,
    }


def alarm_active_payload(active: list[Alarm], t: datetime) -> dict[str, Any]:
    """The active alarms in short: count, worst severity (null when none), codes (sorted, unique)."""
    most = worst(a.severity for a in active)
    return {
        "v": SCHEMA_VERSION,
        "t": t.isoformat(),
        "active": len(active),
        "worst": most.value if most is not None else None,
        "codes": sorted({a.code for a in active}),
    }


SAVINGS_KEYS = (
    "net_savings",
    "energy_savings",
    "demand_savings",
    "degradation_cost",
    "outage_value",
    "discharge_kwh",
    "charge_kwh",
    "counted_h",
)


def savings_payload(report: dict[str, Any], t: datetime) -> dict[str, Any] | None:
    """The ledger's savings to date in short (GET /api/savings has the months and ROI): amounts in
    `currency`, energies in kWh, time counted in h. None while the ledger has no report yet."""
    to_date = report.get("to_date")
    if "currency" not in report or not isinstance(to_date, dict):
        return None
    return {
        "v": SCHEMA_VERSION,
        "t": t.isoformat(),
        "currency": report["currency"],
        "tariff": report.get("tariff"),
        **{k: _num(float(to_date[k])) if isinstance(to_date.get(k), (int, float)) else None for k in SAVINGS_KEYS},
    }


def status_payload(status: str, client_id: str, t: datetime | None) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "status": status, "client_id": client_id, "t": t.isoformat() if t else None}


def dispatch_payload(readout: dict[str, Any]) -> dict[str, Any]:
    """The planner's read-out (agent/live/plan_view.py, strict JSON: no NaN/inf) with the schema version."""
    return {"v": SCHEMA_VERSION, **readout}


def health_payload(readout: dict[str, Any]) -> dict[str, Any]:
    """The health read-out (agent/health/sink.py, already strict JSON) with the schema version."""
    return {"v": SCHEMA_VERSION, **readout}
