"""Device limits (controller 1): the window every cycle starts from.

What the trusted clusters' BMS allow, each PCS's clusters capped by its rating (fleet.py), before
any operator derate (derate.py narrows to that). A cluster in maintenance is not in the fleet.
"""

from __future__ import annotations

from agent.control.cycle import Cycle
from agent.control.window import Window
from agent.model.plan import Bound


def device_limits(c: Cycle) -> Window:
    f = c.fleet
    lo, hi = -f.bms_chg_w, f.bms_dis_w
    why = "trusted clusters' BMS limits, capped by PCS ratings"
    alarms = () if f.ids else ("no_battery_available",)
    return Window(lo, hi, "device_limits", "device_limits", (Bound("device_limits", lo, hi, why),), alarms)
