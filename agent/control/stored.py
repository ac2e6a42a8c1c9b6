"""The energy the trusted fleet holds above the reserve floor and has room for below the SoC ceiling.

Shared by the controllers that plan with it (edges.py: the ramp-out; grid_limit.py and
limit_reserve.py: the grid connection limit's reserve; demand.py: what shaving may not touch).
"""

from __future__ import annotations

from typing import Final

from agent.control.cycle import Cycle

J_PER_WH: Final = 3600.0


def energy_above_floor_j(c: Cycle) -> float:
    """What the trusted clusters can still deliver (AC side, J) before the reserve floor."""
    return stored_above_floor_wh(c) * J_PER_WH * c.cfg.discharge_efficiency


def room_below_ceiling_j(c: Cycle) -> float:
    """What the trusted clusters can still take in (AC side, J) before the SoC ceiling."""
    ceil, room = c.ceil, 0.0
    for s, cap in zip(c.fleet.soc, c.fleet.cap, strict=True):
        if s < ceil:
            room += (ceil - s) * cap
    return room * 0.01 * J_PER_WH / c.cfg.charge_efficiency


def stored_above_floor_wh(c: Cycle) -> float:
    """What the trusted clusters hold above the reserve floor (storage side, Wh)."""
    above = 0.0
    floor = c.floor
    for s, cap in zip(c.fleet.soc, c.fleet.cap, strict=True):
        if s > floor:
            above += (s - floor) * cap
    return above * 0.01
