"""Ramp support delegated to PCS in grid-power (PCC) control: what decide() hands them, table-tested."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from agent.control import ControllerState, decide, initial_state
from agent.control.ramp import PCC_NO_FLOOR_W, PCC_RAMP_FRACTION
from agent.model.config import ControlConfig
from agent.model.operator import OperatorState
from agent.model.plan import Plan
from agent.model.snapshot import ClusterSnapshot, ClusterStatus, Measured, PcsSnapshot, PcsStatus, SiteSnapshot
from drivers.reading import Quality
from tests.test_control_support import CFG, FLAT, NOON, cluster, fleet, snap

RAMP_CFG = replace(CFG, ramp_limit_w_per_s=200_000.0)
OP = OperatorState()


def pcc_fleet(
    modes: tuple[bool, ...] = (True, True, True, True), **kw: float
) -> tuple[tuple[ClusterSnapshot, ...], tuple[PcsSnapshot, ...]]:
    cl, pcs = fleet(**kw)
    return cl, tuple(replace(p, grid_control=m) for p, m in zip(pcs, modes, strict=True))


def run(
    s: SiteSnapshot,
    cfg: ControlConfig = RAMP_CFG,
    st: ControllerState | None = None,
    allow_export: bool = False,
    op: OperatorState = OP,
) -> tuple[Plan, ControllerState]:
    return decide(s, st if st is not None else initial_state(cfg), cfg, op, FLAT, allow_export)


def test_trusted_pcs_configured_for_it_get_target_ramp_shares_and_windows() -> None:
    cl, pcs = pcc_fleet()
    p, st = run(snap(3e6, clusters=cl, pcs=pcs))
    gc = p.grid_control
    assert gc is not None
    assert gc.ramp_w_per_s == 100.0  # the battery is on its plan: nothing to hand back, the slowest ramp
    assert gc.grid_min_w == 0.0
    assert gc.target_w == pytest.approx(3e6 - p.site_setpoint_w)  # net - the planned battery
    assert set(gc.pcs) == {"pcs1", "pcs2", "pcs3", "pcs4"}
    for lim in gc.pcs.values():  # equal fleets: equal shares; 3 x 209 kW under a 630 kW rating
        assert lim.share == pytest.approx(0.25)
        assert lim.max_discharge_w == pytest.approx(627e3)
        assert lim.max_charge_w == pytest.approx(627e3)
    assert any(b.source == "ramp" and "delegated" in b.reason for b in p.bounds)
    assert st.ramp.grid_w == 3e6  # the ramp reference, should the agent take the ramp back: the meter


@pytest.mark.parametrize(
    ("battery_w", "ramp_w_per_s"),
    [
        (0.0, 100.0),  # on the plan: the slowest ramp written (never 0: pcc.PCC_MIN_RAMP_W_PER_S)
        (627e3, 25_000.0),  # a quarter of the four PCS's 2,508 kW discharge window off the plan
        (-627e3, 25_000.0),  # the same charging, against the charge window
        (1_254e3, 50_000.0),
        (2_508e3, 100_000.0),  # the whole window: the grid must take the load over at the full ramp
        (4_000e3, 100_000.0),  # (a meter beyond the window: the full ramp, no more)
    ],
)
def test_the_reference_moves_as_fast_as_the_batterys_use_of_its_window_asks(
    battery_w: float, ramp_w_per_s: float
) -> None:
    # 200 kW/s x PCC_RAMP_FRACTION (0.5) x the grid's distance from the target as a share of the
    # window that way (agent.control.pcc.reference_ramp)
    cl, pcs = pcc_fleet()
    p, _ = run(snap(3e6, battery=battery_w, clusters=cl, pcs=pcs))
    assert p.site_setpoint_w == 0.0  # flat price: the plan holds 0 W; the target is the load
    assert p.grid_control is not None
    assert p.grid_control.target_w == pytest.approx(3e6)
    assert PCC_RAMP_FRACTION == 0.5
    assert p.grid_control.ramp_w_per_s == pytest.approx(ramp_w_per_s)


@pytest.mark.parametrize(
    ("op", "mode"),
    [
        (OperatorState(override_w=-600e3, override_until=2000.0), "manual"),
        (OperatorState(mode="idle"), "idle"),
    ],
)
def test_an_operators_command_is_handed_over_at_the_full_ramp(op: OperatorState, mode: str) -> None:
    # The battery discharges 627 kW off the plan: in auto a quarter of the full ramp (above); an
    # override or idle is a command, not a swing: the PCS's reference moves at the full ramp
    cl, pcs = pcc_fleet()
    p, _ = run(snap(3e6, battery=627e3, clusters=cl, pcs=pcs), op=op)
    assert p.mode == mode
    assert p.grid_control is not None
    assert p.grid_control.ramp_w_per_s == pytest.approx(200_000.0 * PCC_RAMP_FRACTION)


def test_a_grid_above_the_connection_limit_is_brought_back_at_the_full_ramp() -> None:
    # The grid reads 3.1 MW against a 3 MW connection: the plan's target is the limit (the battery
    # discharges 100 kW more than now), a bound to restore at once, not a swing to approach slowly
    cl, pcs = pcc_fleet()
    cfg = replace(RAMP_CFG, grid_import_limit_w=3.0e6)
    p, _ = run(snap(3.2e6, battery=100e3, clusters=cl, pcs=pcs), cfg=cfg)
    assert p.grid_control is not None
    assert p.grid_control.target_w == pytest.approx(3.0e6)
    assert p.grid_control.ramp_w_per_s == pytest.approx(200_000.0 * PCC_RAMP_FRACTION)
    # under the limit (3.05 MW read against 3.1 MW), the battery 50 kW beyond its plan of 100 kW: as
    # anywhere else, 50 / 2,508 of the full ramp
    p, _ = run(snap(3.2e6, battery=150e3, clusters=cl, pcs=pcs), cfg=replace(cfg, grid_import_limit_w=3.1e6))
    assert p.grid_control is not None and p.grid_control.target_w == pytest.approx(3.1e6)
    assert p.grid_control.ramp_w_per_s == pytest.approx(100_000.0 * 50e3 / 2_508e3)


def test_a_load_step_is_not_bounded_by_the_agent_the_pcs_hold_the_ramp() -> None:
    cl, pcs = pcc_fleet()
    _, st = run(snap(3e6, clusters=cl, pcs=pcs))
    s = snap(5e6, clusters=cl, pcs=pcs, t_mono=1001.0, t_wall=NOON + timedelta(seconds=1), seq=2)
    p, _ = run(s, st=st)
    assert p.decided_by != "ramp"
    assert p.site_setpoint_w == pytest.approx(0.0)  # flat price: hold; the PCS absorb the step themselves
    assert p.grid_control is not None and p.grid_control.target_w == pytest.approx(5e6)
    # the same step with setpoint-mode PCS: the agent bounds it
    cl2, pcs2 = fleet()
    _, st2 = run(snap(3e6, clusters=cl2, pcs=pcs2))
    p2, _ = run(snap(5e6, clusters=cl2, pcs=pcs2, t_mono=1001.0, t_wall=NOON + timedelta(seconds=1)), st=st2)
    assert p2.decided_by == "ramp" and p2.grid_control is None


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("ramp limit off", lambda cl, pcs: (run(snap(3e6, clusters=cl, pcs=pcs), cfg=CFG))),
        ("grid meter lost", lambda cl, pcs: run(snap(3e6, clusters=cl, pcs=pcs, grid=Measured.missing()))),
        ("load stale", lambda cl, pcs: run(snap(3e6, clusters=cl, pcs=pcs, load_m=Measured(3e6, Quality.STALE)))),
        ("grid outage", lambda cl, pcs: run(snap(3e6, clusters=cl, pcs=pcs, grid_up=False))),
    ],
)
def test_no_grid_control_without_a_limit_good_measurements_or_the_grid(case: str, make) -> None:  # type: ignore[no-untyped-def]
    cl, pcs = pcc_fleet()
    p, _ = make(cl, pcs)
    assert p.grid_control is None, case
    if case in ("grid meter lost", "load stale"):
        assert p.mode == "conservative" and "measurement_invalid" in p.alarms


def test_untrusted_and_setpoint_mode_pcs_are_left_out_and_the_shares_still_add_up() -> None:
    cl, pcs = pcc_fleet(modes=(True, True, True, False))
    pcs = (replace(pcs[0], status=PcsStatus.FAULT), *pcs[1:])
    p, _ = run(snap(3e6, clusters=cl, pcs=pcs))
    gc = p.grid_control
    assert gc is not None
    assert set(gc.pcs) == {"pcs2", "pcs3"}
    assert sum(lim.share for lim in gc.pcs.values()) == pytest.approx(1.0)
    assert p.pcs_setpoints_w["pcs1"] == 0.0


def test_a_pcs_whose_clusters_are_all_faulted_takes_no_share() -> None:
    cl, pcs = pcc_fleet()
    cl = tuple(replace(c, status=ClusterStatus.FAULT) if c.pcs_id == "pcs2" else c for c in cl)
    p, _ = run(snap(3e6, clusters=cl, pcs=pcs))
    assert p.grid_control is not None and "pcs2" not in p.grid_control.pcs


def test_shares_follow_the_dispatch_weights() -> None:
    # pcs1's clusters are fuller (more to give) and pcs2's emptier (more room to take): in both
    # directions the weights are SoC headroom x capacity, averaged
    cl = (cluster("a", "pcs1", soc=80.0), cluster("b", "pcs2", soc=40.0))
    pcs = tuple(PcsSnapshot(pid, (cid,), PcsStatus.ONLINE, 630e3, Measured(0.0), grid_control=True)
                for pid, cid in (("pcs1", "a"), ("pcs2", "b")))  # fmt: skip
    p, _ = run(snap(3e6, clusters=cl, pcs=pcs))
    gc = p.grid_control
    assert gc is not None
    floor = 20.0  # CFG soc_min (no reserve load)
    dis1, dis2 = 80.0 - floor, 40.0 - floor
    chg1, chg2 = 95.0 - 80.0, 95.0 - 40.0
    want1 = (dis1 / (dis1 + dis2) + chg1 / (chg1 + chg2)) / 2
    assert gc.pcs["pcs1"].share == pytest.approx(want1)
    assert gc.pcs["pcs2"].share == pytest.approx(1.0 - want1)


def test_reserve_and_ceiling_close_a_pcs_window_in_that_direction() -> None:
    cl = (cluster("a", "pcs1", soc=20.0), cluster("b", "pcs2", soc=95.0), cluster("c", "pcs2", soc=50.0))
    pcs = (
        PcsSnapshot("pcs1", ("a",), PcsStatus.ONLINE, 630e3, Measured(0.0), grid_control=True),
        PcsSnapshot("pcs2", ("b", "c"), PcsStatus.ONLINE, 300e3, Measured(0.0), grid_control=True),
    )
    p, _ = run(snap(3e6, clusters=cl, pcs=pcs))
    gc = p.grid_control
    assert gc is not None
    assert gc.pcs["pcs1"].max_discharge_w == 0.0  # at the floor: no discharge
    assert gc.pcs["pcs1"].max_charge_w == pytest.approx(209e3)
    assert gc.pcs["pcs2"].max_discharge_w == pytest.approx(300e3)  # 2 x 209 kW capped by the rating
    assert gc.pcs["pcs2"].max_charge_w == pytest.approx(209e3)  # the full cluster takes nothing


def test_no_export_is_a_grid_floor_and_the_target_never_below_it() -> None:
    cl, pcs = pcc_fleet()
    # PV above the load, TOU discharge would export: the target stays at 0 W import or above
    p, _ = run(snap(1e6, pv=1.5e6, clusters=cl, pcs=pcs))
    gc = p.grid_control
    assert gc is not None and gc.grid_min_w == 0.0 and gc.target_w >= 0.0
    p, _ = run(snap(1e6, pv=1.5e6, clusters=cl, pcs=pcs), allow_export=True)
    assert p.grid_control is not None and p.grid_control.grid_min_w == PCC_NO_FLOOR_W


def test_unavoidable_export_keeps_the_target_at_the_floor_and_the_pcs_charge_fully() -> None:
    cl, pcs = pcc_fleet()
    p, _ = run(snap(1e6, pv=5e6, clusters=cl, pcs=pcs))  # 4 MW surplus, 2.5 MW of charge
    assert "export_unavoidable" in p.alarms
    assert p.site_setpoint_w == pytest.approx(-4 * 627e3)
    gc = p.grid_control
    assert gc is not None and gc.target_w == 0.0 and gc.grid_min_w == 0.0
    assert all(lim.max_charge_w == pytest.approx(627e3) for lim in gc.pcs.values())


def test_the_operator_override_becomes_a_grid_target() -> None:
    cl, pcs = pcc_fleet()
    op = OperatorState(override_w=-800e3, override_until=1e9)
    p, _ = run(snap(3e6, clusters=cl, pcs=pcs), op=op)
    assert p.decided_by == "override" and p.site_setpoint_w == pytest.approx(-800e3)
    assert p.grid_control is not None and p.grid_control.target_w == pytest.approx(3.8e6)
