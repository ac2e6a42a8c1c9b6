"""Energy-aware edges (controller 3b): the battery ramps out at the ramp limit before the SoC floor
or ceiling instead of stepping to 0 W when it gets there.

Going from P to 0 W in steps of s = r x dt, each held one cycle of dt, takes
P x (P + s) x dt / (2 s) = P^2 / (2 r) + P dt / 2 of energy: the physical bound P^2 / (2 r) plus the
half cycle the staircase holds above the ramp. So discharge is capped at the power whose ramp-out
the stored energy above the reserve floor can still deliver (through the discharge efficiency), and
charge at the power whose ramp-out the room below the ceiling can still take. Held at that cap the
power falls by exactly s a cycle and reaches 0 W at the floor. r is the rate the plan moves the grid
at (ramp.SETPOINT_RAMP_FRACTION of the limit). Only with ramp support on and the grid up: in an
outage the battery carries the load and the reserve is there to be used. In grid-power (PCC) control
too: the PCS's local loop moves their output with the load, and their windows stopped it at once at
the floor (a step the size of their output); the same caps now shrink those windows (pcc.py), so
the output ramps out as the energy runs down.

The SoC is read in register steps (SOC_STEP_PCT), so the energy the reading says is left jumps by a
step's worth (18 MJ on the demo's 5 MWh) when the reading ticks down, and the cap with it (from
2.3 MW to 0 at the last step above the floor). So the cap counts from one step above the floor (the
true SoC may sit up to half a step under the reading), and never falls faster than the ramp from
the power the previous cycle planned: that power was within the cap of a true energy at least half
a step larger, so ramping it out at r still ends above the floor. Without both, the savings bench's
month at 200 kW/s had 154 seconds in which the battery stepped the grid by itself, by up to 2.2 MW,
at the floor and the ceiling (BENCHMARKS.md, "Issue 14: energy for the grid limit and the edges").

Before a device limit drop the trend shows (the BMS derating on temperature or tapering, the fleet's
limit falling faster than r since the last cycle, the same clusters trusted), the power is held
where a ramp at r ends no later than the limit's trend reaches 0 (EdgeState keeps the last cycle's
limits). A drop no trend announced (a BMS fault, a lost PCS, a sudden derate) is a step the plan
labels with its cause (step_cause).
"""

from __future__ import annotations

import math
from typing import Final

from agent.control.begin import finite
from agent.control.cycle import Cycle
from agent.control.ramp import SETPOINT_RAMP_FRACTION, STEP_S_MAX, counted_s
from agent.control.state import EdgeState
from agent.control.stored import J_PER_WH, energy_above_floor_j, room_below_ceiling_j
from agent.control.window import Window
from agent.model.plan import Bound

SOC_STEP_PCT: Final = 0.1  # the SoC registers' resolution (SunSpec 802 BMS report whole 0.1 %)


def ramp_out_w(energy_j: float, rate_w_per_s: float, dt: float) -> float:
    """The largest power P whose ramp-out to 0 W at `rate_w_per_s`, in cycles of `dt`, takes at most
    `energy_j`: the root of P^2 + r dt P - 2 r E = 0."""
    if energy_j <= 0.0:
        return 0.0
    rdt = rate_w_per_s * dt
    return 0.5 * (math.sqrt(rdt * rdt + 8.0 * rate_w_per_s * energy_j) - rdt)


def edge_caps(c: Cycle) -> tuple[float, float]:
    """(charge cap, discharge cap) W, the charge cap negative: the powers whose ramp-out the energy
    above one register step over the floor (or the room below the ceiling) can still take, never
    falling faster than the ramp from the last plan (in grid-power control, from the measured output:
    there the PCS, not the plan, set it). Worked out once a cycle: the edges' bound (edges) and, in
    grid-power control, the PCS's windows (pcc.grid_control) take the same caps."""
    caps = c.edge_caps_w
    if caps is None:
        caps = c.edge_caps_w = _caps(c)
    return caps


