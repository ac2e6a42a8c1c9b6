"""Maintenance (controller 1c): clusters an operator holds out of service are never commanded.

The fleet leaves them out (fleet.py: decide's OperatorState.maintenance input), so the device
limits are already without them; this names them in the plan, with the window as it stands.
"""

from __future__ import annotations

from agent.control.cycle import Cycle
from agent.control.window import Window
from agent.model.plan import Bound


def maintenance(w: Window, c: Cycle) -> Window:
    held = c.op.maintenance
    if not held:
        return w
    ids = sorted(cl.id for cl in c.snap.clusters if cl.id in held)
    if not ids:
        return w
    why = f"{', '.join(ids)} held in maintenance: never commanded"
    return w.bound(w.lo, w.hi, w.lo_src, w.hi_src, Bound("maintenance", w.lo, w.hi, why))
