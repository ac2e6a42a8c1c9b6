"""The fast lane's decision (pure): the load and grid meters read now and the window the 1 s policy
granted -> the PCS setpoints, or no write at all.

A 1 s cycle cannot follow a training job's 1-3 s swings: a step that lands inside the second
reaches the grid until the next cycle answers it (DESIGN.md, "three time scales"). The fast lane
([control] fast_lane_s, 0.1-0.25 s) answers it within a tick, reading only the two meters it needs.

It decides nothing the 1 s policy has not allowed. The 1 s decide() hands it a FastWindow
(agent.model.plan): the window of site battery power the bounds on the battery leave (controllers
1-3b: device limits, derate, maintenance, reserve and its ramp-out edges), each PCS's own window
and setpoint, the grid bounds (4 no export, 4b the grid connection limit) as a grid floor and
ceiling, the grid import the plan aims at, and the ramp. The grid bounds are applied to the load
the lane reads, not to the one the 1 s cycle read: held as battery power from the cycle, no export
capped the battery at a load that had since risen by 1.8 MW (stuck at 770 kW), and the floor must
hold at the load of now.

Each tick it moves the grid from where it put it at its last tick toward that aim at the ramp,
takes the battery power that leaves for the load expected over the coming tick (the load read now,
less the PV the 1 s cycle read, plus half its change since the last tick: the `lead`, so a slew is
met as it goes, not a tick late), clamps it to the grid floor and ceiling at the load read and
then to the battery window, and spreads the change from the 1 s setpoints over the PCS in
proportion to each one's room in that direction, so none leaves its own window. The reference is
the grid planned at the last tick unless the meters put the battery where the PCS cannot be on its
way to (agent.control.ramp.on_its_way, the 1 s ramp's check); then, and on a first tick, the
measured grid, and a first tick holds the plant where it is.

No window (the plan is not in mode auto: failsafe, outage, an operator's override or mode; PCC
control; the grid down), a stale one (older than STALE_CYCLES cycles: the 1 s loop stopped or
lags) or a meter reading that is not a finite number: no write, and the 1 s loop's setpoint stands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from agent.control.begin import finite
from agent.control.cycle import Cycle
from agent.control.ramp import PCC_NO_FLOOR_W, on_its_way
from agent.control.ramp_reference import BETWEEN_READINGS_RAMP_FRACTION, meter_average_grid
from agent.control.window import AUTO, Window
from agent.model.plan import FastPcs, FastWindow

NAN: Final = math.nan
# The fast lane moves the grid at the fraction of the limit the 1 s plan does when the load changes
# between readings: the rest is the margin for what the load does inside the next tick, which no
# setpoint written at its start can cancel, and the PCS's lag (on the 8xH100 traces at 0.2 s and
# 600 nodes, without the lead below: 1.0-1.2 % of seconds over the limit at 0.75 x, 0.5-0.8 % at 0.5 x).
FAST_RAMP_FRACTION: Final = BETWEEN_READINGS_RAMP_FRACTION
STALE_CYCLES: Final = 2.0  # the window stands this many 1 s cycles after its plan; then no write
MAX_TICK_GAP_S: Final = 1.0  # a longer gap between ticks starts afresh from the measured grid


def fast_window(
    c: Cycle, safe: Window, mode: str, pcs_setpoints_w: dict[str, float], planned_grid_w: float
) -> FastWindow | None:
    """What the 1 s plan grants the fast lane: `safe`, the window after the bounds on the battery (1-3b);
    `mode`, the plan's; `planned_grid_w`, the grid import it aims at. None where it must not write."""
    cfg = c.cfg
    if (
        cfg.fast_lane_s <= 0.0
        or cfg.ramp_limit_w_per_s <= 0.0
        or mode != AUTO
        or not c.snap.grid_up
        or not c.meas_ok
        or c.pcc
        or not finite(planned_grid_w)
        or not finite(c.now)
    ):
        return None
    f = c.fleet
    pcs: dict[str, FastPcs] = {}
    for j, pid in enumerate(f.pcs_ids):
        dis, chg = f.pcs_window_w(j)
        pcs[pid] = FastPcs(-chg, dis, pcs_setpoints_w.get(pid, 0.0))
    if not pcs:
        return None
    limit = cfg.grid_import_limit_w
    return FastWindow(
        t_mono=c.now,
        target_grid_w=planned_grid_w,
        ramp_w_per_s=cfg.ramp_limit_w_per_s * FAST_RAMP_FRACTION,
        grid_min_w=PCC_NO_FLOOR_W if c.allow_export else 0.0,
        grid_max_w=limit if limit > 0.0 else math.inf,
        pv_w=c.snap.pv_w.value,
        lo_w=safe.lo,
        hi_w=safe.hi,
        pcs=pcs,
    )


