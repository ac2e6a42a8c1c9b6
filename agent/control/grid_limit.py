"""Hard grid connection limit (controller 4b, right below safety): the grid import stays at or below
[control] grid_import_limit_w (the transformer's or the contract's capacity) every cycle while the
battery can carry the excess.

grid = net - battery, so the battery must give at least net - limit (or, below the limit, may charge
at most limit - net). Above the economic controllers and the ramp: a ramp that would take the grid
over the connection yields to it (the ramp bound names this one). When the window above (device
limits, reserve, its ramp-out edges, no export) leaves less than that, the battery gives all it may
and the alarm "grid_import_limit" is raised; its bound's reason says by how much, and how long the
energy above the reserve floor lasts at the present draw.

The energy it needs (limit_reserve.py) is kept out of arbitrage and demand shaving, and
limit_recharge, after the economic controllers, recharges it whenever the fleet holds less.
"""

from __future__ import annotations

from typing import Final

from agent.control.cycle import Cycle
from agent.control.limit_reserve import short_of_reserve
from agent.control.stored import energy_above_floor_j
from agent.control.window import AUTO, Window
from agent.model.plan import Bound

SOURCE: Final = "grid_import_limit"
RECHARGE: Final = "limit_recharge"


def grid_limit(w: Window, c: Cycle) -> Window:
    limit = c.cfg.grid_import_limit_w
    if limit <= 0.0 or not c.snap.grid_up or not c.net_ok:
        return w
    need = c.net - limit  # the least battery power that keeps the import at the limit
    lo, hi = w.lo, w.hi
    if need <= lo:
        return w
    if need <= hi:
        why = f"grid import held at or below {limit:.0f} W"
        if need > 0.0:
            why += f": the battery carries {need:.0f} W, {energy_above_floor_j(c) / need:.0f} s left at this draw"
        return w.bound(need, hi, SOURCE, w.hi_src, Bound(SOURCE, need, hi, why))
    left = energy_above_floor_j(c) / hi if hi > 0.0 else 0.0
    why = (
        f"grid import {c.net - hi:.0f} W, {need - hi:.0f} W over grid_import_limit_w {limit:.0f} W: the battery"
        f" gives all it may ({hi:.0f} W, limited by {w.hi_src}), {left:.0f} s left at this draw"
    )
    return w.bound(hi, hi, w.hi_src, w.hi_src, Bound(SOURCE, hi, hi, why), "grid_import_limit")


def limit_recharge(w: Window, c: Cycle) -> Window:
    """Below the limit's reserve, charge (auto mode, after the economic controllers): as fast as the
    fleet may, inside the bounds above (the grid limit keeps the import at or below it), and under
    demand shaving's, applied after this (the interval's import under the demand target)."""
    if w.mode != AUTO or not c.snap.grid_up or not short_of_reserve(c):
        return w
    target = -c.fleet.chg_w
    if w.target <= target:  # already charging at least as fast (NaN compares False)
        return w
    return w.decided(AUTO, target, RECHARGE)
