"""Composition: priorities, operator modes, what the Plan records, state threading."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import pytest

from agent.control import decide, initial_state
from agent.model.operator import OperatorState
from tests.test_control_support import CFG, SHANGHAI, TZ, fleet, snap

PEAK_HOUR = datetime(2026, 7, 15, 9, 0, tzinfo=TZ)
BILLED = initial_state(CFG, {40.8: 4e6}, (2026, 7))


def test_auto_plan_records_bounds_mode_and_who_decided() -> None:
    cl, pcs = fleet(soc=80.0)
    p, st = decide(
        snap(5e6, t_wall=PEAK_HOUR, clusters=cl, pcs=pcs, seq=7),
        BILLED,
        CFG,
        OperatorState(),
        SHANGHAI,
        False,
    )
    # TOU wants 1.444608 MW; demand needs 1.04 MW at least (4 MW billed, 1 % margin): TOU stands
    assert (p.seq, p.mode, p.decided_by) == (7, "auto", "tou_discharge")
    assert p.site_setpoint_w == pytest.approx(1_444_608.0)
    assert p.requested_w == pytest.approx(1_444_608.0)
    # the device limits always, then only the bounds that narrowed the window
    assert [b.source for b in p.bounds] == ["device_limits", "demand"]
    demand = p.bounds[-1]
    assert demand.lo_w == pytest.approx(5e6 - 0.99 * 4e6)
    assert p.reason
    assert sum(p.pcs_setpoints_w.values()) == pytest.approx(p.site_setpoint_w)
    assert st.ramp.t_mono == 1000.0
    assert st.ramp.grid_w == pytest.approx(5e6 - 1_444_608.0)


def test_demand_outranks_tou_when_the_peak_needs_more() -> None:
    cl, pcs = fleet(soc=80.0)
    p, _ = decide(
        snap(6e6, t_wall=PEAK_HOUR, clusters=cl, pcs=pcs), BILLED, CFG, OperatorState(), SHANGHAI, False
    )
    assert p.site_setpoint_w == pytest.approx(6e6 - 0.99 * 4e6)
    assert p.decided_by == "demand"


@pytest.mark.parametrize(
    ("op", "mode", "expected", "by"),
    [
        (OperatorState(mode="idle"), "idle", 0.0, "idle"),
        (OperatorState(mode="conservative"), "conservative", 0.0, "conservative"),
        # the override sits above the economic controllers: demand would want >= 1 MW
        (OperatorState(override_w=-100e3, override_until=2000.0), "manual", -100e3, "override"),
        # an expired override is ignored
        (OperatorState(override_w=-100e3, override_until=999.0), "auto", 1_444_608.0, "tou_discharge"),
    ],
)
def test_operator_modes(op: OperatorState, mode: str, expected: float, by: str) -> None:
    cl, pcs = fleet(soc=80.0)
    p, _ = decide(snap(5e6, t_wall=PEAK_HOUR, clusters=cl, pcs=pcs), BILLED, CFG, op, SHANGHAI, False)
    assert (p.mode, p.decided_by) == (mode, by)
    assert p.site_setpoint_w == pytest.approx(expected)


def test_operator_maintenance_excludes_a_cluster_and_the_others_cover() -> None:
    cl, pcs = fleet(soc=80.0)
    op = OperatorState(override_w=1.1e6, override_until=2000.0, maintenance=frozenset({"c01"}))
    p, _ = decide(snap(5e6, clusters=cl, pcs=pcs), BILLED, CFG, op, SHANGHAI, False)
    assert p.cluster_setpoints_w["c01"] == 0.0
    assert p.cluster_setpoints_w["c02"] == pytest.approx(100e3)
    assert p.site_setpoint_w == pytest.approx(1.1e6)


def test_state_is_immutable_and_threaded() -> None:
    st0 = initial_state(CFG)
    _, st1 = decide(snap(5e6), st0, CFG, OperatorState(), SHANGHAI, False)
    assert st0.ramp.t_mono != st0.ramp.t_mono  # NaN: untouched
    assert st1.interval.key >= 0 and st1.tou.key == st1.interval.key
    with pytest.raises(AttributeError):
        st1.ramp = 3.0  # type: ignore[misc]


def test_initial_state_validates_persisted_peaks() -> None:
    with pytest.raises(ValueError, match="month_peaks"):
        initial_state(CFG, {40.8: 4e6})
    with pytest.raises(ValueError, match="month_peaks"):
        initial_state(CFG, {40.8: float("nan")}, (2026, 7))
    assert initial_state(CFG, {40.8: 4e6}, (2026, 7)).month_peak(40.8) == 4e6


def test_conservative_failsafe_still_keeps_safety_bounds() -> None:
    # grid meter lost while PV exceeds the load: still no export, by charging
    from agent.model.snapshot import Measured

    p, _ = decide(
        snap(1e6, pv=1.3e6, grid=Measured.missing()),
        initial_state(CFG),
        replace(CFG),
        OperatorState(),
        SHANGHAI,
        False,
    )
    assert p.mode == "conservative"
    assert p.site_setpoint_w == pytest.approx(-0.3e6)
    assert p.decided_by == "no_export"
