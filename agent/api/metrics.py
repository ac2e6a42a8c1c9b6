"""Prometheus text exposition of the agent's health, written by `prometheus_client`.

Names follow the Prometheus conventions: `ems_` prefix, base units (`_seconds`, `_watts`),
`_total` for counters. Series from optional subsystems (telemetry spool) appear only when that
subsystem has registered a provider with the Hub. Every scrape reads the mirrored state afresh
(a custom collector over the Mirror): the API process keeps no metric state of its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from agent.live.hub import CYCLE_BUCKETS_S
from agent.model.alarms import SEVERITY_CODE, Severity
from agent.model.points import SITE_POINTS
from agent.model.snapshot import shown_status

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


def _number(d: dict[str, Any], keys: Iterable[str]) -> float | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def _le(x: float) -> str:
    """A bucket bound as the `le` label has always read ("0.025", "1", never "1.0")."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _family(name: str, kind: str, help_: str, value: float | None = None) -> Metric:
    if kind == "counter":  # the client names the family without `_total` and adds it to the sample
        return CounterMetricFamily(name.removesuffix("_total"), help_, value=value)
    return GaugeMetricFamily(name, help_, value=value)


def collect(hub: Mirror, obs: Observer, now_mono: float) -> Iterator[Metric]:
    # Cycle time: the control process's histogram since it started (mirrored).
    st = hub.stats
    buckets: list[tuple[str, float]] = []
    cum = 0
    for le, n in zip(CYCLE_BUCKETS_S, st.bucket_counts, strict=False):
        cum += n
        buckets.append((_le(le), cum))
    buckets.append(("+Inf", st.cycles))
    yield HistogramMetricFamily(
        "ems_cycle_duration_seconds",
        "Wall time of one control cycle (poll, decide, write).",
        buckets=buckets,
        sum_value=st.sum_s,
    )
    yield _family("ems_cycles_total", "counter", "Control cycles run.", st.cycles)
    yield _family("ems_cycle_overruns_total", "counter", "Cycles skipped because one ran over its period.", st.overruns)
    latest = hub.latest
    if latest is not None:
        s = latest.snapshot
        yield _family(
            "ems_last_cycle_age_seconds",
            "gauge",
            "Seconds since the last published cycle.",
            max(0.0, now_mono - s.t_mono),
        )
        power = GaugeMetricFamily(
            "ems_power_watts", "Site power flows, W (battery + = discharge, grid + = import).", labels=["flow"]
        )
        flows: list[tuple[str, float | None]] = [(p.role, val(p.of(s))) for p in SITE_POINTS]
        flows += [
            ("battery", s.battery_w if math.isfinite(s.battery_w) else None),
            ("battery_setpoint", latest.plan.site_setpoint_w),
        ]
        for flow, v in flows:
            if v is not None:
                power.add_metric([flow], v)
        yield power
        soc = GaugeMetricFamily("ems_cluster_soc_percent", "Cluster state of charge, %.", labels=["cluster"])
        status = GaugeMetricFamily(
            "ems_cluster_status", "1 for the cluster's current status.", labels=["cluster", "status"]
        )
        for c in s.clusters:
            pct = val(c.soc_pct)
            if pct is not None:
                soc.add_metric([c.id], pct)
            status.add_metric([c.id, shown_status(c, latest.maintenance).value], 1)
        yield soc
        yield status

    errors = CounterMetricFamily("ems_device_comm_errors", "Failed device reads/writes, per device.", labels=["device"])
    up = GaugeMetricFamily("ems_device_up", "1 if the device answered its last poll.", labels=["device"])
    for dev_id, h in sorted(hub.device_health.items()):
        count = _number(h, COMM_ERROR_KEYS)
        if count is not None:
            errors.add_metric([dev_id], count)
        ok = h.get("ok", h.get("online"))
        if isinstance(ok, bool):
            up.add_metric([dev_id], 1.0 if ok else 0.0)
    yield errors
    if up.samples:
        yield up

    active = hub.alarms.active()
    alarms = GaugeMetricFamily("ems_alarms_active", "Active alarms by severity.", labels=["severity"])
    for sev in sorted(Severity, key=lambda x: SEVERITY_CODE[x]):
        alarms.add_metric([sev.value], sum(1 for a in active if a.severity is sev))
    yield alarms

    yield _family("ems_sse_clients", "gauge", "Connected Server-Sent Events clients.", obs.sse_clients)
    yield _family("ems_sse_dropped_total", "counter", "Cycles dropped for slow SSE clients.", obs.sse_dropped)

    tel = hub.read("telemetry")
    if tel is not None:
        for name, kind, help_, keys in TELEMETRY_SERIES:
            v = _number(tel, keys)
            if v is not None:
                yield _family(name, kind, help_, v)
        if isinstance(tel.get("connected"), bool):
            yield _family(
                "ems_telemetry_connected", "gauge", "1 while the time-series store accepts writes.", tel["connected"]
            )


class _Scrape:
    """One scrape's collector: the families `collect` yields for this moment."""

    def __init__(self, hub: Mirror, obs: Observer, now_mono: float) -> None:
        self.args = (hub, obs, now_mono)

    def collect(self) -> Iterator[Metric]:
        return collect(*self.args)


def render(hub: Mirror, obs: Observer, now_mono: float) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape(hub, obs, now_mono))
    return generate_latest(registry).decode()
