"""No export (controller 4): where the site may not export, discharge at most the net load.

With the load or PV unknown, no discharge at all. When even full charge cannot absorb the PV
surplus the window closes at full charge and "export_unavoidable" is raised.
"""

from __future__ import annotations

from agent.control.cycle import Cycle
from agent.control.window import Window
from agent.model.plan import Bound


def no_export(w: Window, c: Cycle) -> Window:
    if c.allow_export or not c.snap.grid_up:
        return w
    cap_w = c.net if c.net_ok else 0.0
    lo, hi = w.lo, w.hi
    if not cap_w < hi:
        return w
    reason = "discharge <= load - pv" if c.net_ok else "load or PV unknown: no discharge"
    if cap_w < lo:  # even full charge cannot absorb the PV surplus
        return w.bound(lo, lo, w.lo_src, w.lo_src, Bound("no_export", lo, lo, reason), "export_unavoidable")
    return w.bound(lo, cap_w, w.lo_src, "no_export", Bound("no_export", lo, cap_w, reason))
