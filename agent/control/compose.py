"""decide(): one control cycle. Controllers narrow the window of site battery power by priority.

  1 device limits (1b operator derate, 1c maintenance)   2 grid-outage backup
  3 backup reserve / SoC window (3b ramping out before its edges)
  4 no export (4b grid connection limit)   5 ramp support (and the PCC latch)
  8 operator (override, idle, conservative) and the measurement failsafe
  7 time-of-use   9 balancing   PV surplus   4c recharging the grid limit's reserve   6 demand shaving
  or, while a dispatch plan covers the cycle (`schedule`): 6p plan tracking (track.py), PV surplus

Each controller is a pure function in its own module: (Window, Cycle) -> Window (window.py,
cycle.py). It hands back the window it got when it has nothing to do, or a narrower one with the
Bound that says why, or claims the cycle (mode and target). Bounds 1-5 are safety and grid support:
nothing below can widen them. The operator's wish sits below them and above the economic
controllers, which run only in mode "auto"; demand shaving, applied last, is a bound under the
economic target. The final setpoint is the deciding controller's target clamped into the window;
`decided_by` names the controller whose target, or whose bound, set it. Plan.bounds holds the
device limits and then every bound that narrowed the window this cycle, in priority order.
A new controller (a planner, a grid connection limit) is a new module and one line in `_safety`
or `_controllers` at its priority. The sub-second fast lane (fast.py) is handed the window the
safety bounds leave (Plan.fast_window), never more.

Ramp support in grid-power (PCC) control: see pcc.py. Failsafe: a grid, load or PV measurement that
is not good puts the policy in conservative mode (operator.py); untrusted clusters and PCS are
simply absent from the fleet (fleet.py).

Pure: a function of (snapshot, state, config, operator state, prices); no I/O, no clock.
"""

from __future__ import annotations

import math
from typing import Final

from agent.control.balance import balance
from agent.control.begin import begin_cycle, finite
from agent.control.cycle import Cycle
from agent.control.demand import demand
from agent.control.derate import allowed_limits_w, derate
from agent.control.dispatch import dispatch_fleet
from agent.control.edges import edge_state, edges, step_cause
from agent.control.fast import fast_window
from agent.control.fleet import FleetMemo
from agent.control.grid_limit import grid_limit, limit_recharge
from agent.control.limits import device_limits
from agent.control.maintenance import maintenance
from agent.control.no_export import no_export
from agent.control.operator import operator
from agent.control.outage import outage
from agent.control.pcc import grid_control
from agent.control.prices import Prices
from agent.control.pv_surplus import pv_surplus
from agent.control.ramp import ramp
from agent.control.reserve import reserve
from agent.control.schedule import DispatchPlan
from agent.control.state import ControllerState, RampState
from agent.control.tou import tou
from agent.control.track import track
from agent.control.window import Window
from agent.model.config import ControlConfig
from agent.model.operator import OperatorState
from agent.model.plan import Plan
from agent.model.snapshot import SiteSnapshot

NAN: Final = math.nan

REASONS = {
    "device_limits": "at the limit of what the trusted clusters and PCS can do",
    "derate": "at the limit an operator derated a cluster (and with it its PCS) to",
    "soc_max": "clusters are full (soc_max_pct)",
    "reserve": "held by the backup reserve (SoC floor) or the SoC ceiling",
    "edges": "ramping out at the ramp limit before the SoC floor or ceiling",
    "no_export": "limited so the site does not export to the grid",
    "grid_import_limit": "holding the grid import at or below the grid connection limit (grid_import_limit_w)",
    "limit_recharge": "recharging the energy the grid connection limit needs (its reserve)",
    "ramp": "smoothing the grid import within the ramp limit while the load swings",
    "outage": "grid outage: the battery carries the site load",
    "failsafe": "a grid, load or PV measurement is bad: holding (conservative)",
    "override": "operator override",
    "idle": "operator set mode idle",
    "conservative": "operator set mode conservative: holding within the reserve",
    "demand": "holding the demand-interval average import at or below the target",
    "tou_charge": "charging in a cheap price period",
    "tou_discharge": "discharging in an expensive price period",
    "tou_hold": "holding the charge for a dearer price period",
    "pv_surplus": "storing PV surplus",
    "balance": "drifting toward the SoC target",
    "plan": "following the dispatch plan",
    "plan_cap": "holding the demand-interval import at or below the dispatch plan's cap",
}


