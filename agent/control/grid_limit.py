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
limit_recharge, after the economic controllers, recharges it whenever the fleet holds less, under
demand shaving's bound; at the reserve floor, in a billed interval the load reaches, it takes back
no more than the interval has given (floor_charge_w), so holding the limit never bills a demand
window above no battery.
"""

from __future__ import annotations

import math
from typing import Final

from agent.control.cycle import Cycle
from agent.control.demand import CHARGE_MARGIN
from agent.control.limit_reserve import short_of_reserve
from agent.control.stored import energy_above_floor_j, stored_above_floor_wh
from agent.control.window import AUTO, Window
from agent.model.plan import Bound

SOURCE: Final = "grid_import_limit"
RECHARGE: Final = "limit_recharge"
INF: Final = math.inf
NAN: Final = math.nan


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
    demand shaving's, applied after this (the interval's import under the demand target). At the
    floor, in a billed interval the load reaches, no more than the interval has given (floor_charge_w)."""
    if w.mode != AUTO or not c.snap.grid_up or not short_of_reserve(c):
        return w
    cap = floor_charge_w(c)
    if -cap > w.lo:
        lo = -cap if -cap < w.hi else w.hi
        why = (
            f"at the reserve floor in a demand interval billed at {c.iv.rate:g} that the load reaches:"
            f" charging at most the {cap:.0f} W the interval has given"
        )
        w = w.bound(lo, w.hi, RECHARGE, w.hi_src, Bound(RECHARGE, lo, w.hi, why))
    target = -c.fleet.chg_w
    if w.target <= target:  # already charging at least as fast (NaN compares False)
        return w
    return w.decided(AUTO, target, RECHARGE)


def floor_charge_w(c: Cycle) -> float:
    """The most the battery may charge this cycle (W; inf: no bound of this one's) while the fleet
    holds nothing above the reserve floor, in a demand interval that is billed and whose slot the
    load has reached the charging level in over the last days (its envelope, envelope.py): what
    the battery has given in the interval so far, over a cycle as long as the last.

    Demand shaving lets charging take the room under the interval's target because shaving gives
    the charge back should the load rise later in the interval. Short of the limit's reserve it may
    not (demand.py), and at the floor it could not: a charge there first tops up clusters read below
    the floor and the register step at it (0.1 % of SoC, 5 kWh on 12 clusters), which the battery
    does not give back with the grid up. Taken in a dip of a load that stays above the limit, it
    stays in the interval's average: train200 on PG&E E-20 with the limit 20 % under the peak
    charged 882 kW-min at 18:05-18:07 on its last day, gave back 353 and billed the summer part-peak
    35 kW over no battery. The battery's net energy over the interval never below 0 keeps the
    interval's import at or below the load's, so no window bills above no battery by it; what that
    costs the limit is the round trips at the floor, with no energy above it (BENCHMARKS.md, issue-14g)."""
    iv = c.iv
    if not iv.rate > 0.0 or stored_above_floor_wh(c) > 0.0:
        return INF
    level = iv.shave_floor_w * (1.0 - CHARGE_MARGIN)  # where demand shaving stops charging (inf: none)
    if slot_envelope_w(iv.profile, iv.past, c.slot) < level:  # NaN (not known) compares False: bounded
        return INF
    given_ws = iv.net_ws - iv.grid_ws  # the battery's discharge booked in the interval, net of charge
    dt = c.dt if c.dt > 0.0 else 1.0  # NaN compares False
    return given_ws / dt if given_ws > 0.0 else 0.0


def slot_envelope_w(profile: tuple[float, ...], past: tuple[float, ...], slot: int) -> float:
    """The highest baseline average of `slot` in the day profile and the last days' ring (envelope.py:
    one entry per slot of the day, day after day); NaN when none is known. One slot of
    envelope.envelope, every cycle without building the whole day's."""
    n = len(profile)
    top = profile[slot] if 0 <= slot < n else NAN
    if n > 0 and len(past) % n == 0:
        for k in range(slot, len(past), n):
            v = past[k]
            if v > top or (top != top and v == v):  # NaN compares False
                top = v
    return top
