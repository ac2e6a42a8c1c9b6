"""Whether the campus recharges its batteries for its demand target now, decided once for the campus.

Where no round trip pays (PG&E E-20 at the bench's wear cost), nothing but demand refills a battery:
an agent charges for the demand levels the next 24 h of its load envelope needs
(agent.control.tou.demand_charge_now). Under a campus share each agent would look at its own
feeder's envelope against its own share of the target; the shares follow the feeders' loads, so
some feeder's envelope is above its share at almost every hour of the day (the feeders peak at
different times) and every agent recharged for shaving its own feeder, where the campus's envelope,
their sum, stays under the campus target and needs nothing. Measured on the campus bench (8 feeders,
PG&E, 30 days; BENCHMARKS.md, issue 16 fourth pass): 887 MWh discharged and recharged against the
pooled controller's 119 MWh, 133 kUSD of wear, a campus 83 kUSD worse off than with no battery.

So the coordinator decides it as the pooled controller does: the same rule (demand_charge_now) on the
campus's own envelope (its day profile and the last days' averages, agent/campus/keep.py) against the
campus target in every billed slot (demand.slot_targets with the target fixed, as the campus file
fixes it) and the campus's tariff, and sends the answer to every fresh feeder (Share.recharge). The
agent still recharges only where its own price plan says no round trip pays (tou.plan_interval).
Without a tariff, or with less than half a day of profile, it is not decided (UNDECIDED): each agent
keeps its own rule, as before the coordinator had a tariff.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from agent.campus.allocate import UNDECIDED
from agent.campus.keep import CampusDay
from agent.control.begin import day_rates
from agent.control.demand import slot_targets
from agent.control.envelope import envelope
from agent.control.prices import Prices
from agent.control.tou import demand_charge_now
from agent.model.interval import local_slot


def campus_recharge(day: CampusDay, t: datetime, length_s: float, target_w: float, prices: Prices | None) -> int:
    """1 if the campus recharges for `target_w` in the demand interval that holds local time `t`,
    0 if not, UNDECIDED without `prices`, a target, or half a day of the campus's profile."""
    prof = day.profile
    known = sum(1 for v in prof if v == v)
    if prices is None or not target_w > 0.0 or 2 * known < len(prof):
        return UNDECIDED
    _, slot, into, _ = local_slot(t, length_s)
    rate = prices.demand_rate(t)
    start = t - timedelta(seconds=into)
    rates = day_rates(prices, start, slot, len(prof), length_s, rate if rate > 0.0 else 0.0)
    env = envelope(prof, day.past)
    targets = slot_targets((), (), rates, float("nan"), target_w, env)
    return 1 if demand_charge_now(t, into, length_s, prices, env, targets, slot) else 0
