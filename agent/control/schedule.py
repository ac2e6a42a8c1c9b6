"""DispatchPlan: the planner's answer, as the tracking controller and the API read it.

Apart from the planner (planner.py) so the live loop can hold and track a plan without loading
the solver (scipy / HiGHS are the offline and planning side's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from agent.economics.tariff import FloatArray

MAX_AGE_S: Final = 3600.0  # a plan older than this is not tracked (the load has moved on since)


@dataclass(frozen=True, slots=True)
class DispatchPlan:
    made_s: float  # when it was solved (Unix s; the caller's clock)
    start_s: float  # first slot (the demand interval holding made_s)
    step_s: float
    battery_w: FloatArray  # planned site battery power per slot, + = discharge
    grid_w: FloatArray  # planned import on the median forecast
    grid_cap_w: FloatArray  # the plan's peak level on the interval average (inf: no demand charge there)
    soc0_pct: float  # at the start of the first slot (the state of charge it was solved from)
    soc_pct: FloatArray  # at the end of each slot
    price: FloatArray  # energy price per slot
    objective: float
    solve_s: float
    # per slot, the lowest among the demand charges covering it of the level the month bills with
    # or without the battery so far: the higher of the peak already billed and the site's own load's
    # highest interval this month (planner.py; inf: no charge covers the slot; 0 in the next month).
    # An interval closing at or under it, or under its own load, bills no peak above the site's
    # without the battery (track.py's guard). Empty: not known (the tracker then reads the running
    # window's own billed peak)
    billed_w: FloatArray = field(default_factory=lambda: np.zeros(0))
    # what a kWh charged in the first slot is worth to the plan (its currency): the marginal value of
    # stored energy there (the programme's dual, over every scenario) times the charging efficiency.
    # Above every price of the horizon, the plan is short of energy for its demand levels: the tracker
    # then fills the dips the forecast did not see where the plan discharges (track.py). NaN: not known
    stored_value: float = math.nan
    # short of energy for its demand levels: stored_value above every price of the horizon (False: not
    # short, or not known). Worked out once per plan (planner.py), read on every cycle by the tracker
    short: bool = False

    def slot_at(self, t_s: float) -> int:
        """The slot holding `t_s`, or -1 outside the plan."""
        k = math.floor((t_s - self.start_s) / self.step_s)
        return k if 0 <= k < len(self.battery_w) else -1

    def soc_at(self, k: int, share: float) -> float:
        """The planned state of charge `share` (0..1) of the way through slot `k` (linear)."""
        before = float(self.soc_pct[k - 1]) if k > 0 else self.soc0_pct
        return before + (float(self.soc_pct[k]) - before) * share


def usable(last: DispatchPlan | None, now_s: float, max_age_s: float = MAX_AGE_S) -> DispatchPlan | None:
    """The last plan while it covers `now_s` and is at most `max_age_s` old; else None (heuristic)."""
    if last is None or last.slot_at(now_s) < 0 or not now_s - last.made_s <= max_age_s:
        return None
    return last
