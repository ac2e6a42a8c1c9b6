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

from dataclasses import replace

from agent.campus.allocate import FeederState, Share
from agent.control.fleet import build_fleet
from agent.control.reserve import reserve_floor_pct
from agent.model.config import ControlConfig
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
    """`cfg` with the campus share as its grid import limit, ramp limit and demand target, and the
    campus's keep for that target (AC Wh in the share, stored Wh here) where the coordinator sent one
    and the share is the demand target in force (the keep is planned against it). With the campus's
    target in force, `campus_target`: the agent's own charge raise stays at or under its share
    (demand.py), because the feeders' raises, each up to its own feeder's billed peak or last-day
    top, add up above the campus target where the pooled controller's, capped by the campus's own
    levels, do not (measured: 161 intervals over T, all charging in the valley, BENCHMARKS.md)."""
    target = _tighter(cfg.demand_target_w, share.demand_target_w)
    campus = share.demand_target_w > 0.0 and target == share.demand_target_w  # the campus's target holds
    keep = share.keep_wh / cfg.discharge_efficiency if campus and share.keep_wh >= 0.0 else -1.0
    return replace(
        cfg,
        grid_import_limit_w=_tighter(cfg.grid_import_limit_w, share.import_cap_w),
        ramp_limit_w_per_s=_tighter(cfg.ramp_limit_w_per_s, share.ramp_w_per_s),
        demand_target_w=target,
        campus_keep_wh=keep,
        campus_target=campus,
    )


def feeder_state(
    site_id: str, snap: SiteSnapshot, cfg: ControlConfig, op: OperatorState, *, interval_wh: float = 0.0
) -> FeederState:
    """This cycle's campus report: net load, grid import, and the battery power and energy the
    coordinator may count on (trusted clusters, the operator's maintenance and derate, above the
    backup reserve floor and below the SoC ceiling: what the site's own bounds leave). `fresh` is
    False when a grid, load or PV measurement is not good (the coordinator then uses the fallback).
    `interval_wh`: the import its demand controller counted so far this demand interval (the
    coordinator splits the campus's interval energy: agent.campus.allocate.split_demand)."""
    good = all(m.quality is Quality.GOOD for m in (snap.grid_w, snap.load_w, snap.pv_w)) and snap.grid_up
    f = build_fleet(snap, op.maintenance, None, op.derate)
    floor = reserve_floor_pct(cfg, op, f.capacity_wh)
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
    )
