"""Cycle: what every controller may read in one cycle (built once by begin.begin_cycle).

The measurements as the policy trusts them, the fleet it may command (its reserve window already
applied), the reserve floor and SoC ceiling, the time since the last cycle, and the interval and
time-of-use state already advanced to this cycle. Read-only for the controllers: they hand back
a Window (window.py), never change this.
"""

from __future__ import annotations

from agent.control.fleet import Fleet
from agent.control.schedule import DispatchPlan
from agent.control.state import METER0, EdgeState, IntervalState, LimitState, MeterSecond, TouState
from agent.model.config import ControlConfig
from agent.model.operator import OperatorState
from agent.model.snapshot import SiteSnapshot


class Cycle:
    __slots__ = (
        "allow_export",
        "ceil",
        "cfg",
        "dt",
        "edge",
        "edge_caps_w",
        "fleet",
        "floor",
        "grid_w",
        "into",
        "iv",
        "iv_len",
        "length_s",
        "limit",
        "limit_wh",
        "meas_ok",
        "meter",
        "net",
        "net_ok",
        "now",
        "op",
        "pcc",
        "pcc_off",
        "plan_slot",
        "prev_battery_w",
        "prev_from_w",
        "prev_grid_w",
        "schedule",
        "slot",
        "snap",
        "tou",
        "weight_floor",
    )

    def __init__(
        self,
        *,
        snap: SiteSnapshot,
        cfg: ControlConfig,
        op: OperatorState,
        allow_export: bool,
        fleet: Fleet,
        now: float,
        dt: float,
        grid_w: float,
        net: float,
        net_ok: bool,
        meas_ok: bool,
        floor: float,
        ceil: float,
        weight_floor: float,
        pcc: set[str] | None,
        pcc_off: frozenset[str],
        prev_grid_w: float,
        prev_battery_w: float,
        prev_from_w: float,
        iv: IntervalState,
        tou: TouState,
        slot: int,
        into: float,
        iv_len: float,
        length_s: float,
        schedule: DispatchPlan | None = None,
        plan_slot: int = -1,
        limit: LimitState | None = None,
        limit_wh: float = 0.0,
        edge: EdgeState | None = None,
        meter: MeterSecond = METER0,
    ) -> None:
        self.snap = snap
        self.cfg = cfg
        self.op = op
        self.allow_export = allow_export
        self.fleet = fleet  # trusted clusters and PCS, the reserve window applied (outage: SoC ceiling only)
        self.now = now  # monotonic time of this cycle
        self.dt = dt  # s since the previous cycle (NaN: none)
        self.grid_w = grid_w  # grid meter reading (W, import positive; may be NaN)
        self.net = net  # load - pv (NaN unless both are good)
        self.net_ok = net_ok
        self.meas_ok = meas_ok  # grid, load and PV all good
        self.floor = floor  # reserve SoC floor, % of the trusted fleet
        self.ceil = ceil  # SoC ceiling, %
        self.weight_floor = weight_floor  # the floor dispatch weights count from (outage: soc_min_pct)
        self.pcc = pcc  # PCS the ramp support is delegated to (grid-power control); None: none
        self.pcc_off = pcc_off  # PCS configured for grid-power control but held to setpoints (latched)
        self.prev_grid_w = prev_grid_w  # grid import the previous cycle planned (ramp reference)
        self.prev_battery_w = prev_battery_w  # battery power the previous cycle planned (NaN: none)
        self.prev_from_w = prev_from_w  # ... and the cycle before it (the PCS moves from there: NaN none)
        self.iv = iv  # the demand interval, advanced to this cycle
        self.tou = tou  # the time-of-use plan for this interval
        self.slot = slot  # the interval's slot of the day
        self.into = into  # s into the interval
        self.iv_len = iv_len  # its length (the last of the day may be short)
        self.length_s = length_s  # [control] demand_interval_s
        self.schedule = schedule  # the dispatch plan to track (None: the heuristic controllers decide)
        self.plan_slot = plan_slot  # its slot holding this cycle (-1: none, the plan does not cover now)
        self.limit = limit if limit is not None else LimitState()  # the grid limit's energy bookkeeping
        self.limit_wh = limit_wh  # stored energy (Wh above the floor) kept for the grid limit (limit_reserve)
        self.edge = edge if edge is not None else EdgeState()  # the fleet's device limits the previous cycle
        self.meter = meter  # the grid readings of the meter's running second, this one's included
        # the energy-aware edges' (charge cap, discharge cap), worked out on first use (edges.edge_caps):
        # the one thing a controller writes here, a cache of a pure function of the rest
        self.edge_caps_w: tuple[float, float] | None = None
