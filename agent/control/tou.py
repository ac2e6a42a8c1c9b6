"""Time-of-use arbitrage (controller 7): when to charge, discharge or hold, once per price slot.

The prices of the 24 h before and after the current slot (one look-up per demand-interval
slot, so the per-cycle cost is nil) decide the role of the current slot:
- charge if a later slot pays for the round trip and degradation, (p_later - deg) x eta_c x
  eta_d > p_now, and no cheaper slot comes first (then charge there instead);
- discharge if the slot pays against the cheapest slot of the past day and no dearer slot
  comes before prices fall again (keep the energy for the dearer one);
- hold otherwise.
On the Shanghai tariff this gives what the perfect-foresight optimum does: valley -> morning
peak and flat -> evening peak, two cycles a day. The energy is spread evenly over the rest of
the price run (the flattest grid profile: the least demand cost for the same energy).

Charging raises the grid import. It may raise the month's demand peak only where that pays:
the arbitrage value of 1 kW more charge over the run on every remaining day of the month must
beat the demand rate (per kW-month); otherwise charging stays under the demand target.
"""

from __future__ import annotations

import calendar
import math
from datetime import datetime, timedelta

from agent.control.prices import Prices
from agent.control.state import ROLE_CHARGE, ROLE_DISCHARGE, ROLE_HOLD
from agent.model.config import ControlConfig

DAY_S = 86400.0


class SlotPlan:
    __slots__ = ("end_s", "price", "raise_ok", "role", "run_s", "spread")

    def __init__(
        self, role: int, end_s: float, raise_ok: bool, price: float, spread: float, run_s: float = 0.0
    ) -> None:
        self.role = role
        self.end_s = end_s  # seconds from now until the price run ends
        self.run_s = run_s  # length of the whole price run
        self.raise_ok = raise_ok
        self.price = price
        self.spread = spread  # (dearest - deg) - cheapest / (eta_c x eta_d): per kWh discharged


def plan_slot(
    t: datetime, into_slot_s: float, length_s: float, prices: Prices, cfg: ControlConfig, demand_rate: float
) -> SlotPlan:
    n = math.ceil(DAY_S / length_s)
    t0 = t - timedelta(seconds=into_slot_s)
    q = [prices.energy_price(t0 + timedelta(seconds=k * length_s)) for k in range(-n, n + 1)]
    c = n
    p = q[c]
    eff = cfg.charge_efficiency * cfg.discharge_efficiency
    deg = cfg.degradation_cost_per_kwh
    end = c + 1
    while end < len(q) and q[end] == p:
        end += 1
    start = c
    while start > 0 and q[start - 1] == p:
        start -= 1
    end_s = (end - c) * length_s - into_slot_s
    spread = (max(q) - deg) - min(q) / eff

    sell = math.nan  # the first later price that pays for charging now
    for j in range(c + 1, len(q)):
        if (q[j] - deg) * eff > p:
            sell = q[j]
            break
        if q[j] < p:
            break
    if sell == sell:
        run_h = (end - start) * length_s / 3600.0
        days_left = calendar.monthrange(t.year, t.month)[1] - t.day + 1
        value = ((sell - deg) * eff - p) * run_h * days_left  # per kW of charge held over the run
        return SlotPlan(ROLE_CHARGE, end_s, value > demand_rate, p, spread, run_h * 3600.0)

    if (p - deg) * eff > min(q[:c]):
        for j in range(c + 1, len(q)):
            if q[j] > p:
                return SlotPlan(ROLE_HOLD, end_s, False, p, spread)  # a dearer slot comes first
            if q[j] < p:
                break
        return SlotPlan(ROLE_DISCHARGE, end_s, False, p, spread)
    return SlotPlan(ROLE_HOLD, end_s, False, p, spread)
