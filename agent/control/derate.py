"""Operator derate (controller 1b): the BMS limits, capped where an operator derated a cluster.

The fleet applies the cap per PCS (fleet.pcs_factors): this records it as a bound under the
device limits, so the plan shows what the BMS allow (device_limits) and what the agent allows.
"""

from __future__ import annotations

from agent.control.cycle import Cycle
from agent.control.window import Window
from agent.model.plan import Bound


def derate(w: Window, c: Cycle) -> Window:
    f = c.fleet
    if not f.derated:
        return w
    lo, hi = -f.max_chg_w, f.max_dis_w
    why = "operator derate: " + ", ".join(f"{pid} at {k * 100.0:g} %" for pid, k in f.derated)
    return w.bound(
        lo,
        hi,
        "derate" if lo != w.lo else w.lo_src,
        "derate" if hi != w.hi else w.hi_src,
        Bound("derate", lo, hi, why),
    )


def allowed_limits_w(c: Cycle) -> dict[str, tuple[float, float]] | None:
    """Per trusted cluster behind a derated PCS: (max charge W, max discharge W) the agent allows."""
    f = c.fleet
    if not f.derated:
        return None
    capped = {pid for pid, _ in f.derated}
    out: dict[str, tuple[float, float]] = {}
    for j, idx in enumerate(f.members):
        if f.pcs_ids[j] in capped:
            for i in idx:
                out[f.ids[i]] = (f.max_chg[i], f.max_dis[i])
    return out
