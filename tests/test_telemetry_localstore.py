"""The embedded history store: what `make demo` keeps without any database, and its query API."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.live.hub import Hub
from agent.telemetry import LocalStore, LocalStoreSink, start_telemetry
from agent.telemetry.schema import Point, t_ns
from tests.fakes import Cycles

T0 = datetime(2026, 7, 1, 6, 0, 0, tzinfo=UTC)


def test_sink_keeps_one_cycle_per_interval_and_serves_downsampled_series(
    make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    hub = make_hub({"telemetry": {"local_interval_s": 5.0, "flush_interval_s": 0.01}})
    sink = start_telemetry(hub.site, hub, tmp_path)
    assert isinstance(sink, LocalStoreSink)
    assert hub.read("telemetry") == {
        "backend": "local",
        "path": str(tmp_path / "history.db"),
        "stored_values": 0,
        "queue_depth": 0,
        "queue_dropped": 0,
    }
    cyc = Cycles(hub, T0 - timedelta(seconds=1))  # cycle i is at T0 + (i - 1) s
    for i in range(40):
        cyc.next(load_w=1_000_000.0 + 1000.0 * i)
    sink.close()
    # Cycles 0, 5, 10, ... 35 were kept (every 5 s); 10 s buckets average two of them.
    got = LocalStore(tmp_path / "history.db", 3600.0)  # read back after a restart
    series = got.series("site", "load_w", T0, T0 + timedelta(seconds=40), 10.0)
    assert len(series) == 1 and series[0].tags == {"site": "demo"}
    assert series[0].t == [T0 + timedelta(seconds=s) for s in (0, 10, 20, 30)]
    assert series[0].v == [1_002_500.0, 1_012_500.0, 1_022_500.0, 1_032_500.0]
    one = got.series("cluster", "soc_pct", T0, T0 + timedelta(seconds=40), 40.0, tags={"cluster": "c07"})
    assert [(s.tags["pcs"], s.v) for s in one] == [("pcs3", [60.0])]
    assert len(got.series("cluster", "soc_pct", T0, T0 + timedelta(seconds=40), 40.0)) == 12
    assert {"site", "cluster", "pcs", "plan", "agent", "meter", "rack"} <= set(got.catalog())
    assert "grid_w" in got.catalog()["site"]
    got.close()


def test_retention_and_argument_errors(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "h.db", retention_s=3600.0)
    pts = [
        Point("site", (("site", "x"),), {"grid_w": float(i)}, t_ns(T0 + timedelta(minutes=i)))
        for i in range(120)
    ]
    assert store.write(pts) == 120
    assert store.write(pts[:10]) == 10  # rewriting the same points replaces them
    removed = store.prune(T0 + timedelta(minutes=120))
    assert removed == 60
    s = store.series("site", "grid_w", T0, T0 + timedelta(hours=3), 3600.0)
    assert s[0].t == [T0 + timedelta(hours=1)] and s[0].v == [sum(range(60, 120)) / 60]
    with pytest.raises(ValueError, match="step_s"):
        store.series("site", "grid_w", T0, T0 + timedelta(hours=1), 0)
    with pytest.raises(ValueError, match="must be after start"):
        store.series("site", "grid_w", T0, T0, 1)
    with pytest.raises(ValueError, match="more than 10000 buckets"):
        store.series("site", "grid_w", T0, T0 + timedelta(days=1), 1)
    assert store.series("site", "nope", T0, T0 + timedelta(hours=3), 60) == []
    store.close()


def test_submit_returns_at_once(make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    hub = make_hub({"telemetry": {"local_interval_s": 0.0}})
    sink = start_telemetry(hub.site, hub, tmp_path)
    assert isinstance(sink, LocalStoreSink)
    # A disk that takes 0.3 s per write: the cycles must not feel it (what submit() costs is
    # measured by bench/telemetry_bench.py, not here).
    store_write = sink.store.write

    def slow_write(points: list[Point]) -> int:
        time.sleep(0.3)
        return store_write(points)

    sink.store.write = slow_write  # type: ignore[method-assign]
    cyc = Cycles(hub, T0)
    worst = 0.0
    t_all = time.perf_counter()
    for _ in range(100):
        rec = cyc.next(publish=False)
        t = time.perf_counter()
        sink.submit(rec)
        worst = max(worst, time.perf_counter() - t)
    submitted_s = time.perf_counter() - t_all
    sink.close()
    assert worst < 0.15 and submitted_s < 1.0  # one slow write alone would take 0.3 s
    # site 1 + meters 3 + rack 1 + clusters 12 + pcs 4 + plan 1 + agent 1 + one per bound: the first
    # cycle has 2 bounds (device_limits, no_export), later ones 3 (+ ramp). None lost.
    assert sink.points_out == 25 + 99 * 26
