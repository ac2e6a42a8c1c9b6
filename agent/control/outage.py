"""Grid-outage backup (controller 2): with the utility supply gone the battery is the UPS.

The reserve is there to be used (only the SoC ceiling still bounds charging, as applied to the
fleet by begin_cycle); the target is the site's net load, or what the battery gives now when the
load is unknown. Claims the cycle (mode "outage"): nothing below runs.
"""

from __future__ import annotations

import math

from agent.control.cycle import Cycle
from agent.control.window import Window
from agent.model.plan import Bound


def outage(w: Window, c: Cycle) -> Window:
    if c.snap.grid_up:
        return w
    lo, hi = w.lo, w.hi
    if -c.fleet.chg_w != lo:
        lo = -c.fleet.chg_w
        w = w.bound(lo, hi, "soc_max", w.hi_src, Bound("soc_max", lo, hi, "no charge above soc_max_pct"))
    alarms: tuple[str, ...] = ("grid_outage_backup",)
    if c.net_ok:
        target = c.net
    else:
        bw = c.snap.battery_w
        target = bw if math.isfinite(bw) else 0.0
        alarms += ("measurement_invalid",)
    if target > hi:
        alarms += ("backup_shortfall",)
    return w.decided("outage", target, "outage", alarms)
