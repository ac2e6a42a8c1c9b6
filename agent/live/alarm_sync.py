"""Alarm reconciliation: each cycle, the alarms the snapshot and the plan call for are made the
active ones of their codes (raised when they appear, cleared when they go), and every transition
is logged once. Severities and titles come from the alarm catalogue (agent/model/alarms.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from agent.live.pcc_watch import PccMeterWatch
from agent.logs import kv
from agent.model.alarms import AlarmBook, kind
from agent.model.config import DeviceConfig
from agent.model.plan import Plan
from agent.model.snapshot import ClusterStatus, PcsStatus, SiteSnapshot
from drivers.reading import Quality

log = logging.getLogger("ems.loop")

# The codes this reconciler owns (plus the plan's own): an active one it no longer wants is cleared.
OWNED = frozenset(
    {
        "cluster_fault", "cluster_disconnected", "device_comm", "pcs_fault", "grid_outage", "pcc_inactive",
        "pcc_meter_mismatch",
    }
)  # fmt: skip
PLAN_SOURCE = "control"  # the source of the controllers' alarms (Plan.alarms)

Wanted = dict[str, tuple[str, str, str]]  # "code@source" -> (code, source, message)


def _want(w: Wanted, code: str, source: str, message: str) -> None:
    w[f"{code}@{source}"] = (code, source, message)


def wanted_alarms(
    snap: SiteSnapshot,
    plan: Plan,
    meters: Iterable[DeviceConfig],
    pcc_pending: frozenset[str],
    pcc_latched: Mapping[str, str],
    maintenance: frozenset[str] = frozenset(),
) -> Wanted:
    """The alarms one cycle calls for. `pcc_pending`: PCS the previous cycle's write put in grid-power
    control (this cycle's read-back should show it); `pcc_latched`: PCS the meter watch took out of it;
    `maintenance`: clusters the operator holds out of service (isolated on purpose: no alarm)."""
    w: Wanted = {}
    for c in snap.clusters:
        if c.id in maintenance:
            continue
        if c.status is ClusterStatus.FAULT:
            _want(w, "cluster_fault", c.id, "BMS reports a fault")
        elif c.status is ClusterStatus.OFFLINE and c.soc_pct.ok:
            _want(w, "cluster_disconnected", c.id, "BMS reports the cluster disconnected (contactor open)")
        elif c.status is ClusterStatus.OFFLINE:
            _want(w, "device_comm", c.id, f"no usable data ({c.soc_pct.quality.value})")
    for p in snap.pcs:
        if p.status is PcsStatus.FAULT:
            _want(w, "pcs_fault", p.id, "PCS tripped or faulted")
        elif p.status is PcsStatus.OFFLINE:
            _want(w, "device_comm", p.id, f"no usable data ({p.power_w.quality.value})")
        elif p.id in pcc_pending and not (p.pcc_active.ok and p.pcc_active.value == 1.0):
            # commanded into grid-power control a cycle ago, yet it does not report the mode
            _want(w, "pcc_inactive", p.id, "commanded into grid-power (PCC) control but pcc_active does not read 1")
    for pid, msg in pcc_latched.items():
        _want(w, "pcc_meter_mismatch", pid, msg)
    meter_values = {"grid": snap.grid_w, "load": snap.load_w, "pv": snap.pv_w}
    for m in meters:
        v = meter_values.get(m.role)
        if v is not None and v.quality in (Quality.COMM_ERROR, Quality.STALE):
            _want(w, "device_comm", m.id, f"no usable data ({v.quality})")
    if not snap.grid_up:
        _want(w, "grid_outage", "grid", "utility supply lost")
    for code in plan.alarms:
        # a bound named as its alarm carries the occurrence's detail (grid_import_limit: by how much, time left)
        detail = next((b.reason for b in plan.bounds if b.source == code), kind(code).en)
        _want(w, code, PLAN_SOURCE, detail)
    return w


class AlarmSync:
    def __init__(self, book: AlarmBook) -> None:
        self.book = book

    def reconcile(
        self,
        snap: SiteSnapshot,
        plan: Plan,
        meters: Iterable[DeviceConfig],
        pcc_pending: frozenset[str],
        watch: PccMeterWatch,
        maintenance: frozenset[str] = frozenset(),
    ) -> None:
        book, now = self.book, snap.t_wall
        before = {a.id: a for a in book.active()}
        # A meter mismatch an operator has acknowledged puts that PCS back into grid-power control,
        # watched afresh (the alarm clears below).
        for a in before.values():
            if a.code == "pcc_meter_mismatch" and a.acked_by is not None and a.source in watch.latched:
                watch.release(a.source)
        wanted = wanted_alarms(snap, plan, meters, pcc_pending, watch.latched, maintenance)
        book.sync(wanted, set(OWNED) | set(plan.alarms), now)
        for a in book.active():  # a controller alarm the plan no longer reports
            if a.source == PLAN_SOURCE and a.id not in wanted:
                book.clear(a.code, PLAN_SOURCE, now)
        # One log line per alarm transition: the log stays quiet while nothing changes.
        after = {a.id: a for a in book.active()}
        for aid in after.keys() - before.keys():
            a = after[aid]
            log.warning("alarm raised", extra=kv(code=a.code, source=a.source, severity=a.severity, message=a.message))
        for aid in before.keys() - after.keys():
            a = before[aid]
            log.info("alarm cleared", extra=kv(code=a.code, source=a.source))
