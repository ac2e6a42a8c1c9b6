"""Ramp support delegated to the PCS in grid-power (PCC) control: the plan as a grid import target.

When trusted PCS are configured for it (PcsSnapshot.grid_control) and the measurements are good,
the ramp controller records the delegation instead of bounding the window; the plan's battery power
becomes a grid import target (Plan.grid_control) that those PCS approach on their own meter, each
with its share of the correction and its own window (device limits within the reserve window, per
cluster, capped by its rating, and scaled down to the energy-aware edges' caps near the floor or
ceiling: edges.py), and a grid floor of 0 W when the site may not export. A bad measurement or an
outage hands every PCS back its setpoint.

How fast their reference moves toward the target (`reference_ramp`): at PCC_RAMP_FRACTION of the
limit times the share of their window the battery now spends off the plan. The grid's change in a
second is the reference's slope plus the PCS loop's own tracking error, the loop's response time
times the load's slew (agent/offline/pcc_loop.py), which 1,000-node training swings (3.3 MW/s) take
to 150-170 kW of a 200 kW/s limit; and a reference that chases swings the battery could hold sits
near one end of them, so the battery covers the whole swing one way and meets its power limit. The
reference therefore moves only as fast as the battery's use of its power asks: at the full ramp
when the battery is at its window (the grid must take the load over), barely when it holds the
swings with power to spare (in mode auto: an operator's override or idle is handed over at the
full ramp within what the meter's running second has left of its ramp budget, a grid above the
connection limit at the full ramp). For a lasting change D (the
grid's distance from the target) the reference closes in with the time constant window / ramp,
taking at most window^2 / ramp of energy off the plan, twice what the full ramp from the window's
edge would (bench/ramp_bench.py, BENCHMARKS.md "Issue 14: PCC at 1,000 nodes").
"""

from __future__ import annotations

from typing import Final

from agent.control.cycle import Cycle
from agent.control.dispatch import pcs_shares
from agent.control.edges import edge_caps
from agent.control.ramp import PCC_NO_FLOOR_W, PCC_RAMP_FRACTION
from agent.control.ramp_reference import second_budget_w
from agent.control.window import AUTO
from agent.model.plan import GridControl, PccLimits

# The slowest ramp handed to a PCS: the step of the bundled ACME register (kW x 10 per s), so what is
# written never rounds to 0, which a PCS may take for "no ramp limit".
PCC_MIN_RAMP_W_PER_S: Final = 100.0


def grid_control(c: Cycle, grid_w: float, mode: str = AUTO) -> GridControl | None:
    """The grid-power command for planned grid import `grid_w` in the plan's `mode`; None when no
    PCS takes one."""
    pcc = c.pcc
    if not c.snap.grid_up or not pcc:
        return None
    f = c.fleet
    shares = pcs_shares(f, c.weight_floor, c.ceil, pcc)
    # the energy-aware edges (edges.py), as a share of the fleet's windows: the output ramps out
    kd = kc = 1.0
    if c.cfg.ramp_limit_w_per_s > 0.0:
        lo_cap, hi_cap = edge_caps(c)
        kd = min(1.0, max(0.0, hi_cap) / f.dis_w) if f.dis_w > 0.0 else 1.0
        kc = min(1.0, max(0.0, -lo_cap) / f.chg_w) if f.chg_w > 0.0 else 1.0
    lim: dict[str, PccLimits] = {}
    for j, pid in enumerate(f.pcs_ids):
        if pid in shares:
            sd, sc = f.pcs_window_w(j)
            lim[pid] = PccLimits(shares[pid], sd * kd, sc * kc)
    # No export is the grid floor (the target is >= 0 then, as the plan's power <= net). When even
    # full charge cannot absorb the PV surplus ("export_unavoidable") the target stays at the floor:
    # the PCS then charge to their windows, which is the plan's full charge.
    floor_w = 0.0 if not c.allow_export else PCC_NO_FLOOR_W
    target = grid_w if grid_w > floor_w else floor_w
    return GridControl(target, reference_ramp(c, target, lim, mode), floor_w, lim)


def reference_ramp(c: Cycle, target_w: float, lim: dict[str, PccLimits], mode: str = AUTO) -> float:
    """W/s the PCS's reference moves at toward `target_w` (see the module doc): PCC_RAMP_FRACTION
    of the limit times the grid's distance from the target (the battery's power off the plan) as a
    share of the PCS's window that way, at most 1. The full ramp when the grid is not measured, when
    it is above the grid connection limit (grid_import_limit_w: a bound to restore, not a swing), and
    for an operator's command (a mode other than auto: an override, idle): a setpoint someone asked
    for is handed over at the ramp, as in setpoint mode, not approached; but, as the ramp bound has
    priority over the operator's command there, only within what the meter's running second has left
    of its ramp budget that way (ramp_reference.second_budget_w): while the PCS loop's tracking error
    of a load slew spends it, the reference does not add its full ramp to it (it may move against
    it). Not in mode auto, where the reference already moves as slowly as the battery's window
    allows: held there, a lasting change is handed back later and the seconds after pay for it
    (BENCHMARKS.md "Issue 14: the PCC reference within the second's budget")."""
    full = c.cfg.ramp_limit_w_per_s * PCC_RAMP_FRACTION
    if not c.meas_ok:
        return full
    limit = c.cfg.grid_import_limit_w
    if limit > 0.0 and c.grid_w > limit:  # over the connection limit: a bound to restore, not a swing
        return full
    off = target_w - c.grid_w  # > 0: the battery discharges more than the plan (the grid is below it)
    if mode != AUTO:
        left = second_budget_w(c.meter, c.grid_w, c.dt, c.cfg.ramp_limit_w_per_s, off > 0.0)
        # never 0: a PCS may read a ramp of 0 as "no ramp limit" (the safety contract's 0 < ramp)
        return min(full, max(PCC_MIN_RAMP_W_PER_S, left))
    room = sum(x.max_discharge_w if off > 0.0 else x.max_charge_w for x in lim.values())
    if not room > 0.0:
        return full
    return min(full, max(PCC_MIN_RAMP_W_PER_S, full * min(1.0, abs(off) / room)))
