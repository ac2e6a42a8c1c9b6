"""The telemetry schema: one CycleRecord -> numeric points, and InfluxDB line protocol.

Measurements (tags in brackets; every field numeric; states/modes/qualities/sources as integer
codes from the tables below; timestamp = the snapshot's t_wall in ns, never the writer's clock):

- site    [site]                  the site points (grid_w, load_w, pv_w), battery_w, grid_up, soc_pct,
                                  energy_wh, capacity_wh, grid_q, load_q, pv_q, ramp_limit_w_per_s,
                                  demand_target_w (when configured), seq
- meter   [site, meter]           power_w, quality, age_s   (meter = grid | load | pv)
- rack    [site, rack]            power_w, quality          (rack = "total" or a rack id from MQTT)
- cluster [site, cluster, pcs]    the cluster points (soc_pct, soh_pct, power_w, max_charge_w,
                                  max_discharge_w, voltage_v, current_a, cell_v_max, cell_v_min,
                                  temp_max_c, temp_min_c, cycles), setpoint_w, status, alarms, soc_q,
                                  limits_q
- pcs     [site, pcs]             the PCS points (power_w, setpoint_w read back, pcc_active 1/0,
                                  pcc_grid_w), command_w, rated_w, status, power_q

The points are the catalogue's (agent/model/points.py): a point added there is written here.
- plan    [site]                  site_setpoint_w, requested_w, shortfall_w, lo_w, hi_w, mode,
                                  decided_by, alarms, grid_target_w, grid_ramp_w_per_s,
                                  planned_soc_pct, planned_grid_cap_w (while a dispatch plan is tracked)
- plan    [site, bound]           lo_w, hi_w   (one series per constraint source)
- alarm   [site, code, source]    active (1/0), severity, acked
- ledger  [site]                  every numeric leaf the savings ledger reports (nested keys
                                  joined by "_"), written every `ledger_every_s`
- agent   [site]                  cycle_ms, poll_ms, write_ms, overruns, alarms_active,
                                  queue_depth, spool_points, spool_bytes, spool_dropped,
                                  queue_dropped, rejected_points

Non-finite values (NaN/inf: a value nobody measured) are left out of the point rather than
written as a number, so a missing value is never charted as zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.live.hub import CycleRecord
from agent.model.alarms import SEVERITY_CODE, Alarm
from agent.model.allowed import allowed_limits_w
from agent.model.points import CLUSTER_POINTS, PCS_POINTS, SITE_POINTS
from agent.model.snapshot import CLUSTER_STATUS_CODE, PCS_STATUS_CODE, Measured, shown_status
from agent.model.soc import site_soc
from drivers.reading import Quality

MEASUREMENTS = ("site", "meter", "rack", "cluster", "pcs", "plan", "alarm", "ledger", "agent", "health")

QUALITY_CODE: dict[Quality, int] = {
    Quality.GOOD: 0,
    Quality.STALE: 1,
    Quality.OUT_OF_RANGE: 2,
    Quality.INVALID: 3,
    Quality.COMM_ERROR: 4,
}
MODE_CODE: dict[str, int] = {"auto": 0, "idle": 1, "conservative": 2, "manual": 3, "outage": 4}
# Constraint sources and deciding controllers (Plan.decided_by, Bound.source). Codes are stable:
# append new names, never renumber. A name missing here is written as UNKNOWN_CODE.
SOURCE_CODE: dict[str, int] = {
    "device_limits": 0,
    "soc_max": 1,
    "reserve": 2,
    "no_export": 3,
    "ramp": 4,
    "outage": 5,
    "failsafe": 6,
    "override": 7,
    "idle": 8,
    "conservative": 9,
    "demand": 10,
    "tou_charge": 11,
    "tou_discharge": 12,
    "tou_hold": 13,
    "pv_surplus": 14,
    "balance": 15,
    "derate": 16,
    "maintenance": 17,
    "pcc_latch": 18,
    "plan": 19,
    "plan_cap": 20,
    "edges": 21,
    "grid_import_limit": 22,
    "limit_recharge": 23,
}
UNKNOWN_CODE = 99
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
# CLUSTER_STATUS_CODE, PCS_STATUS_CODE (agent.model.snapshot) and SEVERITY_CODE (agent.model.alarms) are
# the other code tables; they are re-exported here so TELEMETRY.md has one place to point at.
__all__ = [
    "CLUSTER_STATUS_CODE",
    "MEASUREMENTS",
    "MODE_CODE",
    "PCS_STATUS_CODE",
    "QUALITY_CODE",
    "SEVERITY_CODE",
    "SOURCE_CODE",
    "UNKNOWN_CODE",
    "Point",
    "encode",
    "ledger_point",
    "line",
    "points_for",
    "t_ns",
]


@dataclass(frozen=True, slots=True)
class Point:
    measurement: str
    tags: tuple[tuple[str, str], ...]  # sorted by key (the order InfluxDB prefers)
    fields: dict[str, float]
    t_ns: int


def t_ns(t: datetime) -> int:
    """Nanoseconds since the epoch of an aware datetime, exactly (integer arithmetic, no float)."""
    if t.tzinfo is None:
        raise ValueError("telemetry timestamps must be timezone-aware (the snapshot's t_wall)")
    return (t - _EPOCH) // _US * 1000


def _fields(**kv: float | None) -> dict[str, float]:
    return {k: float(v) for k, v in kv.items() if v is not None and math.isfinite(v)}


def _m(x: Measured) -> float:
    return x.value


def _q(x: Measured) -> int:
    return QUALITY_CODE[x.quality]


def _tags(**kv: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kv.items()))


def points_for(
    rec: CycleRecord,
    site_id: str,
    alarms: Iterable[tuple[Alarm, bool]] = (),
    agent_fields: Mapping[str, float] | None = None,
    racks: Mapping[str, Measured] | None = None,
    ramp_limit_w_per_s: float = 0.0,
    demand_target_w: float = 0.0,
) -> list[Point]:
    """All points of one cycle. `alarms` yields (alarm, active) for alarms active now or just cleared."""
    s, p = rec.snapshot, rec.plan
    t = t_ns(s.t_wall)
    site = _tags(site=site_id)
    out: list[Point] = []

    soc = site_soc(s.clusters)
    out.append(
        Point(
            "site",
            site,
            _fields(
                **{pt.name: pt.of(s).value for pt in SITE_POINTS},
                battery_w=s.battery_w,
                grid_up=1.0 if s.grid_up else 0.0,
                soc_pct=soc.soc_pct,
                energy_wh=soc.energy_wh,
                capacity_wh=sum(c.capacity_wh for c in s.clusters),
                **{f"{pt.role}_q": _q(pt.of(s)) for pt in SITE_POINTS},
                ramp_limit_w_per_s=ramp_limit_w_per_s if ramp_limit_w_per_s > 0 else None,
                demand_target_w=demand_target_w if demand_target_w > 0 else None,
                seq=s.seq,
            ),
            t,
        )
    )
    for pt in SITE_POINTS:
        m = pt.of(s)
        out.append(
            Point(
                "meter",
                _tags(site=site_id, meter=pt.role),
                _fields(power_w=m.value, quality=_q(m), age_s=m.age_s),
                t,
            )
        )
    out.append(Point("rack", _tags(site=site_id, rack="total"), _fields(power_w=_m(s.load_w), quality=_q(s.load_w)), t))
    for rid, m in sorted((racks or {}).items()):
        out.append(Point("rack", _tags(site=site_id, rack=rid), _fields(power_w=m.value, quality=_q(m)), t))

    for c in s.clusters:
        limits_q = max(_q(c.max_charge_w), _q(c.max_discharge_w))
        allowed = allowed_limits_w(p, c)  # what the agent allows: the BMS limits, or less where derated
        out.append(
            Point(
                "cluster",
                _tags(site=site_id, cluster=c.id, pcs=c.pcs_id),
                _fields(
                    **{pt.name: pt.of(c).value for pt in CLUSTER_POINTS},
                    setpoint_w=p.cluster_setpoints_w.get(c.id),
                    status=CLUSTER_STATUS_CODE[shown_status(c, rec.maintenance)],
                    alarms=c.alarms,
                    soc_q=_q(c.soc_pct),
                    limits_q=limits_q,
                    allowed_charge_w=allowed[0],
                    allowed_discharge_w=allowed[1],
                ),
                t,
            )
        )
    for pc in s.pcs:
        out.append(
            Point(
                "pcs",
                _tags(site=site_id, pcs=pc.id),
                _fields(
                    **{pt.name: pt.of(pc).value for pt in PCS_POINTS},
                    command_w=p.pcs_setpoints_w.get(pc.id),
                    rated_w=pc.rated_w,
                    status=PCS_STATUS_CODE[pc.status],
                    power_q=_q(pc.power_w),
                ),
                t,
            )
        )

    lo = max((b.lo_w for b in p.bounds), default=None)
    hi = min((b.hi_w for b in p.bounds), default=None)
    out.append(
        Point(
            "plan",
            site,
            _fields(
                site_setpoint_w=p.site_setpoint_w,
                requested_w=p.requested_w,
                shortfall_w=p.shortfall_w,
                lo_w=lo,
                hi_w=hi,
                mode=MODE_CODE.get(p.mode, UNKNOWN_CODE),
                decided_by=SOURCE_CODE.get(p.decided_by, UNKNOWN_CODE),
                alarms=len(p.alarms),
                # grid-power (PCC) control: the grid import target and ramp written to the PCS
                grid_target_w=p.grid_control.target_w if p.grid_control is not None else None,
                grid_ramp_w_per_s=p.grid_control.ramp_w_per_s if p.grid_control is not None else None,
                # the dispatch plan tracked this cycle (agent/live/planning.py): its SoC trajectory
                # here and its grid-import cap on the interval average (absent: no plan, or no cap)
                planned_soc_pct=rec.planned.soc_pct if rec.planned is not None else None,
                planned_grid_cap_w=rec.planned.grid_cap_w if rec.planned is not None else None,
            ),
            t,
        )
    )
    for b in p.bounds:
        out.append(Point("plan", _tags(site=site_id, bound=b.source), _fields(lo_w=b.lo_w, hi_w=b.hi_w), t))

    n_active = 0
    for a, active in alarms:
        n_active += active
        out.append(
            Point(
                "alarm",
                _tags(site=site_id, code=a.code, source=a.source),
                _fields(
                    active=1.0 if active else 0.0,
                    severity=SEVERITY_CODE[a.severity],
                    acked=a.acked_by is not None,
                ),
                t,
            )
        )
    out.append(
        Point(
            "agent",
            site,
            _fields(
                cycle_ms=rec.cycle_ms,
                poll_ms=rec.poll_ms,
                write_ms=rec.write_ms,
                overruns=rec.overruns,
                alarms_active=n_active,
                **dict(agent_fields or {}),
            ),
            t,
        )
    )
    return out


def _flatten(prefix: str, v: Any, out: dict[str, float]) -> None:
    if isinstance(v, bool):
        out[prefix] = 1.0 if v else 0.0
    elif isinstance(v, (int, float)):
        if math.isfinite(v):
            out[prefix] = float(v)
    elif isinstance(v, Mapping):
        for k, x in v.items():
            _flatten(f"{prefix}_{k}" if prefix else str(k), x, out)


def ledger_point(summary: Mapping[str, Any], site_id: str, t_wall: datetime) -> Point | None:
    """The savings ledger's numeric read-out as one point (None when it has no numbers)."""
    fields: dict[str, float] = {}
    _flatten("", summary, fields)
    if not fields:
        return None
    return Point("ledger", _tags(site=site_id), fields, t_ns(t_wall))


