"""Each controller on its own: (Window, Cycle) -> Window, as tables of cases with exact results.

The Cycle is what decide() builds (begin_cycle) from a snapshot of the demo fleet: 12 clusters of
418 kWh / 209 kW, 3 behind each 630 kW PCS, so 2.508 MW each way and 5.016 MWh in all. The window
handed in is the device limits unless a case says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import pytest

from agent.control.balance import balance
from agent.control.begin import begin_cycle
from agent.control.cycle import Cycle
from agent.control.demand import demand
from agent.control.limits import device_limits
from agent.control.no_export import no_export
from agent.control.operator import operator
from agent.control.outage import outage
from agent.control.pv_surplus import pv_surplus
from agent.control.ramp import ramp
from agent.control.reserve import reserve
from agent.control.state import (
    ROLE_CHARGE,
    ROLE_DISCHARGE,
    ROLE_HOLD,
    ROLE_NONE,
    ControllerState,
    IntervalState,
    RampState,
    TouState,
)
from agent.control.tou import tou
from agent.control.window import AUTO, UNDECIDED, Window
from agent.model.config import ControlConfig
from agent.model.interval import local_slot
from agent.model.operator import OperatorState
from agent.model.snapshot import ClusterStatus, Measured
from tests.test_control_support import CFG, FLAT, NOON, SHANGHAI, TablePrices, fleet, snap

FULL_W = 12 * 209e3  # 2.508 MW: every cluster at its BMS limit, 627 kW per PCS under 630 kW
CAP_WH = 12 * 418e3
KEY = local_slot(NOON, 900.0)[0]
RATED = TablePrices(((0, 24, 0.5),), rate=40.8)  # one price all day, a demand charge


@dataclass
class Case:
    load: float = 3e6
    pv: float = 0.0
    soc: float = 50.0
    grid_up: bool = True
    allow_export: bool = False
    cfg: ControlConfig = CFG
    op: OperatorState = field(default_factory=OperatorState)
    prev: RampState = field(default_factory=lambda: RampState(t_mono=999.0, grid_w=math.nan))
    interval: IntervalState | None = None  # None: a fresh interval (planned this cycle)
    tou: TouState = field(default_factory=TouState)
    load_m: Measured | None = None
    clusters_offline: bool = False


def cycle(c: Case) -> Cycle:
    cl, pcs = fleet(soc=c.soc)
    if c.clusters_offline:
        cl = tuple(replace(x, status=ClusterStatus.OFFLINE) for x in cl)
    st = ControllerState(ramp=c.prev, interval=c.interval or IntervalState(), tou=c.tou)
    s = snap(c.load, c.pv, clusters=cl, pcs=pcs, grid_up=c.grid_up, load_m=c.load_m)
    prices = RATED if c.interval is not None else FLAT
    return begin_cycle(s, st, c.cfg, c.op, prices, c.allow_export, None, frozenset())


def window(c: Cycle) -> Window:
    return device_limits(c)


def auto(c: Cycle, target: float = math.nan, src: str = UNDECIDED) -> Window:
    return device_limits(c).decided(AUTO, target, src)


def edges(w: Window) -> tuple[float, float, str, str]:
    return (w.lo, w.hi, w.lo_src, w.hi_src)


# --- 1 device limits -----------------------------------------------------------------------------
def test_device_limits_are_the_trusted_fleet_capped_per_pcs() -> None:
    w = device_limits(cycle(Case()))
    assert edges(w) == (-FULL_W, FULL_W, "device_limits", "device_limits")
    assert [b.source for b in w.bounds] == ["device_limits"] and w.alarms == () and w.mode == AUTO
    none = device_limits(cycle(Case(clusters_offline=True)))
    assert edges(none)[:2] == (-0.0, 0.0) and none.alarms == ("no_battery_available",)


# --- 2 outage --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "lo", "target", "alarms", "bounds"),
    [
        (Case(grid_up=False, load=1e6), -FULL_W, 1e6, ("grid_outage_backup",), ["device_limits"]),
        (Case(grid_up=False, load=3e6), -FULL_W, 3e6, ("grid_outage_backup", "backup_shortfall"), ["device_limits"]),
        # full clusters take no charge; the reserve floor does not apply (it is there to be used)
        (Case(grid_up=False, load=1e6, soc=95.0), 0.0, 1e6, ("grid_outage_backup",), ["device_limits", "soc_max"]),
        (Case(grid_up=False, soc=15.0), -FULL_W, 3e6, ("grid_outage_backup", "backup_shortfall"), ["device_limits"]),
        # load unknown: what the battery gives now (the PCS read 0 W)
        (
            Case(grid_up=False, load_m=Measured.missing()),
            -FULL_W,
            0.0,
            ("grid_outage_backup", "measurement_invalid"),
            ["device_limits"],
        ),
    ],
)
def test_outage(case: Case, lo: float, target: float, alarms: tuple[str, ...], bounds: list[str]) -> None:
    c = cycle(case)
    w = outage(window(c), c)
    assert (w.mode, w.target, w.src, w.lo, w.hi) == ("outage", target, "outage", lo, FULL_W)
    assert w.alarms == alarms and [b.source for b in w.bounds] == bounds


def test_outage_leaves_a_grid_connected_cycle_alone() -> None:
    c = cycle(Case())
    w = window(c)
    assert outage(w, c) is w


# --- 3 reserve -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "expected", "alarms"),
    [
        (Case(soc=50.0), None, ()),
        (Case(soc=20.0), (-FULL_W, 0.0, "device_limits", "reserve"), ()),  # at the floor: no discharge
        (Case(soc=95.0), (0.0, FULL_W, "reserve", "device_limits"), ()),  # at the ceiling: no charge
        # 12 MW for an hour needs 12.5 MWh: the floor (20 % + 249 %) is above the ceiling
        (
            Case(soc=50.0, cfg=replace(CFG, reserve_load_w=12e6, reserve_minutes=60.0)),
            (-FULL_W, 0.0, "device_limits", "reserve"),
            ("reserve_exceeds_fleet",),
        ),
    ],
)
def test_reserve(case: Case, expected: tuple[float, float, str, str] | None, alarms: tuple[str, ...]) -> None:
    c = cycle(case)
    w0 = window(c)
    w = reserve(w0, c)
    if expected is None:
        assert w is w0
    else:
        assert edges(w) == expected and w.bounds[-1].source == "reserve"
    assert w.alarms == alarms


# --- 4 no export -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "hi", "hi_src", "alarms"),
    [
        (Case(load=1e6), 1e6, "no_export", ()),  # discharge at most the net load
        (Case(load=1e6, pv=1.3e6), -0.3e6, "no_export", ()),  # and charge at least the PV surplus
        (Case(load=1e6, pv=4e6), -FULL_W, "device_limits", ("export_unavoidable",)),  # beyond full charge
        (Case(load_m=Measured.missing()), 0.0, "no_export", ()),  # load unknown: no discharge
        (Case(load=3e6), FULL_W, "device_limits", ()),  # the net load is above what the fleet gives
        (Case(load=1e6, allow_export=True), FULL_W, "device_limits", ()),
    ],
)
def test_no_export(case: Case, hi: float, hi_src: str, alarms: tuple[str, ...]) -> None:
    c = cycle(case)
    w = no_export(window(c), c)
    assert (w.lo, w.hi, w.hi_src, w.alarms) == (-FULL_W, hi, hi_src, alarms)


# --- 5 ramp ----------------------------------------------------------------------------------------
# the plan moves the grid by 100 kW/s (0.5 x) when the load changes between readings (live), by
# 150 kW/s (0.75 x) in a replay of a trace sampled at the cycle (agent/control/ramp_reference.py)
LIMITED = replace(CFG, ramp_limit_w_per_s=200e3)
ALIGNED = replace(LIMITED, load_changes_at_readings=True)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        # the grid planned 3 MW a second ago and reads 4 MW now (the net load): the load rose at an
        # unknown instant of that second, so the meter averaged ~3.5 MW; the battery takes 0.5 MW +- 100 kW
        (Case(load=4e6, cfg=LIMITED, prev=RampState(t_mono=999.0, grid_w=3e6)), (400e3, 600e3, "ramp", "ramp")),
        # in a replay of a trace sampled at the cycle the load changed just now: 1 MW +- 150 kW
        (Case(load=4e6, cfg=ALIGNED, prev=RampState(t_mono=999.0, grid_w=3e6)), (850e3, 1150e3, "ramp", "ramp")),
        # two seconds: a step lands at once, so it counts one second at most: as above
        (Case(load=4e6, cfg=LIMITED, prev=RampState(t_mono=998.0, grid_w=3e6)), (400e3, 600e3, "ramp", "ramp")),
        # the window lies beyond full discharge (from ~4 MW, 2.9-3.1 MW): held at full discharge
        (
            Case(load=7e6, cfg=LIMITED, prev=RampState(t_mono=999.0, grid_w=1e6)),
            (FULL_W, FULL_W, "device_limits", "device_limits"),
        ),
        (Case(load=4e6, prev=RampState(t_mono=999.0, grid_w=3e6)), None),  # no limit
        # no plan to refer to, or a long gap: the measured grid (4 MW, the battery at 0 W), one second's
        # step at half the limit (the other half is left for the load within the next cycle)
        (Case(load=4e6, cfg=LIMITED), (-100e3, 100e3, "ramp", "ramp")),
        (Case(load=4e6, cfg=LIMITED, prev=RampState(t_mono=980.0, grid_w=3e6)), (-100e3, 100e3, "ramp", "ramp")),
        # the meters put the battery at 0 W where the plan said 1 MW (the PCS reverted): from the meters
        (
            Case(load=4e6, cfg=LIMITED, prev=RampState(t_mono=999.0, grid_w=3e6, battery_w=1e6)),
            (-100e3, 100e3, "ramp", "ramp"),
        ),
        # ... and within the 50 kW lag margin of the plan: from the plan (3.95 MW), moved halfway to the
        # meter's 4 MW by the share of the second it averaged: 3.975 MW +- 100 kW
        (
            Case(load=4e6, cfg=LIMITED, prev=RampState(t_mono=999.0, grid_w=3.95e6, battery_w=40e3)),
            (-75e3, 125e3, "ramp", "ramp"),
        ),
        # the load unknown: the battery's own change, from its measured output (the PCS read 0 W)
        (
            Case(load_m=Measured.missing(), cfg=LIMITED, prev=RampState(t_mono=999.0, grid_w=3e6, battery_w=1e6)),
            (-150e3, 150e3, "ramp", "ramp"),
        ),
    ],
)
def test_ramp(case: Case, expected: tuple[float, float, str, str] | None) -> None:
    c = cycle(case)
    w0 = window(c)
    w = ramp(w0, c)
    if expected is None:
        assert w is w0
    else:
        assert edges(w) == pytest.approx(expected) and w.bounds[-1].source == "ramp"


# --- 8 operator and the failsafe --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "mode", "target", "src", "alarms"),
    [
        (Case(), AUTO, math.nan, UNDECIDED, ()),
        (Case(load_m=Measured.missing()), "conservative", 0.0, "failsafe", ("measurement_invalid",)),
        (Case(op=OperatorState(override_w=-1e5, override_until=1001.0)), "manual", -1e5, "override", ()),
        (Case(op=OperatorState(override_w=-1e5, override_until=1000.0)), AUTO, math.nan, UNDECIDED, ()),  # expired
        (Case(op=OperatorState(mode="idle")), "idle", 0.0, "idle", ()),
        (Case(op=OperatorState(mode="conservative")), "conservative", 0.0, "conservative", ()),
        # a bad measurement outranks the operator
        (
            Case(load_m=Measured.missing(), op=OperatorState(mode="idle")),
            "conservative",
            0.0,
            "failsafe",
            ("measurement_invalid",),
        ),
    ],
)
def test_operator(case: Case, mode: str, target: float, src: str, alarms: tuple[str, ...]) -> None:
    c = cycle(case)
    w = operator(window(c), c)
    assert (w.mode, w.src, w.alarms) == (mode, src, alarms)
    assert w.target == target or (math.isnan(target) and math.isnan(w.target))


def test_operator_leaves_a_claimed_cycle_alone() -> None:
    c = cycle(Case(grid_up=False))
    w = outage(window(c), c)
    assert operator(w, c) is w


# --- 7 time of use ---------------------------------------------------------------------------------
def _tou_case(role: int, soc: float, *, raise_w: float = 0.0, keep_wh: float = 0.0, cfg: ControlConfig = CFG) -> Case:
    """A cycle inside an interval already planned: `role` until 1 h from now."""
    return Case(
        load=5e6,
        soc=soc,
        cfg=cfg,
        interval=IntervalState(key=KEY),
        tou=TouState(key=KEY, role=role, end_mono=1000.0 + 3600.0, raise_w=raise_w, keep_wh=keep_wh),
    )


HEADROOM = replace(CFG, ramp_limit_w_per_s=200e3, ramp_headroom_w=300e3)


@pytest.mark.parametrize(
    ("case", "target", "src"),
    [
        # 60 % above the 20 % floor of 5.016 MWh, 96 % out, over the hour left: 2,889,216 W
        (_tou_case(ROLE_DISCHARGE, 80.0), 0.6 * CAP_WH * 0.96, "tou_discharge"),
        # less what the rest of the day's shaving needs (1 MWh kept)
        (_tou_case(ROLE_DISCHARGE, 80.0, keep_wh=1e6), (0.6 * CAP_WH - 1e6) * 0.96, "tou_discharge"),
        # the 45 % missing to the 95 % ceiling, through 96 % in, within one 900 s interval
        (_tou_case(ROLE_CHARGE, 50.0), -0.45 * CAP_WH / 0.96 * 3600.0 / 900.0, "tou_charge"),
        # a raised demand target spreads the charge over the whole run instead
        (_tou_case(ROLE_CHARGE, 50.0, raise_w=1e5), -0.45 * CAP_WH / 0.96, "tou_charge"),
        (_tou_case(ROLE_HOLD, 50.0), 0.0, "tou_hold"),
        # ramp headroom: 300 kW of the fleet's 2.508 MW kept free each way
        (_tou_case(ROLE_DISCHARGE, 80.0, cfg=HEADROOM), FULL_W - 300e3, "tou_discharge"),
        (_tou_case(ROLE_CHARGE, 50.0, cfg=HEADROOM), -(FULL_W - 300e3), "tou_charge"),
    ],
)
def test_tou(case: Case, target: float, src: str) -> None:
    c = cycle(case)
    w = tou(auto(c), c)
    assert (w.mode, w.src) == (AUTO, src)
    assert w.target == pytest.approx(target, rel=1e-12)


def test_tou_without_a_role_or_outside_auto_does_nothing() -> None:
    c = cycle(_tou_case(ROLE_NONE, 50.0))
    w = auto(c)
    assert tou(w, c) is w
    c = cycle(_tou_case(ROLE_DISCHARGE, 80.0))
    w = window(c).decided("idle", 0.0, "idle")
    assert tou(w, c) is w


# --- 9 balance -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("soc", "target"),
    [(60.0, 0.1 * CAP_WH), (40.0, -0.1 * CAP_WH), (50.9, 0.0), (49.1, 0.0)],  # 1-h time constant, 1 % deadband
)
def test_balance(soc: float, target: float) -> None:
    c = cycle(Case(soc=soc))
    w = balance(auto(c), c)
    assert (w.src, w.target) == ("balance", pytest.approx(target))


def test_balance_leaves_a_target_alone() -> None:
    c = cycle(Case(soc=60.0))
    w = auto(c, 1e5, "tou_discharge")
    assert balance(w, c) is w


# --- PV surplus ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("case", "target_in", "src_in", "target", "src"),
    [
        (Case(load=1e6, pv=1.3e6, allow_export=True), 0.5e6, "tou_discharge", -0.3e6, "pv_surplus"),
        (Case(load=1e6, pv=1.3e6, allow_export=True), -0.5e6, "tou_charge", -0.5e6, "tou_charge"),  # charges more
        (Case(load=1e6), 0.5e6, "tou_discharge", 0.5e6, "tou_discharge"),  # no surplus
        (Case(load=1e6), math.nan, "balance", 0.0, "balance"),  # an unknown target holds
    ],
)
def test_pv_surplus(case: Case, target_in: float, src_in: str, target: float, src: str) -> None:
    c = cycle(case)
    w = pv_surplus(auto(c, target_in, src_in), c)
    assert (w.target, w.src) == (pytest.approx(target), src)


# --- 6 demand --------------------------------------------------------------------------------------
BILLED = IntervalState(key=KEY, rate=40.8, month=2026 * 12 + 6, peaks=((40.8, 4e6),))


@pytest.mark.parametrize(
    ("load", "lo"),
    [
        # the first second of the interval at 5 MW against a 4 MW billed peak (aim 1 % under): the
        # battery gives what keeps the interval's average at 3.96 MW, the second's excess spread
        # over the 900 s left
        (5e6, 5e6 - (3.96e6 - 1.04e6 / 900.0)),
        # 3 MW is under the target: charging only into the headroom, kept a further 2 % under it
        # (3.8808 MW), this second's credit spread over the 900 s left
        (3e6, 3e6 - (0.98 * 3.96e6 + (0.98 * 3.96e6 - 3e6) / 900.0)),
    ],
)
def test_demand(load: float, lo: float) -> None:
    c = cycle(Case(load=load, interval=BILLED, tou=TouState(key=KEY)))
    w = demand(auto(c, 0.0, "balance"), c)
    assert (w.lo, w.lo_src, w.hi) == (pytest.approx(lo), "demand", FULL_W)
    assert w.bounds[-1].source == "demand"


def test_demand_without_a_demand_charge_or_outside_auto_does_nothing() -> None:
    c = cycle(Case(load=5e6))  # FLAT: no demand rate
    w = auto(c, 0.0, "balance")
    assert demand(w, c) is w
    c = cycle(Case(load=5e6, interval=BILLED, tou=TouState(key=KEY)))
    w = window(c).decided("idle", 0.0, "idle")
    assert demand(w, c) is w


def test_shanghai_prices_plan_the_role_once_per_interval() -> None:
    # noon on the Shanghai tariff: the evening peak pays for charging now (a new interval is planned)
    cl, pcs = fleet()
    c = begin_cycle(
        snap(3e6, clusters=cl, pcs=pcs), ControllerState(), CFG, OperatorState(), SHANGHAI, False, None, frozenset()
    )
    assert (c.tou.key, c.tou.role, c.iv.key) == (KEY, ROLE_CHARGE, KEY)
