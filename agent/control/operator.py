"""Operator (controller 8) and the measurement failsafe: who claims the cycle below the safety bounds.

A grid, load or PV measurement that is not good puts the policy in conservative mode (hold, no
arbitrage, no shaving) with the alarm "measurement_invalid". Otherwise an unexpired override,
then the operator's mode idle or conservative; in mode "auto" the economic controllers below
choose the target.
"""

from __future__ import annotations

import math

from agent.control.cycle import Cycle
from agent.control.window import UNDECIDED, Window


def operator(w: Window, c: Cycle) -> Window:
    if w.src != UNDECIDED:  # claimed already (an outage)
        return w
    op = c.op
    if not c.meas_ok:
        return w.decided("conservative", 0.0, "failsafe", ("measurement_invalid",))
    ow = op.override_w
    if ow is not None and c.now < op.override_until and math.isfinite(ow):
        return w.decided("manual", ow, "override")
    if op.mode == "idle":
        return w.decided("idle", 0.0, "idle")
    if op.mode == "conservative":
        return w.decided("conservative", 0.0, "conservative")
    return w  # auto: the economic controllers choose
