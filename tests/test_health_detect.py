"""Cluster health at accelerated time: injected faults are found early, on the right cluster and
indicator; healthy clusters with realistic noise raise nothing (simulators/aging.py drives it)."""

from __future__ import annotations

from agent.health.tracker import HealthTracker
from bench.health_bench import RIGHT, findings_tracker
from simulators.aging import AgingRun, run_tracker
from simulators.degradation import Degradation

FAULTS = (
    Degradation("c02", "resistance", 3.0, 0.03),
    Degradation("c04", "cell_drift", 3.0, 0.004),
    Degradation("c05", "capacity_fade", 3.0, 0.008),
    Degradation("c07", "cooling", 3.0, 0.03),
)


def test_every_fault_kind_is_detected_attributed_and_early() -> None:
    run = AgingRun(n_clusters=8, degradations=FAULTS, seed=3)
    tracker, found = findings_tracker(run.start.toordinal())
    out = run_tracker(run, tracker, days=60, stop_after_limits=1)
    # every limit was actually reached in the run (otherwise lead time means nothing)
    assert set(out.limit_day) == {(d.cluster_id, d.kind) for d in FAULTS}
    for d in FAULTS:
        limit = out.limit_day[(d.cluster_id, d.kind)]
        # the right finding: indicator and basis (the resistance fault, resistance alone rising,
        # is the connection finding, not wear)
        right = [day for (cid, *what), day in found.items() if cid == d.cluster_id and tuple(what) in RIGHT[d.kind]]
        assert right, f"{d.kind} on {d.cluster_id} never recommended"
        lead = limit - (min(right) + 1)
        assert lead >= 7, f"{d.kind} on {d.cluster_id}: lead {lead} days"
        wrong = [
            (ind, basis, day)
            for (cid, ind, basis), day in found.items()
            if cid == d.cluster_id and (ind, basis) not in RIGHT[d.kind] and day < limit
        ]
        assert wrong == [], f"{d.kind} on {d.cluster_id} misattributed: {wrong}"
    faulty = {d.cluster_id for d in FAULTS}
    assert {cid for cid, _ in out.first_rec} == faulty  # nothing on the healthy half of the fleet


def test_healthy_fleet_with_noise_raises_no_recommendation() -> None:
    run = AgingRun(n_clusters=8, seed=11)
    tracker = HealthTracker()
    out = run_tracker(run, tracker, days=60)
    assert out.days == 60
    assert out.first_rec == {}
    assert tracker.recommendations == []
    # the indicators were really computed every day (a silent NaN would also raise nothing)
    for rows in tracker.history.values():
        assert len(rows) == 60
        for r in list(rows)[1:]:
            assert 2.0 < r.cell_spread_mv < 7.0
            assert 75.0 < r.resistance_mohm < 105.0
            assert 99.0 < r.capacity_pct < 101.0
            assert 26.0 < r.temp_max_c < 40.0
            assert r.alarm_rate == 0.0 and r.comm_error_rate == 0.0
            assert 0.3 < r.efc < 1.6
