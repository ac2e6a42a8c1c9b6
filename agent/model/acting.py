"""Which controller set the battery power, said against the mode the plan reports.

A mode names what its own controller wants (conservative and idle: hold 0 W; manual: the
override; auto: the economics). The safety and grid-support bounds above it (device limits,
reserve, no export, ramp support; agent/control/compose.py) still act in every mode, so a plan in
mode "conservative" (a bad grid meter) can discharge 1.9 MW for ramp support. That is by design
(README: "Modes and the bounds above them"); this names the bound so no display says "holding"
while the battery discharges.
"""

from __future__ import annotations

from agent.model.plan import Plan

# The controllers whose target is the mode's own wish, per Plan.mode (compose.py REASONS keys).
MODE_SOURCES: dict[str, frozenset[str]] = {
    "auto": frozenset({"demand", "tou_charge", "tou_discharge", "tou_hold", "pv_surplus", "balance", "plan"}),
    "conservative": frozenset({"failsafe", "conservative"}),
    "idle": frozenset({"idle"}),
    "manual": frozenset({"override"}),
    "outage": frozenset({"outage"}),
}


def mode_bound(plan: Plan) -> str | None:
    """The bound that set the battery power instead of the mode's own controller; None when the
    mode's controller set it (its target was inside every bound)."""
    return None if plan.decided_by in MODE_SOURCES.get(plan.mode, frozenset()) else plan.decided_by
