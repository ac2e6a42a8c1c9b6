"""A campus share applied through the existing controllers, and the report a feeder sends for it.

The coordinator (agent/campus) gives each feeder a share of the campus's import cap, ramp limit and
demand target. The agent does not run a new policy for it: the share becomes this cycle's
`grid_import_limit_w` (controller 4b), `ramp_limit_w_per_s` (5) and `demand_target_w` (6) of the
ControlConfig decide() gets, so device limits, outage backup, the reserve and no export keep
their priority above it, and the fast lane's window follows it (it is built from the same config).

A share narrows, never widens: where the site file sets a limit of its own (a feeder transformer,
the site's contract) the tighter of the two holds. A share of 0 is "off" at the campus (as 0 is
in ControlConfig), so the site's own value stays.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime

from agent.campus.allocate import FeederState, Share
from agent.control.demand import FORECAST_PRIOR_S, rest_net_w, steady_net_w
from agent.control.fleet import build_fleet
from agent.control.reserve import reserve_floor_pct
from agent.control.state import ROLE_CHARGE, ControllerState, IntervalState
from agent.model.config import CampusPart, ControlConfig
from agent.model.interval import local_slot
from agent.model.operator import OperatorState
from agent.model.snapshot import SiteSnapshot
from drivers.reading import Quality


def _tighter(own: float, share: float) -> float:
    """The tighter of two limits where 0 means none."""
    if share <= 0.0:
        return own
    if own <= 0.0:
        return share
    return own if own < share else share


def with_share(cfg: ControlConfig, share: Share) -> ControlConfig:
    """`cfg` with the campus share as its grid import limit, ramp limit and demand target. Where the
    share is the demand target in force (the campus's, not a tighter one of the site's own), the
    coordinator's demand decisions for the campus come with it as `campus` (config.CampusPart: the
    keep in stored Wh here, AC Wh in the share; whether the campus recharges now; this feeder's part
    of the campus's demand bound); else
    `campus` is None and the agent decides as a site alone."""
    target = _tighter(cfg.demand_target_w, share.demand_target_w)
    part = None
    if share.demand_target_w > 0.0 and target == share.demand_target_w:  # the campus's target holds
        keep = share.keep_wh / cfg.discharge_efficiency if share.keep_wh >= 0.0 else -1.0
        part = CampusPart(
            keep_wh=keep, recharge=share.recharge, demand_w=share.demand_w, at_net_w=share.at_net_w, room_w=share.room_w
        )
    return replace(
        cfg,
        grid_import_limit_w=_tighter(cfg.grid_import_limit_w, share.import_cap_w),
        ramp_limit_w_per_s=_tighter(cfg.ramp_limit_w_per_s, share.ramp_w_per_s),
        demand_target_w=target,
        campus=part,
    )


def demand_forecast_w(iv: IntervalState, slot: int, net_w: float, dt_s: float, left_s: float) -> float:
    """What this agent's demand controller will forecast for the rest of the running interval at its
    next cycle, `dt_s` on with `left_s` of the interval then left, if the load stays at `net_w`: the
    interval's average (demand.interval_net_forecast_w: the interval so far, the reading for the cycle
    it stands for, the last interval's average for the rest of FORECAST_PRIOR_S), the reading weighing
    more as the rest shrinks (demand.rest_net_forecast_w). The load the coordinator splits the demand
    target on (allocate.as_forecast)."""
    now_s = min(max(dt_s, 0.0), FORECAST_PRIOR_S)
    return rest_net_w(steady_net_w(iv.net_ws, iv.covered_s, iv.profile, slot, net_w, now_s), net_w, dt_s, left_s)


def report_forecast_w(st: ControllerState, net_w: float, next_wall: datetime, dt_s: float, length_s: float) -> float:
    """The forecast an agent reports (demand_forecast_w) for its next cycle at local time `next_wall`,
    `dt_s` after this one, from its controller state `st` after this cycle. Where that
    cycle opens the next demand interval: nothing of it is counted yet, and the agent's controller
    will take the interval now running, closed, as its prior (demand.interval_net_forecast_w). The
    reading alone where that is not known.

    Reporting the reading alone there (16f), the campus's first cycle of every interval was bounded on
    one reading of a swinging load: on the hand-made campus of tests/test_campus_no_harm.py it
    discharged 350 kW at a high reading and spent the credit charging back, the interval ending above
    its aim where the feeders then sat at their floor."""
    iv = st.interval
    key, slot, into, iv_len = local_slot(next_wall, length_s)
    n = len(iv.profile)
    if key == iv.key and n:
        return demand_forecast_w(iv, iv.key % n, net_w, dt_s, iv_len - into)
    if key != iv.key + 1 or not n or not iv.covered_s > 0.0 or not 0 <= slot < n:
        return net_w
    prof = list(iv.profile)
    prof[(slot - 1) % n] = iv.net_ws / iv.covered_s  # the interval closing now, as the controller books it
    return demand_forecast_w(IntervalState(key=key, profile=tuple(prof)), slot, net_w, dt_s, iv_len - into)


def report_raise_w(st: ControllerState) -> float:
    """The charge raise the agent's time-of-use plan priced for this interval (0: none, or not charging)."""
    return st.tou.raise_w if st.tou.role == ROLE_CHARGE else 0.0


