"""What the agent allows a cluster this cycle: its BMS limits, or below them where the operator
derated its PCS (Plan.allowed_limits_w). One definition for every sink that shows both."""

from __future__ import annotations

from agent.model.plan import Plan
from agent.model.snapshot import ClusterSnapshot


def allowed_limits_w(plan: Plan, c: ClusterSnapshot) -> tuple[float | None, float | None]:
    """(charge W, discharge W) magnitudes the agent allows `c`: the plan's where it set them, else
    what the BMS reports (None where that is not a usable reading)."""
    lims = plan.allowed_limits_w
    if lims is not None and c.id in lims:
        return lims[c.id]
    ch, dis = c.max_charge_w, c.max_discharge_w
    return (ch.value if ch.ok else None), (dis.value if dis.ok else None)
