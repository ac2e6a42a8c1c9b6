"""The telemetry schema: exact fields, codes and line protocol for one real cycle."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.control.compose import REASONS
from agent.live.hub import Hub
from agent.model.snapshot import ClusterStatus, Measured
from agent.telemetry.config import parse_telemetry
from agent.telemetry.schema import (
    MODE_CODE,
    QUALITY_CODE,
    SOURCE_CODE,
    Point,
    encode,
    ledger_point,
    line,
    points_for,
    t_ns,
)
from common.tomlcheck import ConfigError
from drivers.reading import Quality
from tests.fakes import Cycles, demo_site

T0 = datetime(2026, 7, 1, 14, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def by(points: list[Point], m: str, **tags: str) -> list[Point]:
    return [
        p for p in points if p.measurement == m and all(dict(p.tags).get(k) == v for k, v in tags.items())
    ]


def test_one_cycle_has_every_measurement_with_exact_values(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub()
    rec = Cycles(hub, T0).next(load_w=2_500_000.0)
    now = T0
    hub.alarms.raise_("device_comm", "c03", "no usable data", now)
    alarm = hub.alarms.active()[0]
    pts = points_for(
        rec, "demo", [(alarm, True)], {"spool_points": 7.0}, {"r1": Measured(12_000.0)}, 200_000.0
    )
    assert {p.measurement for p in pts} == {
        "site",
        "meter",
        "rack",
        "cluster",
        "pcs",
        "plan",
        "alarm",
        "agent",
    }
    assert all(p.t_ns == 1782885601 * 10**9 for p in pts)  # 14:00:01 +08:00 = 06:00:01 UTC
    site = by(pts, "site")[0]
    assert site.tags == (("site", "demo"),)
    assert site.fields["grid_w"] == 2_500_000.0 and site.fields["load_w"] == 2_500_000.0
    assert site.fields["soc_pct"] == 60.0
    assert site.fields["capacity_wh"] == 12 * 418_000.0
    assert site.fields["energy_wh"] == pytest.approx(12 * 418_000.0 * 0.6)
    assert site.fields["ramp_limit_w_per_s"] == 200_000.0 and "demand_target_w" not in site.fields
    assert site.fields["grid_up"] == 1.0 and site.fields["seq"] == 1.0 and site.fields["grid_q"] == 0.0
    clusters = by(pts, "cluster")
    assert len(clusters) == 12
    c3 = by(pts, "cluster", cluster="c03")[0]
    assert dict(c3.tags) == {"site": "demo", "cluster": "c03", "pcs": "pcs1"}
    assert c3.fields["status"] == 0.0 and c3.fields["max_discharge_w"] == 200_000.0
    assert c3.fields["setpoint_w"] == rec.plan.cluster_setpoints_w["c03"]
    assert len(by(pts, "pcs")) == 4
    assert by(pts, "pcs", pcs="pcs2")[0].fields["rated_w"] == 630_000.0
    assert by(pts, "rack", rack="r1")[0].fields == {"power_w": 12_000.0, "quality": 0.0}
    assert by(pts, "rack", rack="total")[0].fields["power_w"] == 2_500_000.0
    plan = by(pts, "plan", bound="device_limits")[0]
    assert plan.fields == {"lo_w": -2_400_000.0, "hi_w": 2_400_000.0}
    main = next(p for p in by(pts, "plan") if "bound" not in dict(p.tags))
    assert main.fields["mode"] == MODE_CODE[rec.plan.mode]
    assert main.fields["decided_by"] == SOURCE_CODE[rec.plan.decided_by]
    assert main.fields["site_setpoint_w"] == rec.plan.site_setpoint_w
    a = by(pts, "alarm")[0]
    assert dict(a.tags) == {"site": "demo", "code": "device_comm", "source": "c03"}
    assert a.fields == {"active": 1.0, "severity": 1.0, "acked": 0.0}
    agent = by(pts, "agent")[0]
    assert agent.fields == {
        "cycle_ms": 12.5,
        "poll_ms": 8.0,
        "write_ms": 3.0,
        "overruns": 0.0,
        "alarms_active": 1.0,
        "spool_points": 7.0,
    }


def test_missing_values_are_left_out_and_codes_are_used(make_hub: Callable[..., Hub]) -> None:
    hub = make_hub()
    rec = Cycles(hub, T0).next(publish=False)
    snap = rec.snapshot
    bad = replace(snap.clusters[0], status=ClusterStatus.OFFLINE, soc_pct=Measured.missing(Quality.STALE))
    snap = replace(snap, clusters=(bad, *snap.clusters[1:]), grid_w=Measured(math.nan, Quality.INVALID))
    pts = points_for(replace(rec, snapshot=snap), "demo")
    c1 = by(pts, "cluster", cluster="c01")[0]
    assert "soc_pct" not in c1.fields
    assert c1.fields["status"] == 2.0 and c1.fields["soc_q"] == QUALITY_CODE[Quality.STALE] == 1
    site = by(pts, "site")[0]
    assert "grid_w" not in site.fields and site.fields["grid_q"] == 3.0
    assert site.fields["soc_pct"] == 60.0  # SoC of the clusters whose SoC is known
    assert site.fields["capacity_wh"] == 12 * 418_000.0
    assert "nan" not in encode(pts).decode().lower()


def test_every_controller_name_has_a_code() -> None:
    assert set(REASONS) <= set(SOURCE_CODE)
    assert len(set(SOURCE_CODE.values())) == len(SOURCE_CODE)


def test_line_protocol_escapes_and_timestamps() -> None:
    p = Point("site", (("site", "a b,c=d"), ("x", "")), {"grid_w": 1.5, "n": 3.0}, 1_700_000_000_123_456_000)
    assert line(p) == r"site,site=a\ b\,c\=d grid_w=1.5,n=3.0 1700000000123456000"
    assert t_ns(datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)) == 1767225600_123456000
    with pytest.raises(ValueError, match="timezone-aware"):
        t_ns(datetime(2026, 1, 1))


def test_ledger_point_flattens_numbers_only() -> None:
    p = ledger_point({"savings_total": 1234.5, "month": {"demand": 10, "label": "x"}, "ok": True}, "demo", T0)
    assert p is not None
    assert p.fields == {"savings_total": 1234.5, "month_demand": 10.0, "ok": 1.0}
    assert ledger_point({"label": "x"}, "demo", T0) is None


def _cfg(tmp_path: Path, table: dict[str, Any]) -> Any:
    return parse_telemetry(demo_site({"telemetry": table}), tmp_path)


def test_config_defaults_and_errors_name_the_key(tmp_path: Path) -> None:
    c = _cfg(tmp_path, {})
    assert c.influx is None and c.local_path == tmp_path / "history.db" and c.spool_max_bytes == 256_000_000
    tok = tmp_path / "token"
    tok.write_text("s3cret\n")
    c = _cfg(tmp_path, {"url": "http://db:8086/", "org": "o", "bucket": "b", "token_file": str(tok)})
    assert c.influx is not None and c.influx.token == "s3cret" and c.influx.url == "http://db:8086"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": "db:8086", "org": "o", "bucket": "b", "token": "t"}, "key 'url'"),
        ({"url": "http://db", "bucket": "b", "token": "t"}, "key 'org'"),
        ({"url": "http://db", "org": "o", "token": "t"}, "key 'bucket'"),
        ({"url": "http://db", "org": "o", "bucket": "b"}, "key 'token'"),
        (
            {"url": "http://db", "org": "o", "bucket": "b", "token_file": "/nonexistent/tok"},
            "key 'token_file'",
        ),
        ({"spool_max_mb": 0}, "key 'spool_max_mb'"),
        ({"batch_points": "many"}, "key 'batch_points'"),
        ({"retry_min_s": 5, "retry_max_s": 1}, "key 'retry_max_s'"),
        ({"flush_interval": 1}, "unknown key(s) 'flush_interval'"),
    ]
    for table, msg in cases:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
            _cfg(tmp_path, table)
        assert "[telemetry]" in str(e.value)
        assert "t\n" not in str(e.value)
