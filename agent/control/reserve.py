"""Backup reserve (controller 3): the SoC floor that keeps enough energy to carry the critical load.

floor = soc_min_pct + the energy to carry `reserve_load_w` for `reserve_minutes` (through the
discharge efficiency), as a percentage of the trusted fleet's nameplate energy. The operator's
SetReserve overrides the site file's figures. When clusters drop out the same energy is a larger
share of what is left, so the floor rises: the reserve is energy, not a percentage.
"""

from __future__ import annotations

from agent.control.cycle import Cycle
from agent.control.window import Window
from agent.model.config import ControlConfig
from agent.model.operator import OperatorState
from agent.model.plan import Bound


def reserve_floor_pct(cfg: ControlConfig, op: OperatorState, capacity_wh: float) -> float:
    """SoC floor in % of the trusted fleet; may exceed soc_max_pct when the fleet is too small."""
    load = cfg.reserve_load_w if op.reserve_load_w is None else op.reserve_load_w
    minutes = cfg.reserve_minutes if op.reserve_minutes is None else op.reserve_minutes
    need_wh = load * minutes / 60.0 / cfg.discharge_efficiency
    if need_wh <= 0:
        return cfg.soc_min_pct
    if capacity_wh <= 0:
        return 100.0
    return cfg.soc_min_pct + 100.0 * need_wh / capacity_wh


def reserve(w: Window, c: Cycle) -> Window:
    """Controller 3: the reserve floor and SoC ceiling, per cluster (applied to the fleet by
    begin_cycle; this records the bound where it cut the device limits)."""
    if not c.snap.grid_up:
        return w
    a, b = -c.fleet.chg_w, c.fleet.dis_w
    lo, hi = w.lo, w.hi
    floor, ceil = c.floor, c.ceil
    if a != lo or b != hi:
        w = w.bound(
            a,
            b,
            "reserve" if a != lo else w.lo_src,
            "reserve" if b != hi else w.hi_src,
            Bound("reserve", a, b, f"SoC floor {floor:.2f} %, ceiling {ceil:.2f} %"),
        )
    if floor > ceil:
        w = w.with_alarm("reserve_exceeds_fleet")
    return w
