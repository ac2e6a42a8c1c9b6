"""SoC balancing / idle (controller 9): with nothing else asking, drift toward soc_target_pct.

Slowly (the gap closes with a one-hour time constant) and not for small gaps, so an idle
battery does not cycle for nothing. Balancing between clusters happens in dispatch (weights).
"""

from __future__ import annotations

from typing import Final

from agent.control.cycle import Cycle
from agent.control.window import AUTO, UNDECIDED, Window

BALANCE_TIME_S: Final = 3600.0
DEADBAND_PCT: Final = 1.0


def balance_target_w(soc_pct: float, target_pct: float, capacity_wh: float) -> float:
    gap = soc_pct - target_pct  # positive: above target -> discharge
    if -DEADBAND_PCT <= gap <= DEADBAND_PCT or gap != gap:
        return 0.0
    return gap * 0.01 * capacity_wh * 3600.0 / BALANCE_TIME_S


def balance(w: Window, c: Cycle) -> Window:
    """Controller 9: in auto mode with no time-of-use role, drift toward the SoC target."""
    if w.mode != AUTO or w.src != UNDECIDED:
        return w
    f = c.fleet
    return w.decided(AUTO, balance_target_w(f.soc_pct, c.cfg.soc_target_pct, f.capacity_wh), "balance")