def feeder_state(
    site_id: str,
    snap: SiteSnapshot,
    cfg: ControlConfig,
    op: OperatorState,
    *,
    interval_wh: float = 0.0,
    forecast_w: float = math.nan,
    raise_w: float = 0.0,
    spread: float = math.nan,
    battery_w: float = math.nan,
) -> FeederState:
    """This cycle's campus report: net load, grid import, and the battery power and energy the
    coordinator may count on (trusted clusters, the operator's maintenance and derate, above the
    backup reserve floor and below the SoC ceiling: what the site's own bounds leave). `fresh` is
    False when a grid, load or PV measurement is not good (the coordinator then uses the fallback).
    `interval_wh`: the import its demand controller counted so far this demand interval (the
    coordinator splits the campus's interval energy: agent.campus.allocate.split_demand).
    `forecast_w`: its demand controller's forecast of the rest of the interval (demand_forecast_w;
    NaN: not known, the coordinator splits on `net_load_w`); `raise_w`: the charge raise its
    time-of-use plan priced for this interval (0: none); `spread`: the round trip's value its price
    plan priced (TouState.spread, NaN: not known). With the usable window's energy from full and the
    discharge power with no window applied, what the campus's economic levels are sized on, as the
    site's own are (begin.py; agent/campus/levels.py). `battery_w`: the battery power this cycle
    commanded (discharge positive; NaN: not known): in flight when the coordinator answers
    (agent.campus.allocate.in_flight)."""
    good = all(m.quality is Quality.GOOD for m in (snap.grid_w, snap.load_w, snap.pv_w)) and snap.grid_up
    f = build_fleet(snap, op.maintenance, None, op.derate)
    floor = reserve_floor_pct(cfg, op, f.capacity_wh)
    budget = max(0.0, cfg.soc_max_pct - floor) * 0.01 * f.capacity_wh * cfg.discharge_efficiency
    power = f.max_dis_w  # before the window (apply_window leaves it)
    f.apply_window(floor, cfg.soc_max_pct)
    energy = 0.0
    for i in range(len(f.ids)):
        if f.dis[i] > 0.0 and f.soc[i] > floor:
            energy += (f.soc[i] - floor) * 0.01 * f.cap[i] * cfg.discharge_efficiency
    return FeederState(
        site_id,
        net_load_w=snap.load_w.value - snap.pv_w.value,
        grid_w=snap.grid_w.value,
        discharge_w=f.dis_w,
        charge_w=f.chg_w,
        energy_wh=energy,
        fresh=good,
        interval_wh=interval_wh,
        forecast_w=forecast_w,
        raise_w=raise_w,
        budget_wh=budget,
        power_w=power,
        spread=spread,
        battery_w=battery_w,
        round_trip=cfg.charge_efficiency * cfg.discharge_efficiency,
        wear_per_kwh=cfg.degradation_cost_per_kwh,
    )


def report_interval_wh(st: ControllerState, t_wall: datetime, length_s: float, grid_w: float) -> float:
    """What the feeder imported so far this demand interval, for the campus report: the import its
    demand controller counted, plus the part of the interval it did not count (it started, or lost
    its readings, mid-interval) at its import now.

    The coordinator counts the whole elapsed interval as the feeders' reports (bound.campus_bound_w,
    allocate.split_demand): an uncounted part read as nothing imported, so a campus whose agents
    started mid-interval was sent charge room while its meter ran 0.5 MW over the target (the live
    demand test's first interval: 3.13 MW against 2.6 MW). The site's own rule counts that part at
    the target; the report has no target of its own, and the import now is what the feeder drew
    unshaved (no agent was running it)."""
    iv = st.interval
    key, _, into, _ = local_slot(t_wall, length_s)
    counted = iv.grid_ws / 3600.0
    if key != iv.key or not math.isfinite(grid_w):
        return counted
    missing = into - iv.covered_s
    return counted + missing * grid_w / 3600.0 if missing > 0.0 and grid_w > 0.0 else counted