def health_points(readout: Mapping[str, Any], site_id: str, t_wall: datetime) -> list[Point]:
    """One `health` point per cluster from the health read-out (agent/health/sink.py): the last
    closed day's indicators, their trends per day, and how many recommendations are open."""
    pts = []
    for cid, c in sorted(readout.get("clusters", {}).items()):
        fields: dict[str, float] = {}
        latest = {k: v for k, v in c.get("latest", {}).items() if k not in ("day", "samples")}
        _flatten("", latest, fields)
        _flatten("trend", c.get("trend_per_day", {}), fields)
        for k in ("efc_total", "throughput_kwh_total"):
            if isinstance(c.get(k), (int, float)):
                fields[k] = float(c[k])
        fields["recommendations"] = float(len(c.get("flagged", ())))
        pts.append(Point("health", _tags(site=site_id, cluster=cid), fields, t_ns(t_wall)))
    return pts


# --- line protocol -----------------------------------------------------------------------------
_KEY_ESC = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": "", "\r": ""})
_MEAS_ESC = str.maketrans({",": r"\,", " ": r"\ ", "\n": "", "\r": ""})


def line(pt: Point) -> str:
    """One point in InfluxDB line protocol. Fields are floats (no `i` suffix: one type per field)."""
    head = pt.measurement.translate(_MEAS_ESC)
    for k, v in pt.tags:
        if v:  # InfluxDB rejects empty tag values
            head += f",{k.translate(_KEY_ESC)}={v.translate(_KEY_ESC)}"
    body = ",".join(f"{k.translate(_KEY_ESC)}={v!r}" for k, v in pt.fields.items())
    return f"{head} {body} {pt.t_ns}"


def encode(points: Iterable[Point]) -> bytes:
    """Points with at least one field, as newline-separated line protocol."""
    return "\n".join(line(p) for p in points if p.fields).encode()
