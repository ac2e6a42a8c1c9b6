"""PV surplus (auto mode): store what the site would otherwise export, before any arbitrage.

It is free energy: when the net load is negative the economic target charges at least the
surplus. Also where an economic target is unknown (no trusted cluster: the fleet SoC is NaN)
the battery holds.
"""

from __future__ import annotations

from agent.control.cycle import Cycle
from agent.control.window import AUTO, Window


def pv_surplus(w: Window, c: Cycle) -> Window:
    if w.mode != AUTO:
        return w
    net, target = c.net, w.target
    if net < 0.0 and target > net:
        return w.decided(AUTO, net, "pv_surplus")
    if target != target:  # no trusted cluster: soc is NaN
        return w.decided(AUTO, 0.0, w.src)
    return w