def _caps(c: Cycle) -> tuple[float, float]:
    cfg = c.cfg
    r = cfg.ramp_limit_w_per_s * SETPOINT_RAMP_FRACTION
    dt = counted_s(c.dt)
    step_j = SOC_STEP_PCT * 0.01 * c.fleet.capacity_wh * J_PER_WH
    hi_cap = ramp_out_w(energy_above_floor_j(c) - step_j * cfg.discharge_efficiency, r, dt)
    lo_cap = -ramp_out_w(room_below_ceiling_j(c) - step_j / cfg.charge_efficiency, r, dt)
    # A device limit falling faster than the ramp (a BMS derating on temperature, a taper) reaches 0
    # before a battery at it could ramp out: hold the power where a ramp at r ends with the limit's
    # trend, r x limit / fall rate (P - r t <= L - q t until L reaches 0).
    e = c.edge
    f = c.fleet
    if 0.0 < c.dt <= STEP_S_MAX and e.capacity_wh == f.capacity_wh:
        qd = (e.dis_w - f.max_dis_w) / c.dt
        if qd > r and r * f.max_dis_w / qd < hi_cap:
            hi_cap = r * f.max_dis_w / qd
        qc = (e.chg_w - f.max_chg_w) / c.dt
        if qc > r and -r * f.max_chg_w / qc > lo_cap:
            lo_cap = -r * f.max_chg_w / qc
    prev = c.snap.battery_w if c.pcc else c.prev_battery_w
    if not finite(prev):  # no plan (NaN): from what the battery gives now (NaN: no such floor)
        prev = c.snap.battery_w
    if prev - r * dt > hi_cap:
        hi_cap = prev - r * dt
    elif prev + r * dt < lo_cap:
        lo_cap = prev + r * dt
    return lo_cap, hi_cap


def edge_state(c: Cycle) -> EdgeState:
    """What the next cycle needs of this one's fleet for the limits' trend (the same object while the
    fleet's limits stand: the replay reuses its fleet for as long as no BMS register changes)."""
    f, e = c.fleet, c.edge
    if e.dis_w == f.max_dis_w and e.chg_w == f.max_chg_w and e.capacity_wh == f.capacity_wh:
        return e
    return EdgeState(dis_w=f.max_dis_w, chg_w=f.max_chg_w, capacity_wh=f.capacity_wh)


def edges(w: Window, c: Cycle) -> Window:
    """Controller 3b. In grid-power (PCC) control as well: the plan's target ramps out, and the PCS's
    own windows are capped the same way (pcc.grid_control), since there the PCS set the output."""
    cfg = c.cfg
    if cfg.ramp_limit_w_per_s <= 0.0 or not c.snap.grid_up:
        return w
    lo_cap, hi_cap = edge_caps(c)
    lo, hi = w.lo, w.hi
    if not (hi_cap < hi or lo_cap > lo):
        return w
    lo_src, hi_src = w.lo_src, w.hi_src
    if hi_cap < hi:
        hi, hi_src = max(hi_cap, lo), "edges"
    if lo_cap > lo:
        lo, lo_src = min(lo_cap, hi), "edges"
    r = cfg.ramp_limit_w_per_s * SETPOINT_RAMP_FRACTION
    why = f"ramping out at {r:.0f} W/s before the SoC floor {c.floor:.2f} % or ceiling {c.ceil:.2f} %"
    return w.bound(lo, hi, lo_src, hi_src, Bound("edges", lo, hi, why))


def step_cause(bounds: tuple[Bound, ...]) -> str:
    """The controller whose bound left no room inside the ramp window this cycle, from the ramp bound
    (ramp.py names it then): "device_limits" for a safety trip (a BMS fault or a lost PCS took clusters
    out of the fleet at once) or a load step beyond the fleet's power; "" when the grid moved within
    the ramp bound. Whether the step was the battery's or the load's: bench/savings_bench.py's
    ramp_by_cause counts them apart."""
    for b in bounds:
        if b.source == "ramp":
            return b.forced_by
    return ""
