"""The plan as commands to one PCS: the one translation the live loop and the offline replay share.

Every PCS gets its setpoint (0 W where the plan's is not a finite number: a plan never holds one,
and none is ever passed on). A PCS the plan puts in grid-power (PCC) control also gets its grid
command: the site's import target, ramp and grid floor with its own share and output window; if
any of those is not a finite number, or the plan gives it none, it gets no grid command and
follows the setpoint.
"""

from __future__ import annotations

import math

from agent.model.plan import Plan


class PccCommand:
    """One PCS's grid-power (PCC) command: what the loop writes to its registers (drivers.keys
    PCC_*), and what the replay hands the simulated PCS."""

    __slots__ = ("grid_min_w", "max_charge_w", "max_discharge_w", "ramp_w_per_s", "share", "target_w")

    def __init__(
        self,
        target_w: float,
        ramp_w_per_s: float,
        share: float,
        max_discharge_w: float,
        max_charge_w: float,
        grid_min_w: float,
    ) -> None:
        self.target_w = target_w  # grid import target (import positive)
        self.ramp_w_per_s = ramp_w_per_s
        self.share = share  # this PCS's fraction of the correction
        self.max_discharge_w = max_discharge_w  # its output window (magnitudes)
        self.max_charge_w = max_charge_w
        self.grid_min_w = grid_min_w  # grid floor (0: no export)


def setpoint_w(plan: Plan, pcs_id: str) -> float:
    """The PCS's setpoint in W (0 when the plan has none or a non-finite one)."""
    w = plan.pcs_setpoints_w.get(pcs_id, 0.0)
    return w if math.isfinite(w) else 0.0


def pcc_command(plan: Plan, pcs_id: str) -> PccCommand | None:
    """The PCS's grid-power command, or None: it follows its setpoint (leaves the mode)."""
    gc = plan.grid_control
    if gc is None:
        return None
    lim = gc.pcs.get(pcs_id)
    if lim is None:
        return None
    target, ramp, floor = gc.target_w, gc.ramp_w_per_s, gc.grid_min_w
    if not (math.isfinite(target) and math.isfinite(ramp) and math.isfinite(floor)):
        return None
    return PccCommand(target, ramp, lim.share, lim.max_discharge_w, lim.max_charge_w, floor)
