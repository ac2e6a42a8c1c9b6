"""The embedded history store: what `make demo` keeps without any database, and its query API."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.live.hub import Hub
from agent.telemetry import LocalStore, LocalStoreSink, start_telemetry
from agent.telemetry import localstore as localstore_mod
from agent.telemetry.schema import Point, t_ns
from tests.fakes import Cycles
from tests.tinyfs import ROOT_ONLY, fill, tiny_tmpfs

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
        "held_values": 0,
        "dropped_values": 0,
        "error": None,
    }
    cyc = Cycles(hub, T0 - timedelta(seconds=1))  # cycle i is at T0 + (i - 1) s
    # a monotonic start where (t0 + 11) - (t0 + 6) rounds to 4.99999...: 5 s apart must still count
    # as the interval (it kept cycle 12 instead of 11 once: a flake in the full suite)
    cyc.t0_mono = 55.63584761356655
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
    # site 1 + meters 3 + rack 1 + clusters 12 + pcs 4 + plan 1 + agent 1 + one per bound: every cycle
    # has 3 bounds (device_limits, no_export, ramp: the first one ramps from the measured grid). None lost.
    assert sink.points_out == 100 * 26


# --- a store that cannot be written (issue 15, item 5) -----------------------------------------
FAST = {"telemetry": {"local_interval_s": 0.0, "flush_interval_s": 0.01}}


def _until(pred: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s  # generous: a busy machine; the state is what is asserted
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _alarms(hub: Hub) -> list[tuple[str, str]]:
    return [(a.id, a.severity.value) for a in hub.alarms.active()]


def _loads(path: Path, n: int) -> list[float]:
    got = LocalStore(path, 3600.0)
    try:
        series = got.series("site", "load_w", T0, T0 + timedelta(seconds=n + 2), 1.0)
    finally:
        got.close()
    assert len(series) == 1
    return series[0].v


def _telemetry_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    recs = [r for r in caplog.records if r.name == "ems.telemetry" and r.levelno >= logging.WARNING]
    assert not [r for r in recs if r.exc_info is not None]  # no traceback, ever
    return [r.getMessage() for r in recs]


@ROOT_ONLY
def test_a_real_full_disk_raises_one_alarm_logs_once_and_loses_nothing(
    make_hub: Callable[..., Hub], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ems.telemetry")
    with tiny_tmpfs(tmp_path / "fs", "1m") as fs:
        hub = make_hub(FAST)
        sink = start_telemetry(hub.site, hub, fs)
        assert isinstance(sink, LocalStoreSink)
        cyc = Cycles(hub, T0 - timedelta(seconds=1))  # cycle i is at T0 + (i - 1) s
        loads = [1_000_000.0 + 1000.0 * i for i in range(60)]
        try:
            for w in loads[:5]:
                cyc.next(load_w=w)
            _until(lambda: sink.stored_values > 0 and sink.queue_depth == 0, "the first writes")
            filler = fill(fs)
            for w in loads[5:40]:
                cyc.next(load_w=w)
                time.sleep(0.02)  # several flushes fail, not one
            _until(lambda: ("state_disk_full@telemetry", "critical") in _alarms(hub), "the alarm")
            _until(lambda: sink.status()["held_values"] > 0 and sink.queue_depth == 0, "held points")
            st = sink.status()
            assert st["dropped_values"] == 0 and "database or disk is full" in str(st["error"])
            filler.unlink()  # space comes back
            for w in loads[40:]:
                cyc.next(load_w=w)
            _until(lambda: _alarms(hub) == [], "the alarm to clear")
            _until(lambda: sink.status()["held_values"] == 0, "the held points written")
        finally:
            sink.close()
        assert _telemetry_log(caplog) == [
            "local history store disk full; holding points in memory",
            "local history store writable again",
        ]
        assert not [r for r in caplog.records if "cannot rollback" in r.getMessage()]
        assert _loads(fs / "history.db", len(loads)) == loads  # every cycle, none lost


def test_injected_enospc_at_the_write_raises_one_alarm_and_loses_nothing(
    make_hub: Callable[..., Hub], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ems.telemetry")
    hub = make_hub(FAST)
    sink = start_telemetry(hub.site, hub, tmp_path)
    assert isinstance(sink, LocalStoreSink)
    real_write = sink.store.write
    full = True

    def write(points: list[Point]) -> int:
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "history.db"))
        return real_write(points)

    sink.store.write = write  # type: ignore[method-assign]
    cyc = Cycles(hub, T0 - timedelta(seconds=1))
    loads = [2_000_000.0 + 500.0 * i for i in range(30)]
    try:
        for w in loads[:20]:
            cyc.next(load_w=w)
            time.sleep(0.01)
        _until(lambda: sink.queue_depth == 0 and sink.status()["held_values"] > 0, "held points")
        assert _alarms(hub) == [("state_disk_full@telemetry", "critical")]
        assert hub.alarms.active()[0].message == (
            f"local history store {tmp_path / 'history.db'}: [Errno 28] No space left on device:"
            f" '{tmp_path / 'history.db'}'; history held in memory (up to 50000 values) until it can be written"
        )
        full = False
        for w in loads[20:]:
            cyc.next(load_w=w)
        _until(lambda: _alarms(hub) == [] and sink.status()["held_values"] == 0, "recovery")
    finally:
        sink.close()
    assert _telemetry_log(caplog) == [
        "local history store disk full; holding points in memory",
        "local history store writable again",
    ]
    assert sink.dropped_values == 0
    assert _loads(tmp_path / "history.db", len(loads)) == loads


def test_the_memory_held_while_the_store_fails_is_bounded(
    make_hub: Callable[..., Hub], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(localstore_mod, "HOLD_VALUES", 100)
    hub = make_hub(FAST)
    sink = start_telemetry(hub.site, hub, tmp_path)
    assert isinstance(sink, LocalStoreSink)

    def write(points: list[Point]) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    sink.store.write = write  # type: ignore[method-assign]
    cyc = Cycles(hub, T0)
    try:
        for _ in range(10):
            cyc.next()
        _until(lambda: sink.queue_depth == 0 and sink.points_out == sink.points_in, "every flush tried")
        st = sink.status()
        assert 0 < st["held_values"] <= 100 and st["dropped_values"] > 0
        assert _alarms(hub) == [("telemetry_store_failed@telemetry", "warning")]  # not a full disk
    finally:
        sink.close()


class _FailingOnce:
    """A sqlite3 connection whose next executemany fails as a full disk does (after BEGIN and
    the new series' INSERTs went through, inside the transaction)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.fail = True

    def executemany(self, sql: str, rows: object) -> sqlite3.Cursor:
        if self.fail:
            self.fail = False
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.executemany(sql, rows)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)


def test_a_failed_write_never_files_samples_under_another_series(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "h.db", 3600.0)
    a = [Point("rack", (("rack", "a"),), {"load_w": 1.0}, t_ns(T0))]
    b = [Point("rack", (("rack", "b"),), {"load_w": 2.0}, t_ns(T0))]
    store._db = _FailingOnce(store._db)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        store.write(a)  # the real cause, not "cannot rollback"
    assert store.write(b) == 1
    assert store.write(a) == 1
    store.close()
    got = LocalStore(tmp_path / "h.db", 3600.0)  # after a restart: from the database alone
    s = got.series("rack", "load_w", T0, T0 + timedelta(seconds=1), 1.0)
    assert [(x.tags["rack"], x.v) for x in s] == [("a", [1.0]), ("b", [2.0])]
    got.close()
