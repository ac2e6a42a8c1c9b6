"""/metrics text (agent/api/metrics.py, written by prometheus_client): what a Prometheus scraper
parses from it, metric names and values, for a hub with three published cycles."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from agent.api.metrics import render
from agent.api.observer import Observer
from agent.live.hub import Hub

from .fakes import Cycles

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)


def test_a_scraper_reads_every_family_with_its_values(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub()
    cyc = Cycles(hub, T0)
    for _ in range(3):
        rec = cyc.next(load_w=2_500_000.0)  # each cycle 12.5 ms
    hub.device_health = {"c01": {"comm_errors": 7, "ok": False}, "pcs1": {"comm_errors": 0, "ok": True}}
    hub.alarms.raise_("cluster_fault", "c01", "BMS reports a fault", T0)
    now = rec.snapshot.t_mono + 2.0
    families = {f.name: f for f in text_string_to_metric_families(render(hub, Observer(hub), now))}
    assert set(families) == {
        "ems_cycle_duration_seconds",
        "ems_cycles",
        "ems_cycle_overruns",
        "ems_last_cycle_age_seconds",
        "ems_power_watts",
        "ems_cluster_soc_percent",
        "ems_cluster_status",
        "ems_device_comm_errors",
        "ems_device_up",
        "ems_alarms_active",
        "ems_sse_clients",
        "ems_sse_dropped",
    }

    def samples(family: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in families[family].samples}

    hist = samples("ems_cycle_duration_seconds")
    assert hist[("ems_cycle_duration_seconds_bucket", (("le", "0.01"),))] == 0.0
    assert hist[("ems_cycle_duration_seconds_bucket", (("le", "0.025"),))] == 3.0
    assert hist[("ems_cycle_duration_seconds_bucket", (("le", "+Inf"),))] == 3.0
    assert hist[("ems_cycle_duration_seconds_count", ())] == 3.0
    assert abs(hist[("ems_cycle_duration_seconds_sum", ())] - 0.0375) < 1e-12
    assert samples("ems_cycles") == {("ems_cycles_total", ()): 3.0}
    assert samples("ems_last_cycle_age_seconds") == {("ems_last_cycle_age_seconds", ()): 2.0}
    power = samples("ems_power_watts")
    assert power[("ems_power_watts", (("flow", "grid"),))] == 2_500_000.0
    assert power[("ems_power_watts", (("flow", "load"),))] == 2_500_000.0
    assert power[("ems_power_watts", (("flow", "pv"),))] == 0.0
    assert power[("ems_power_watts", (("flow", "battery_setpoint"),))] == rec.plan.site_setpoint_w
    assert samples("ems_cluster_soc_percent")[("ems_cluster_soc_percent", (("cluster", "c01"),))] == 60.0
    assert samples("ems_device_comm_errors") == {
        ("ems_device_comm_errors_total", (("device", "c01"),)): 7.0,
        ("ems_device_comm_errors_total", (("device", "pcs1"),)): 0.0,
    }
    assert samples("ems_device_up") == {
        ("ems_device_up", (("device", "c01"),)): 0.0,
        ("ems_device_up", (("device", "pcs1"),)): 1.0,
    }
    assert samples("ems_alarms_active") == {
        ("ems_alarms_active", (("severity", "info"),)): 0.0,
        ("ems_alarms_active", (("severity", "warning"),)): 0.0,
        ("ems_alarms_active", (("severity", "critical"),)): 1.0,
    }
