"""Pure read-outs: a cycle record, the operator state and alarms -> response models. No I/O."""

from __future__ import annotations

import math

from agent.live.hub import CycleRecord
from agent.model.acting import mode_bound
from agent.model.alarms import Alarm, Severity, kind
from agent.model.allowed import allowed_limits_w
from agent.model.config import SiteConfig
from agent.model.operator import OperatorState
from agent.model.points import CLUSTER_POINTS, PCS_POINTS, SITE_POINTS, PointDef
from agent.model.snapshot import ClusterSnapshot, Measured, PcsSnapshot, shown_status
from agent.model.soc import site_soc
from drivers.reading import Quality

from .models import AlarmOut, BoundOut, ClusterOut, OperatorOut, PcsOut, SiteOut

# Worst first: a cluster's quality is the worst of the values control depends on.
_QUALITY_RANK = {
    Quality.GOOD: 0,
    Quality.STALE: 1,
    Quality.OUT_OF_RANGE: 2,
    Quality.INVALID: 3,
    Quality.COMM_ERROR: 4,
}


def fin(x: float) -> float | None:
    """A finite number or None: JSON has no NaN, and an untrusted value must not look real."""
    return x if math.isfinite(x) else None


def val(m: Measured) -> float | None:
    """A measured value the UI may show: finite and not a comm error (stale shows, flagged by quality)."""
    if m.quality is Quality.COMM_ERROR or m.quality is Quality.INVALID:
        return None
    return fin(m.value)


def point_val(p: PointDef, m: Measured) -> float | bool | None:
    """A catalogue point as the API and the dashboard show it (a flag as a boolean)."""
    v = val(m)
    return v == 1.0 if p.flag and v is not None else v


def _worst(*ms: Measured) -> Measured:
    return max(ms, key=lambda m: (_QUALITY_RANK[m.quality], m.age_s))


def commandable(c: ClusterSnapshot, held: frozenset[str]) -> bool:
    """May the controller command it this cycle? Trusted, and not in the operator's hold."""
    return c.trusted and c.id not in held


def cluster_out(
    c: ClusterSnapshot,
    setpoint_w: float,
    maintenance: bool,
    held: frozenset[str] = frozenset(),
    allowed: tuple[float | None, float | None] | None = None,
) -> ClusterOut:
    """`maintenance`: the operator holds it now; `held`: the clusters held in the cycle `c` is from;
    `allowed`: (charge, discharge) W the agent allows (agent.model.allowed), the BMS limits if None."""
    if allowed is None:
        allowed = (val(c.max_charge_w), val(c.max_discharge_w))
    w = _worst(c.soc_pct, c.max_charge_w, c.max_discharge_w)
    vmax, vmin = val(c.cell_v_max), val(c.cell_v_min)
    soc = val(c.soc_pct)
    return ClusterOut(
        id=c.id,
        pcs_id=c.pcs_id,
        status=shown_status(c, held).value,
        trusted=commandable(c, held),
        maintenance=maintenance or c.id in held,
        quality=w.quality.value,
        age_s=fin(w.age_s),
        capacity_wh=c.capacity_wh,
        energy_wh=c.capacity_wh * soc / 100.0 if soc is not None else None,
        setpoint_w=setpoint_w,
        cell_spread_v=vmax - vmin if vmax is not None and vmin is not None else None,
        alarms=c.alarms,
        allowed_charge_w=None if allowed[0] is None else fin(allowed[0]),
        allowed_discharge_w=None if allowed[1] is None else fin(allowed[1]),
        **{p.name: point_val(p, p.of(c)) for p in CLUSTER_POINTS},
    )


def pcs_out(p: PcsSnapshot, commanded_w: float, regulating: bool = False) -> PcsOut:
    """`regulating`: the plan put it in grid-power control this cycle."""
    return PcsOut(
        id=p.id,
        status=p.status.value,
        cluster_ids=list(p.cluster_ids),
        rated_w=p.rated_w,
        commanded_w=commanded_w,
        quality=p.power_w.quality.value,
        age_s=fin(p.power_w.age_s),
        grid_control=regulating,
        **{pt.name: point_val(pt, pt.of(p)) for pt in PCS_POINTS},
    )


def clusters_out(rec: CycleRecord, op: OperatorState) -> list[ClusterOut]:
    sp = rec.plan.cluster_setpoints_w
    held = rec.maintenance
    return [
        cluster_out(c, sp.get(c.id, 0.0), c.id in op.maintenance, held, allowed_limits_w(rec.plan, c))
        for c in rec.snapshot.clusters
    ]


def pcs_list_out(rec: CycleRecord) -> list[PcsOut]:
    sp = rec.plan.pcs_setpoints_w
    gc = rec.plan.grid_control
    return [pcs_out(p, sp.get(p.id, 0.0), gc is not None and p.id in gc.pcs) for p in rec.snapshot.pcs]


def site_out(rec: CycleRecord, op: OperatorState, alarms: list[Alarm]) -> SiteOut:
    s, plan = rec.snapshot, rec.plan
    soc = site_soc(s.clusters)
    return SiteOut(
        seq=s.seq,
        t_wall=s.t_wall,
        battery_w=fin(s.battery_w),
        grid_up=s.grid_up,
        soc_pct=soc.soc_pct,
        energy_wh=soc.energy_wh,
        capacity_wh=sum(c.capacity_wh for c in s.clusters),
        clusters_online=sum(1 for c in s.clusters if commandable(c, rec.maintenance)),
        clusters_total=len(s.clusters),
        mode=plan.mode,
        operator_mode=op.mode,
        setpoint_w=plan.site_setpoint_w,
        requested_w=plan.requested_w,
        shortfall_w=plan.shortfall_w,
        decided_by=plan.decided_by,
        mode_bound=mode_bound(plan),
        reason=plan.reason,
        step_cause=plan.step_cause or None,
        bounds=[BoundOut(source=b.source, lo_w=b.lo_w, hi_w=b.hi_w, reason=b.reason) for b in plan.bounds],
        grid_target_w=plan.grid_control.target_w if plan.grid_control is not None else None,
        grid_ramp_w_per_s=plan.grid_control.ramp_w_per_s if plan.grid_control is not None else None,
        active_alarms=len(alarms),
        critical_alarms=sum(1 for a in alarms if a.severity is Severity.CRITICAL),
        **{p.name: point_val(p, p.of(s)) for p in SITE_POINTS},
    )


def alarm_out(a: Alarm) -> AlarmOut:
    return AlarmOut(
        id=a.id,
        code=a.code,
        source=a.source,
        severity=a.severity.value,
        title=kind(a.code).text(),
        message=a.message,
        raised_at=a.raised_at,
        cleared_at=a.cleared_at,
        acked_by=a.acked_by,
        active=a.active,
    )


def operator_out(op: OperatorState, site: SiteConfig, now_mono: float) -> OperatorOut:
    active = op.override_active(now_mono)
    from_operator = op.reserve_load_w is not None
    return OperatorOut(
        mode=op.mode,
        override_w=op.override_w if active else None,
        override_remaining_s=op.override_until - now_mono if active else None,
        reserve_load_w=op.reserve_load_w if op.reserve_load_w is not None else site.control.reserve_load_w,
        reserve_minutes=(op.reserve_minutes if op.reserve_minutes is not None else site.control.reserve_minutes),
        reserve_from="operator" if from_operator else "site",
        maintenance=sorted(op.maintenance),
        derate=dict(op.derate),
    )