def _safety(w: Window, c: Cycle) -> Window:
    """The bounds on the battery itself (1b-3b) in priority order, one line each. Direct calls rather
    than a loop over a list of functions: the compiled build makes these native C calls, where a call
    through a list goes through Python's calling convention, 2.6 M times a month's replay, for every
    controller. What they leave is the battery window the fast lane may move in (fast.py); the grid
    bounds below it (4, 4b) it applies as a grid floor and ceiling to the load it reads itself."""
    w = derate(w, c)  # 1b
    w = maintenance(w, c)  # 1c
    w = outage(w, c)  # 2
    w = reserve(w, c)  # 3
    return edges(w, c)  # 3b energy-aware edges


def _controllers(w: Window, c: Cycle) -> Window:
    """The controllers below those, in priority order (direct calls: see _safety)."""
    w = no_export(w, c)  # 4
    w = grid_limit(w, c)  # 4b hard grid connection limit
    w = ramp(w, c)  # 5
    w = operator(w, c)  # 8 and the failsafe
    if c.plan_slot >= 0:  # a dispatch plan covers now: it replaces the heuristic economics
        w = track(w, c)  # 6p
        w = pv_surplus(w, c)
        # the grid limit's reserve before the plan's economics, as below; the plan's interval cap
        # (track's bound) holds its charge as demand shaving does there
        return limit_recharge(w, c)  # 4c
    w = tou(w, c)  # 7
    w = balance(w, c)  # 9
    w = pv_surplus(w, c)
    w = limit_recharge(w, c)  # 4c the grid limit's reserve, ahead of the economics' target
    w = demand(w, c)  # 6
    return w


def decide(
    snap: SiteSnapshot,
    st: ControllerState,
    cfg: ControlConfig,
    op: OperatorState,
    prices: Prices | None,
    allow_export: bool,
    fleet_memo: FleetMemo | None = None,
    pcc_off: frozenset[str] = frozenset(),
    schedule: DispatchPlan | None = None,
) -> tuple[Plan, ControllerState]:
    """One cycle's plan and the state for the next. `fleet_memo`: see FleetMemo (the replay's).

    Policy inputs besides the measurements: the operator's (`op`: mode, override, reserve,
    maintenance, derate) and `pcc_off`, PCS configured for grid-power (PCC) control that follow
    setpoints instead (agent/live/pcc_watch.py latched them: their meter disagrees with the site's).
    `schedule`: a usable dispatch plan (planner.py, schedule.usable) or None; while it covers the
    cycle, plan tracking replaces time-of-use, balancing and demand shaving.
    """
    c = begin_cycle(snap, st, cfg, op, prices, allow_export, fleet_memo, pcc_off, schedule)
    safe = _safety(device_limits(c), c)
    w = _controllers(safe, c)

    final, by = w.target, w.src
    if final > w.hi:
        final, by = w.hi, w.hi_src
    elif final < w.lo:
        final, by = w.lo, w.lo_src
    d = dispatch_fleet(final, snap, c.fleet, c.weight_floor, c.ceil)
    alarms = w.alarms
    net_ok, net = c.net_ok, c.net
    short_of_surplus = not allow_export and net_ok and snap.grid_up and d.achieved_w > net + 1e-6
    if short_of_surplus and "export_unavoidable" not in alarms:
        alarms += ("export_unavoidable",)  # what the clusters can take in falls short of the PV surplus
    new_grid = net - d.achieved_w if net_ok and snap.grid_up else NAN
    fast = fast_window(c, safe, w.mode, d.pcs_w, new_grid)
    gc = grid_control(c, new_grid, w.mode)
    if gc is not None:
        new_grid = c.grid_w  # the ramp reference should the agent take the ramp back: where the grid is
    plan = Plan(
        seq=snap.seq,
        mode=w.mode,
        site_setpoint_w=d.achieved_w,
        requested_w=final,
        decided_by=by,
        reason=REASONS[by],
        bounds=w.bounds,
        pcs_setpoints_w=d.pcs_w,
        cluster_setpoints_w=d.cluster_w,
        shortfall_w=d.shortfall_w,
        alarms=alarms,
        grid_control=gc,
        allowed_limits_w=allowed_limits_w(c),
        fast_window=fast,
        step_cause=step_cause(w.bounds),
    )
    now = snap.t_mono
    return plan, ControllerState(
        ramp=RampState(
            t_mono=now if finite(now) else NAN,
            grid_w=new_grid,
            battery_w=d.achieved_w,
            from_w=c.prev_battery_w,
            meter=c.meter,
            pcs_w=d.pcs_w,
            cluster_w=d.cluster_w,
            net_w=c.net,
        ),
        interval=c.iv,
        tou=c.tou,
        limit=c.limit,
        edge=edge_state(c),
    )
