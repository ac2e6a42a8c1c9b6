"""Prometheus text exposition (format 0.0.4) of the agent's health, hand-written: no client library.

Names follow the Prometheus conventions: `ems_` prefix, base units (`_seconds`, `_watts`),
`_total` for counters. Series from optional subsystems (telemetry spool) appear only when that
subsystem has registered a provider with the Hub.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from agent.live.hub import CYCLE_BUCKETS_S
from agent.model.alarms import SEVERITY_CODE, Severity

from .mirror import Mirror
from .observer import Observer
from .views import val

# device_health keys (from the driver) counted as communication errors, first one present wins.
COMM_ERROR_KEYS = ("comm_errors", "errors", "read_errors")
# From the telemetry sink's status() (agent/telemetry: InfluxSink or LocalStoreSink), first key present.
TELEMETRY_SERIES = (
    (
        "ems_telemetry_spool_depth",
        "gauge",
        "Points waiting in the local spool.",
        ("spool_points", "spool_depth"),
    ),
    ("ems_telemetry_spool_bytes", "gauge", "Size of the local spool, bytes.", ("spool_bytes",)),
    (
        "ems_telemetry_points_written_total",
        "counter",
        "Points written to the time-series store.",
        ("sent_points", "stored_values", "points_written"),
    ),
    (
        "ems_telemetry_spool_dropped_points_total",
        "counter",
        "Points the full spool had to drop.",
        ("spool_dropped_points",),
    ),
    ("ems_telemetry_queue_depth", "gauge", "Cycles queued for the telemetry writer.", ("queue_depth",)),
    (
        "ems_telemetry_queue_dropped_total",
        "counter",
        "Cycles the telemetry queue dropped.",
        ("queue_dropped",),
    ),
)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        lab = ""
        if labels:
            lab = "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items()) + "}"
        self.lines.append(f"{name}{lab} {_num(value)}")

    def one(self, name: str, kind: str, help_: str, value: float) -> None:
        self.family(name, kind, help_)
        self.sample(name, value)


def _number(d: dict[str, Any], keys: Iterable[str]) -> float | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def render(hub: Mirror, obs: Observer, now_mono: float) -> str:
    o = _Out()
    # Cycle time: the control process's histogram since it started (mirrored).
    o.family("ems_cycle_duration_seconds", "histogram", "Wall time of one control cycle (poll, decide, write).")
    cum = 0
    st = hub.stats
    for le, n in zip(CYCLE_BUCKETS_S, st.bucket_counts, strict=False):
        cum += n
        o.sample("ems_cycle_duration_seconds_bucket", cum, {"le": _num(le)})
    o.sample("ems_cycle_duration_seconds_bucket", st.cycles, {"le": "+Inf"})
    o.sample("ems_cycle_duration_seconds_sum", st.sum_s)
    o.sample("ems_cycle_duration_seconds_count", st.cycles)
    o.one("ems_cycles_total", "counter", "Control cycles run.", hub.stats.cycles)
    o.one(
        "ems_cycle_overruns_total",
        "counter",
        "Cycles skipped because one ran over its period.",
        hub.stats.overruns,
    )
    latest = hub.latest
    if latest is not None:
        o.one(
            "ems_last_cycle_age_seconds",
            "gauge",
            "Seconds since the last published cycle.",
            max(0.0, now_mono - latest.snapshot.t_mono),
        )
        s = latest.snapshot
        o.family("ems_power_watts", "gauge", "Site power flows, W (battery + = discharge, grid + = import).")
        for name, v in (
            ("grid", val(s.grid_w)),
            ("load", val(s.load_w)),
            ("pv", val(s.pv_w)),
            ("battery", s.battery_w if math.isfinite(s.battery_w) else None),
            ("battery_setpoint", latest.plan.site_setpoint_w),
        ):
            if v is not None:
                o.sample("ems_power_watts", v, {"flow": name})
        o.family("ems_cluster_soc_percent", "gauge", "Cluster state of charge, %.")
        for c in s.clusters:
            soc = val(c.soc_pct)
            if soc is not None:
                o.sample("ems_cluster_soc_percent", soc, {"cluster": c.id})
        o.family("ems_cluster_status", "gauge", "1 for the cluster's current status.")
        for c in s.clusters:
            o.sample("ems_cluster_status", 1, {"cluster": c.id, "status": c.status.value})

    o.family("ems_device_comm_errors_total", "counter", "Failed device reads/writes, per device.")
    up_lines: list[tuple[str, float]] = []
    for dev_id, h in sorted(hub.device_health.items()):
        errors = _number(h, COMM_ERROR_KEYS)
        if errors is not None:
            o.sample("ems_device_comm_errors_total", errors, {"device": dev_id})
        ok = h.get("ok", h.get("online"))
        if isinstance(ok, bool):
            up_lines.append((dev_id, 1.0 if ok else 0.0))
    if up_lines:
        o.family("ems_device_up", "gauge", "1 if the device answered its last poll.")
        for dev_id, v in up_lines:
            o.sample("ems_device_up", v, {"device": dev_id})

    active = hub.alarms.active()
    o.family("ems_alarms_active", "gauge", "Active alarms by severity.")
    for sev in sorted(Severity, key=lambda x: SEVERITY_CODE[x]):
        o.sample("ems_alarms_active", sum(1 for a in active if a.severity is sev), {"severity": sev.value})

    o.one("ems_sse_clients", "gauge", "Connected Server-Sent Events clients.", obs.sse_clients)
    o.one("ems_sse_dropped_total", "counter", "Cycles dropped for slow SSE clients.", obs.sse_dropped)

    tel = hub.read("telemetry")
    if tel is not None:
        for name, kind, help_, keys in TELEMETRY_SERIES:
            v = _number(tel, keys)
            if v is not None:
                o.one(name, kind, help_, v)
        if isinstance(tel.get("connected"), bool):
            o.one(
                "ems_telemetry_connected",
                "gauge",
                "1 while the time-series store accepts writes.",
                tel["connected"],
            )
    return "\n".join(o.lines) + "\n"