@dataclass(frozen=True, slots=True)
class FastState:
    """What the fast lane remembers from its last tick (all NaN: none, start afresh)."""

    t_mono: float = NAN  # the tick's time
    grid_w: float = NAN  # the grid import it planned (its ramp reference)
    battery_w: float = NAN  # the site battery power it wrote ...
    from_w: float = NAN  # ... and the battery's measured output when it wrote it
    window_t: float = NAN  # the window it used (its plan's time): a new one means the 1 s loop wrote
    net_w: float = NAN  # the net load it read


FAST0: Final = FastState()


def max_age_s(cycle_s: float) -> float:
    """How old a window may be before the fast lane stops writing (s)."""
    return STALE_CYCLES * cycle_s


def window_ok(win: FastWindow | None, now: float, max_age: float) -> bool:
    """Whether the lane may act on `win` at `now`: there is one and it is at most `max_age` s old."""
    return win is not None and 0.0 <= now - win.t_mono <= max_age


def fast_step(
    win: FastWindow | None, st: FastState, now: float, grid_w: float, load_w: float, max_age: float
) -> tuple[dict[str, float] | None, FastState]:
    """One tick: (setpoint W per PCS to write, or None for no write; the state for the next tick).

    `grid_w` and `load_w`: the grid and load meters read this tick (NaN: not good); `max_age`:
    the oldest window the lane still acts on (s, max_age_s)."""
    if win is None or not (finite(grid_w) and finite(load_w)) or not window_ok(win, now, max_age):
        return None, FAST0
    net = load_w - win.pv_w
    meas_b = net - grid_w  # what the battery gives now
    plan_b = 0.0
    for p in win.pcs.values():
        plan_b += p.setpoint_w
    dt = now - st.t_mono
    if finite(st.grid_w) and 0.0 < dt <= MAX_TICK_GAP_S:
        # the PCS on its way from where it was to what the lane wrote, or to what the 1 s loop
        # wrote since (a new window)
        a, b = st.from_w, st.battery_w
        if win.t_mono != st.window_t:
            a, b = min(a, b, plan_b), max(a, b, plan_b)
        step = win.ramp_w_per_s * dt
        ref = meter_average_grid(st.grid_w, grid_w, dt, False) if on_its_way(meas_b, a, b, step) else grid_w
        # The load's change over half the next tick, expected from its change over the last: a
        # setpoint held through a tick leaves on the grid what the load does meanwhile, on average
        # half a tick of its slope (of a 1.9 MW/s slew of the 8xH100 traces, ~190 kW at 0.2 s).
        # After a step it gives back, within the meter's same second, the half tick the step
        # went unanswered on average. Without it, at 0.2 s: 0.5-0.8 % of seconds over the limit at
        # 600 nodes; with it 0-0.3 % (bench/ramp_bench.py).
        lead = 0.5 * (net - st.net_w) if finite(st.net_w) else 0.0
    else:  # first tick, or after a gap: hold the plant where it is
        ref, step, lead = grid_w, 0.0, 0.0
    target = win.target_grid_w
    g = target if abs(target - ref) <= step else ref + math.copysign(step, target - ref)
    want = net + lead - g
    # the grid ceiling (connection limit) and then its floor (no export) at the load read now ...
    want = max(want, net - win.grid_max_w)
    want = min(want, net - win.grid_min_w)
    # ... and the safety window over both: the 1 s policy's, site and per PCS
    lo, hi = win.lo_w, win.hi_w
    lo_pcs = hi_pcs = 0.0
    for p in win.pcs.values():
        lo_pcs += p.min_w
        hi_pcs += p.max_w
    lo, hi = max(lo, lo_pcs), min(hi, hi_pcs)
    want = hi if want > hi else lo if want < lo else want
    out = spread(want, win.pcs)
    total = 0.0
    for w in out.values():
        total += w
    return out, FastState(now, net + lead - total, total, meas_b, win.t_mono, net)


def spread(site_w: float, pcs: dict[str, FastPcs]) -> dict[str, float]:
    """Setpoints per PCS adding up to `site_w` (within the PCS windows' sum): each PCS's 1 s setpoint
    moved by the same fraction of its room in the direction of the change, so none leaves its window."""
    base = {pid: min(max(p.setpoint_w, p.min_w), p.max_w) for pid, p in pcs.items()}
    delta = site_w - sum(base.values())
    room = {pid: (p.max_w - base[pid]) if delta > 0.0 else (base[pid] - p.min_w) for pid, p in pcs.items()}
    total = sum(room.values())
    k = min(1.0, abs(delta) / total) if total > 0.0 else 0.0
    k = math.copysign(k, delta)
    # (clamped again: base + 1.0 x (max - base) may round one ulp past max)
    return {pid: min(max(base[pid] + k * room[pid], p.min_w), p.max_w) for pid, p in pcs.items()}
