"""The dispatch plan as GET /api/plan, the MQTT plan topic and the dashboard's chart show it.

Apart from agent/live/planning.py (which loads the solver) so an agent that does not plan still
answers, honestly: `status` "none" and the reason (disabled, cold start, failure).

Per slot: its start, the SoC planned at its END, the grid-import cap on its interval average
(null: no demand charge there), the energy price, the planned battery power (+ = discharge) and
grid import on the median forecast.
"""

from __future__ import annotations

import math
from datetime import datetime, tzinfo
from typing import Any, Final

from agent.control.schedule import DispatchPlan

SHOWN_S: Final = 86400.0  # the next 24 h
DISABLED: Final = "none: disabled ([planner] enabled = false)"


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def disabled_view(reason: str = DISABLED) -> dict[str, Any]:
    """The read-out of an agent that does not plan (no [planner], or enabled = false)."""
    return {"status": "none", "enabled": False, "reason": reason, "slots": [], "changes": [], "version": 0}


def plan_slots(p: DispatchPlan, k0: int, tz: tzinfo) -> list[dict[str, Any]]:
    """The plan's slots from `k0`, for the next 24 h (at most)."""
    n = min(len(p.battery_w), k0 + int(SHOWN_S / p.step_s))
    return [
        {
            "start": datetime.fromtimestamp(p.start_s + k * p.step_s, tz).isoformat(),
            "t": p.start_s + k * p.step_s,
            "soc_pct": float(p.soc_pct[k]),
            "grid_cap_w": _num(float(p.grid_cap_w[k])),
            "price": float(p.price[k]),
            "battery_w": float(p.battery_w[k]),
            "grid_w": float(p.grid_w[k]),
        }
        for k in range(k0, n)
    ]


def running_slot(p: DispatchPlan, now: float) -> int:
    """The slot shown first: the one holding `now` (0 before the plan starts)."""
    return max(p.slot_at(now), 0)


def plan_view(
    p: DispatchPlan | None,
    now: float,
    tz: tzinfo,
    info: dict[str, Any],
    slots: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`info` (reason, counts, changes ...) with the plan's next 24 h from the slot holding `now`.
    `slots`: `plan_slots(p, running_slot(p, now), tz)` if the caller has it already (a cache)."""
    out: dict[str, Any] = {"status": "plan" if p is not None else "none", **info, "slots": []}
    if p is None:
        return out
    k0 = running_slot(p, now)
    share = (now - p.start_s - k0 * p.step_s) / p.step_s
    out.update(
        made_at=datetime.fromtimestamp(p.made_s, tz).isoformat(),
        age_s=now - p.made_s,
        solve_ms=p.solve_s * 1000.0,
        step_s=p.step_s,
        running={"soc_pct": p.soc_at(k0, min(max(share, 0.0), 1.0)), "grid_cap_w": _num(float(p.grid_cap_w[k0]))},
        slots=slots if slots is not None else plan_slots(p, k0, tz),
    )
    return out
