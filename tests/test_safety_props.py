"""Property tests of the DESIGN.md safety contract over random snapshots, states and operators.

Every Plan decide() returns, whatever it is fed, must satisfy:
- no cluster beyond its BMS limits, no PCS beyond its rating, PCS = sum of its clusters;
- nothing to a cluster or PCS the snapshot does not trust (or the operator holds in maintenance);
- no discharge from a cluster at or below the reserve floor while the grid is up, no charge above soc_max;
- no export unless allowed (given measured load and PV), or an alarm saying it cannot be avoided;
- every number finite;
- grid-power (PCC) control, when the plan delegates the ramp to PCS: only to trusted PCS configured
  for it, with the grid measurements good and the grid up; shares that add up to 1; each PCS's
  window within its rating and the BMS limits of its trusted clusters, with no discharge from
  clusters at or below the reserve floor and no charge above soc_max; the ramp no more than the
  limit; no export: a grid floor of at least 0 W and a target not below it.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.control import ControllerState, decide, initial_state, reserve_floor_pct
from agent.model.config import ControlConfig
from agent.model.operator import OperatorState
from agent.model.plan import Plan
from agent.model.snapshot import ClusterSnapshot, ClusterStatus, Measured, PcsSnapshot, PcsStatus, SiteSnapshot
from drivers.reading import Quality
from tests.test_control_support import SHANGHAI, TZ

TOL = 1e-6

finite_w = st.one_of(st.floats(-1e7, 1e7), st.sampled_from([-3e6, -5e5, 5e5, 3e6]))


def span(lo: float, hi: float, *typical: float) -> st.SearchStrategy[float]:
    """Floats in [lo, hi], often one of the typical values (plain floats crowd at the edges)."""
    return st.one_of(st.sampled_from(typical), st.floats(lo, hi))


weird = st.sampled_from([math.nan, math.inf, -math.inf, -5e4])


def measured(values: st.SearchStrategy[float]) -> st.SearchStrategy[Measured]:
    return st.builds(
        Measured,
        st.one_of(*([values] * 30), weird),  # mostly plausible, sometimes NaN / inf / negative
        st.sampled_from([Quality.GOOD] * 30 + [Quality.STALE, Quality.COMM_ERROR]),
    )


@st.composite
def sites(draw: st.DrawFn) -> tuple[tuple[ClusterSnapshot, ...], tuple[PcsSnapshot, ...]]:
    npcs = draw(st.integers(1, 4))
    pcs_ids = [f"p{j}" for j in range(npcs)]
    clusters = []
    for i in range(draw(st.integers(0, 10).map(lambda n: 10 - n))):  # many clusters first
        clusters.append(
            ClusterSnapshot(
                f"c{i}",
                draw(st.sampled_from([*pcs_ids] * 6 + ["ghost"])),
                draw(st.sampled_from([ClusterStatus.ONLINE] * 12 + list(ClusterStatus))),
                draw(st.sampled_from([418e3] * 12 + [100e3, math.nan, 0.0])),
                draw(measured(span(-10, 110, 15.0, 25.0, 50.0, 80.0, 96.0))),
                draw(measured(span(0, 400e3, 209e3, 100e3))),
                draw(measured(span(0, 400e3, 209e3, 100e3))),
            )
        )
    pcs = tuple(
        PcsSnapshot(
            pid,
            tuple(c.id for c in clusters if c.pcs_id == pid),
            draw(st.sampled_from([PcsStatus.ONLINE] * 12 + list(PcsStatus))),
            draw(st.one_of(span(0, 1e6, 630e3, 630e3, 300e3), st.just(math.nan))),
            grid_control=draw(st.booleans()),
        )
        for pid in pcs_ids
    )
    return tuple(clusters), pcs


configs = st.builds(
    ControlConfig,
    soc_min_pct=st.floats(0, 40),
    soc_max_pct=st.floats(60, 100),
    reserve_load_w=span(0, 2e6, 300e3),
    reserve_minutes=span(0, 120, 15.0, 60.0),
    ramp_limit_w_per_s=st.sampled_from([0.0, 50e3, 200e3]),
    demand_target_w=st.sampled_from([0.0, 0.0, 3e6]),
    tou_enabled=st.booleans(),
    degradation_cost_per_kwh=st.sampled_from([0.0, 0.15]),
)

operators = st.builds(
    OperatorState,
    mode=st.sampled_from(["auto", "auto", "idle", "conservative"]),
    override_w=st.one_of(st.none(), finite_w),
    override_until=st.sampled_from([0.0, 1e9]),
    reserve_load_w=st.one_of(st.none(), st.floats(0, 3e6)),
    reserve_minutes=st.one_of(st.none(), st.floats(0, 60)),
    maintenance=st.frozensets(st.sampled_from([f"c{i}" for i in range(10)]), max_size=3),
)


def trusted(c: ClusterSnapshot, snap: SiteSnapshot, op: OperatorState) -> bool:
    """Independent statement of who may be commanded."""
    p = next((p for p in snap.pcs if p.id == c.pcs_id), None)
    return (
        c.trusted
        and c.id not in op.maintenance
        and math.isfinite(c.capacity_wh)
        and c.capacity_wh > 0
        and p is not None
        and p.trusted
        and math.isfinite(p.rated_w)
        and p.rated_w > 0
    )


def check(plan: Plan, snap: SiteSnapshot, cfg: ControlConfig, op: OperatorState, allow_export: bool) -> None:
    nums = [plan.site_setpoint_w, plan.requested_w, plan.shortfall_w]
    nums += list(plan.pcs_setpoints_w.values()) + list(plan.cluster_setpoints_w.values())
    assert all(math.isfinite(x) for x in nums), plan
    assert set(plan.cluster_setpoints_w) == {c.id for c in snap.clusters}
    ok = [c for c in snap.clusters if trusted(c, snap, op)]
    capacity = sum(c.capacity_wh for c in ok)
    floor = reserve_floor_pct(cfg, op, capacity)
    for c in snap.clusters:
        w = plan.cluster_setpoints_w[c.id]
        if c not in ok:
            assert w == 0.0, (c, w)
            continue
        assert -max(c.max_charge_w.value, 0.0) - TOL <= w <= max(c.max_discharge_w.value, 0.0) + TOL
        if snap.grid_up and c.soc_pct.value <= floor:
            assert w <= 0.0, ("discharge below the reserve", c, floor, w)
        if c.soc_pct.value >= cfg.soc_max_pct:
            assert w >= 0.0, ("charge above soc_max", c, w)
    total = 0.0
    for p in snap.pcs:
        w = plan.pcs_setpoints_w[p.id]
        if not (p.trusted and math.isfinite(p.rated_w) and p.rated_w > 0):
            assert w == 0.0
        else:
            assert abs(w) <= p.rated_w + TOL
        behind = sum(plan.cluster_setpoints_w[c.id] for c in snap.clusters if c.pcs_id == p.id)
        assert abs(w - behind) <= TOL
        total += w
    assert abs(total - plan.site_setpoint_w) <= TOL
    gc = plan.grid_control
    if gc is not None:
        assert snap.grid_up and snap.grid_w.ok and snap.load_w.ok and snap.pv_w.ok
        assert 0.0 < gc.ramp_w_per_s <= cfg.ramp_limit_w_per_s
        assert gc.pcs, "grid control without a PCS to do it"
        assert abs(sum(lim.share for lim in gc.pcs.values()) - 1.0) <= 1e-9
        assert math.isfinite(gc.target_w) and math.isfinite(gc.grid_min_w)
        if not allow_export:
            assert gc.grid_min_w >= 0.0 and gc.target_w >= gc.grid_min_w - TOL, gc
        for pid, lim in gc.pcs.items():
            p = next(p for p in snap.pcs if p.id == pid)
            assert p.grid_control and p.trusted and math.isfinite(p.rated_w) and p.rated_w > 0
            assert 0.0 <= lim.share <= 1.0
            behind = [c for c in ok if c.pcs_id == pid]
            dis = sum(max(c.max_discharge_w.value, 0.0) for c in behind if c.soc_pct.value > floor)
            chg = sum(max(c.max_charge_w.value, 0.0) for c in behind if c.soc_pct.value < cfg.soc_max_pct)
            assert 0.0 <= lim.max_discharge_w <= min(dis, p.rated_w) + TOL, (lim, dis)
            assert 0.0 <= lim.max_charge_w <= min(chg, p.rated_w) + TOL, (lim, chg)
    if snap.grid_up and not allow_export:
        if snap.load_w.ok and snap.pv_w.ok:
            net = snap.load_w.value - snap.pv_w.value
            assert plan.site_setpoint_w <= net + TOL or "export_unavoidable" in plan.alarms
        else:
            assert plan.site_setpoint_w <= TOL


@settings(max_examples=400, deadline=None)
@given(
    site=sites(),
    cfg=configs,
    op=operators,
    loads=st.lists(
        st.tuples(
            measured(span(0, 8e6, 2e6, 5e6)),
            measured(span(0, 3e6, 0.0, 1e6)),
            st.sampled_from([True] * 4 + [False]),
        ),
        min_size=1,
        max_size=3,
    ),
    allow_export=st.booleans(),
    minute=st.integers(0, 24 * 60 - 1),
    peak=st.one_of(st.none(), st.floats(0, 8e6)),
)
def test_every_plan_honours_the_safety_contract(
    site: tuple[tuple[ClusterSnapshot, ...], tuple[PcsSnapshot, ...]],
    cfg: ControlConfig,
    op: OperatorState,
    loads: list[tuple[Measured, Measured, bool]],
    allow_export: bool,
    minute: int,
    peak: float | None,
) -> None:
    clusters, pcs = site
    t0 = datetime(2026, 7, 15, tzinfo=TZ) + timedelta(minutes=minute)
    state: ControllerState = initial_state(
        cfg, {40.8: peak} if peak is not None else None, (2026, 7) if peak is not None else None
    )
    for k, (load, pv, grid_up) in enumerate(loads):
        grid = Measured(load.value - pv.value) if load.ok and pv.ok else Measured.missing()
        snap = SiteSnapshot(k, 100.0 + k, t0 + timedelta(seconds=k), grid, load, pv, grid_up, clusters, pcs)
        plan, state = decide(snap, state, cfg, op, SHANGHAI, allow_export)
        check(plan, snap, cfg, op, allow_export)
