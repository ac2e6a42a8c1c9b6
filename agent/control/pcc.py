"""Ramp support delegated to the PCS in grid-power (PCC) control: the plan as a grid import target.

When trusted PCS are configured for it (PcsSnapshot.grid_control) and the measurements are good,
the ramp controller records the delegation instead of bounding the window; the plan's battery power
becomes a grid import target (Plan.grid_control) that those PCS approach at PCC_RAMP_FRACTION of
the ramp limit on their own meter, each with its share of the correction and its own window
(device limits within the reserve window, per cluster, capped by its rating, and scaled down to
the energy-aware edges' caps near the floor or ceiling: edges.py), and a grid floor of
0 W when the site may not export. A bad measurement or an outage hands every PCS back its setpoint.
"""

from __future__ import annotations

from agent.control.cycle import Cycle
from agent.control.dispatch import pcs_shares
from agent.control.edges import edge_caps
from agent.control.ramp import PCC_NO_FLOOR_W, PCC_RAMP_FRACTION
from agent.model.plan import GridControl, PccLimits


def grid_control(c: Cycle, grid_w: float) -> GridControl | None:
    """The grid-power command for planned grid import `grid_w`; None when no PCS takes one."""
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
    return GridControl(
        grid_w if grid_w > floor_w else floor_w, c.cfg.ramp_limit_w_per_s * PCC_RAMP_FRACTION, floor_w, lim
    )
