"""The smallest grid connection a battery lets a site run on, for a load trace.

A direct energy-feasibility bound, not a replay: an ideal battery (its power limits, its SoC window
between the reserve floor and the ceiling, its one-way efficiencies) that discharges exactly the
import above the connection and recharges, as fast as it may, whenever the load leaves room under
it. Recharging as soon as there is room is the best any policy can do for this one goal, so a
connection this check fails no controller can hold; one it passes, the controller holds only if its
other goals (arbitrage, shaving) leave the energy (issue 14: the reserve planning does not yet keep
it: the replay's own seconds above the limit are the measure of that).

The stored energy is a walk reflected at the full window and never allowed below empty:
E_t = E0 + S_t - max(0, max_{s <= t}(E0 + S_s) - E_max) for the walk S of energy in and out; the
connection is feasible when that stays >= 0 and the excess never passes the discharge limit.
Bisection over the connection, to `tol_w`.
"""

from __future__ import annotations

import numpy as np

from agent.economics.optimum import BatterySpec
from agent.economics.tariff import FloatArray


def feasible(net_w: FloatArray, step_s: float, limit_w: float, b: BatterySpec) -> bool:
    """Whether the ideal battery `b` (its window soc_min..soc_max %, from start_soc_pct) keeps the
    import of `net_w` (W per step) at or below `limit_w`."""
    excess = net_w - limit_w
    if float(excess.max()) > b.power_w:
        return False
    usable_wh = (b.soc_max_pct - b.soc_min_pct) * 0.01 * b.energy_wh
    start_wh = min(max(b.start_soc_pct - b.soc_min_pct, 0.0) * 0.01 * b.energy_wh, usable_wh)
    spare = np.minimum(-excess, b.power_w)  # charge power there is room for (negative: a deficit)
    flow_wh = np.where(excess > 0.0, -excess / b.discharge_efficiency, spare * b.charge_efficiency) * (step_s / 3600.0)
    walk = start_wh + np.cumsum(flow_wh)
    spill = np.maximum(np.maximum.accumulate(walk) - usable_wh, 0.0)  # what a full battery could not take
    return bool(float((walk - spill).min()) >= -1e-9)


def smallest_connection_w(net_w: FloatArray, step_s: float, b: BatterySpec, tol_w: float = 1000.0) -> float:
    """The smallest import limit the battery holds over the trace (to `tol_w`), by bisection between
    the peak less the discharge limit (never below) and the peak (always holds)."""
    peak = float(net_w.max())
    lo, hi = max(peak - b.power_w, 0.0), peak
    if feasible(net_w, step_s, lo, b):
        return lo
    while hi - lo > tol_w:
        mid = 0.5 * (lo + hi)
        if feasible(net_w, step_s, mid, b):
            hi = mid
        else:
            lo = mid
    return hi
