"""Load and PV models: seeded synthetic jobs, trace replay, inference, cooling lag, PV shape."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from simulators.load import TRACE_H100, Inference, Offset, SyntheticTraining, TraceReplay, WithCooling
from simulators.pv import ClearSkyPv


def _trace() -> tuple[list[float], list[float]]:
    with TRACE_H100.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [float(r["time_seconds"]) for r in rows], [float(r["power_watts"]) for r in rows]


def test_synthetic_is_seeded_and_at_matches_series() -> None:
    a = SyntheticTraining(nodes=1250, seed=3).series(0.0, 6 * 3600, 1.0)
    b = SyntheticTraining(nodes=1250, seed=3).series(0.0, 6 * 3600, 1.0)
    c = SyntheticTraining(nodes=1250, seed=4).series(0.0, 6 * 3600, 1.0)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    live = SyntheticTraining(nodes=1250, seed=3)
    for t in range(0, 6 * 3600, 613):
        assert live.at(float(t)) == pytest.approx(a[t], rel=1e-12)


def test_synthetic_swings_megawatts_within_seconds_and_has_idle_and_failures() -> None:
    m = SyntheticTraining(nodes=1250, seed=0)
    x = m.series(0.0, 24 * 36_000, 0.1)  # one day at 0.1 s
    assert x.min() == pytest.approx(1250 * 600.0)  # idle gaps / after failures
    assert x.max() == pytest.approx(1250 * 4500.0)  # compute plateau
    steps = np.diff(x)
    assert steps.max() > 0.4e6  # up ramps ~4.3 MW/s -> ~0.43 MW per 0.1 s
    assert steps.min() < -1.0e6  # down ramps are faster (0.3 s); failures drop at once
    # count compute -> comm swings of at least 3 MW: many per hour of training
    hi = x > 1250 * 4000.0
    swings = np.count_nonzero(hi[:-1] & ~hi[1:])
    assert swings > 24 * 100
    # a failure is a drop from compute straight to idle within 0.2 s
    drops = np.nonzero((x[:-2] > 1250 * 4000.0) & (x[2:] < 1250 * 700.0))[0]
    assert len(drops) >= 1


def test_trace_replay_scales_loops_and_interpolates() -> None:
    ts, ws = _trace()
    m = TraceReplay(nodes=100)
    for i in (0, 10, 1000, len(ts) - 1):
        assert m.at(ts[i] - ts[0]) == pytest.approx(100 * ws[i])
    mid = 0.5 * (ts[500] + ts[501]) - ts[0]
    assert m.at(mid) == pytest.approx(100 * 0.5 * (ws[500] + ws[501]))
    assert m.at(123.4 + m.period_s) == pytest.approx(m.at(123.4))
    s = m.series(10.0, 50_000, 0.05)  # 2,500 s: loops more than three times
    assert s[1234] == pytest.approx(m.at(10.0 + 1234 * 0.05))
    assert 0.99 * 100 * max(ws) <= s.max() <= 100 * max(ws)
    assert m.period_s == pytest.approx(ts[-1] - ts[0] + float(np.median(np.diff(ts))))


def test_inference_peaks_at_the_configured_hour_and_is_deterministic() -> None:
    m = Inference(peak_w=5e6, trough_w=2e6, peak_hour=15.0, ripple=0.0, day_offset_s=0.0)
    day = m.series(0.0, 24 * 60, 60.0)
    assert int(np.argmax(day)) == 15 * 60
    assert day.max() == pytest.approx(5e6) and day.min() == pytest.approx(2e6, rel=1e-3)
    r1 = Inference(ripple=0.05, seed=2).series(0.0, 1000, 1.0)
    r2 = Inference(ripple=0.05, seed=2).series(0.0, 1000, 1.0)
    assert np.array_equal(r1, r2)
    assert Inference(ripple=0.05, seed=2).at(500.0) == pytest.approx(r1[500])


class _Step:
    """IT load that steps from 1 MW to 2 MW at t = 100 s."""

    def at(self, t: float) -> float:
        return 1e6 if t < 100.0 else 2e6

    def series(self, start_s: float, n: int, dt: float) -> np.ndarray:
        ts = start_s + dt * np.arange(n)
        return np.where(ts < 100.0, 1e6, 2e6)


def test_cooling_lags_it_load_by_its_time_constant() -> None:
    m = WithCooling(_Step(), pue=1.3, tau_s=60.0)
    s = m.series(0.0, 400, 1.0)
    assert s[99] == pytest.approx(1.3e6)
    assert s[100] - 2e6 == pytest.approx(0.3e6 + 0.3e6 * (1 - math.exp(-1 / 60)))  # starts moving
    assert s[160] - 2e6 == pytest.approx(0.3e6 + 0.3e6 * (1 - math.exp(-61 / 60)))  # ~63 % after tau
    live = WithCooling(_Step(), pue=1.3, tau_s=60.0)
    assert [live.at(float(t)) for t in range(400)] == pytest.approx(list(s))


def test_offset_adds_a_load_step() -> None:
    m = Offset(TraceReplay(nodes=10))
    before = m.at(5.0)
    m.offset_w = 250_000.0
    assert m.at(5.0) == pytest.approx(before + 250_000.0)
    assert m.series(5.0, 1, 1.0)[0] == pytest.approx(before + 250_000.0)


def test_clear_sky_pv_is_zero_at_night_and_peaks_at_solar_noon() -> None:
    pv = ClearSkyPv(peak_w=800_000.0, sunrise_h=6.0, sunset_h=18.0, day_offset_s=0.0)
    day = pv.series(0.0, 24 * 60, 60.0)
    assert day[: 6 * 60 + 1].max() == 0.0 and day[18 * 60 :].max() == 0.0
    assert int(np.argmax(day)) == 12 * 60 and day.max() == pytest.approx(800_000.0)
    assert pv.at(9 * 3600.0) == pytest.approx(800_000.0 * math.sin(math.pi * 0.25) ** 1.5)
    assert ClearSkyPv(800_000.0, day_offset_s=12 * 3600.0).at(0.0) == pytest.approx(800_000.0)


def test_a_long_running_schedule_stays_bounded_and_unchanged() -> None:
    from simulators.load import PRUNE_AT, SyntheticTraining

    pruned = SyntheticTraining(nodes=10, seed=3)
    reference = SyntheticTraining(nodes=10, seed=3)
    ts = np.arange(0.0, 5 * 86400.0, 7.3)
    got = [pruned.at(float(t)) for t in ts]
    assert len(pruned._t) <= PRUNE_AT + 2000  # a month of simulator uptime no longer grows memory
    assert got == pytest.approx(reference.series(0.0, len(ts), 7.3).tolist(), rel=1e-12)  # same load
    with pytest.raises(ValueError, match="before the kept schedule"):
        pruned.at(0.0)


def test_trace_replay_reads_a_file_with_datetimes_only(tmp_path: Path) -> None:
    # the 200stepsync trace has no time_seconds column: its seconds come from the datetimes
    p = tmp_path / "node.csv"
    p.write_text(
        "datetime,power_watts\n2025-07-26 23:32:09.500,500\n2025-07-26 23:32:10.000,700\n2025-07-26 23:32:10.500,900\n"
    )
    m = TraceReplay(nodes=2, path=p)
    assert m.period_s == pytest.approx(1.5)
    assert m.at(0.25) == pytest.approx(2 * 600.0)
    assert m.at(1.0) == pytest.approx(2 * 900.0)
    bad = tmp_path / "bad.csv"
    bad.write_text("when,power_watts\nx,1\ny,2\n")
    with pytest.raises(ValueError, match=r"bad.csv \(time_seconds or datetime, power_watts\)"):
        TraceReplay(path=bad)
