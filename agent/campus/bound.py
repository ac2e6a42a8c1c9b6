"""The campus's demand bound: the battery power its demand target needs now, decided once for the
campus on its own forecast, and each feeder's part of it.

An agent alone bounds its battery for the demand target by comparing its forecast of the rest of the
interval with the import it may still take (agent.control.demand: discharge at least the excess;
below it, charge at most the headroom). Under a campus share each agent did that against its own
share: a feeder whose GPU load swung up discharged, one whose load swung down held (charging is
discretionary), while the campus, where the swings cancel in part, needed nothing. Measured on a
hand-made campus (tests/test_campus_no_harm.py: three feeders swinging +-0.4 MW against each other
under a target at the campus's peak) the coordinated campus paid more than with no battery on both
tariffs where the pooled controller of the same batteries saved.

So the coordinator computes the bound the pooled controller would, on the campus: its forecast (the
feeders' demand forecasts summed: they are linear in the loads, allocate.as_forecast), its import so
far this interval and the campus target, with the same margins (demand.MARGIN on the target,
CHARGE_MARGIN more for charging, the charging credit spread as a site spreads its own:
demand.allowed_grid_w); and splits it over the fresh feeders as it splits the power the campus needs
under an import cap: a discharge by available power (cap) and energy (weight), a charge room by
charge power. The agent takes its part as its demand bound (config.CampusPart.demand_w), both ways: it
discharges exactly its part and charges at most its part. (Charging at most the lesser of its part and
its own share's room, a feeder's own step up stopped its charge at once, but the two splits differ and
the lesser of each summed under the campus's room: Shanghai month 86.8 % of the pooled controller's
savings that way, 106.2 % with the part alone; a step is answered a cycle late instead.)

The part is applied a cycle after the readings it was made on, and each feeder moves it by its own
step since (the pooled controller's bound moves with its reading: fully for a charge, by the reading's
weight in its forecast of the rest for a discharge). The steps sum to the campus's, so the parts plus
the steps sum to the campus's bound now, but each agent clamps its own at 0, and no split of a
piecewise bound into functions of each feeder's own step is right for every split of the steps. So
the coordinator sends with the parts the campus's ROOM (campus_need_w: how far it was under needing a
discharge), the same to every feeder, and a feeder whose part is not a discharge discharges its own
weighted step past the WHOLE room (agent.control.demand). For any split of the load among feeders:
- one feeder stepping up alone: exactly the pooled controller's discharge, at once (before: a cycle
  late, 16v: 18.4 MW against 0 on the PG&E month's costliest minute);
- several stepping up together: at most what the campus needs ((x - room)+ summed is at most
  (x summed - room)+ for x >= 0); the rest a cycle later, as before;
- steps going opposite ways: at most what the campus would need if the falling feeders had stood
  still, so never more than the rising ones' own steps past the room.
16v split the room itself over the feeders by power: the feeders discharged their own opposite
swings every minute (100 MWh more in the PG&E month, 89.7 % of the pooled controller). Tried with
this rule and not kept (BENCHMARKS.md, issue 16, branch issue-16x): the coordinator taking what the
feeders discharged beyond the campus's need (known at their next reports) off its next need cost
more demand saving than the wear it saved (PG&E 99.6 % against 102.3 % without).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.campus.allocate import FeederState
from agent.control.demand import CHARGE_MARGIN, MARGIN, allowed_grid_w, rest_allowed_w
from agent.control.dispatch import fill

_TINY_WH = 1.0  # a feeder with discharge power but ~no energy still gets a (tiny) weight
NO_BOUND = math.nan  # Share.demand_w: none sent, the agent bounds itself against its share


def as_forecast(fs: Sequence[FeederState]) -> list[FeederState]:
    """`fs` with each feeder's demand forecast as its net load, where it reported one.

    The demand target is an interval average, and each agent holds its share against its own forecast
    of the rest of the interval (the interval's average so far, steadied by the last one's: demand
    .interval_net_forecast_w), not against its reading now. Split on the readings, a share follows a
    feeder's load through every swing of its GPU jobs: a feeder caught low in a swing got a share under
    its own forecast and discharged for it, one caught high a share it charged into, while the campus
    needed neither (measured, PG&E 30 days: 887 MWh discharged where one controller of the same
    batteries spent 119). The forecasts are linear in the loads, so they sum to the campus's forecast:
    split on them, a feeder is asked to shave exactly its part of what the campus needs."""
    return [f if not math.isfinite(f.forecast_w) else replace(f, net_load_w=f.forecast_w) for f in fs]


def campus_need_w(
    target_w: float, fs: Sequence[FeederState], left_s: float, length_s: float, margin: float = MARGIN
) -> float:
    """The campus's discharge need (W; campus_bound_w's arguments): its rest forecast less the import
    its energy left allows at the aim. Below 0, how far it is under needing a discharge: the ROOM a
    feeder's own step up, weighed as the forecast weighs a reading, must exceed before the campus
    needs discharge from it (agent.control.demand's campus branch)."""
    return _need(target_w, fs, left_s, length_s, margin)[0]


def _need(
    target_w: float, fs: Sequence[FeederState], left_s: float, length_s: float, margin: float
) -> tuple[float, float, float, float, float, float]:
    """campus_need_w with what it was counted on: (need, forecast, aim, used W s, covered s, left s)."""
    left = min(max(left_s, 1.0), length_s)
    covered = length_s - left
    used = sum(f.interval_wh * 3600.0 for f in fs)  # W s
    fc = sum(f.net_load_w for f in as_forecast(fs))
    aim = target_w - margin * target_w
    return fc - rest_allowed_w(aim, used, covered, left), fc, aim, used, covered, left


def campus_bound_w(
    target_w: float, fs: Sequence[FeederState], left_s: float, length_s: float, margin: float = MARGIN
) -> float:
    """The campus's battery bound (W) for `target_w` (> 0, the fresh feeders' part of the campus
    target) with `left_s` of the `length_s` interval to run, aiming `margin` under it (the campus's
    economic level's own aim, levels.py): > 0 discharge at least this, < 0 charge at most this much
    (demand.demand's bound, on the campus)."""
    return bound_and_room_w(target_w, fs, left_s, length_s, margin)[0]


def bound_and_room_w(
    target_w: float, fs: Sequence[FeederState], left_s: float, length_s: float, margin: float = MARGIN
) -> tuple[float, float]:
    """(campus_bound_w, the ROOM: max(0, -campus_need_w)) on one count of the campus's need (what
    allocate sends each feeder)."""
    a, fc, aim, used, covered, left = _need(target_w, fs, left_s, length_s, margin)
    if a >= 0.0:
        return a, 0.0
    net = sum(f.net_load_w for f in fs)
    # Charging is discretionary and keeps CHARGE_MARGIN further under the aim, unless a raise is
    # priced (the valley charge worth a higher peak: demand.demand drops the margin for it). The
    # pooled controller's raise is capped by the campus's own top (demand.raise_cap_w) less the
    # margin, which is about the aim where the target is near that top (the bench: 184.5 MW both),
    # and a feeder's by its share: so where any feeder prices one, the campus charges to its aim.
    raised = any(f.raise_w > 0.0 for f in fs)
    allow = allowed_grid_w(aim if raised else aim - CHARGE_MARGIN * aim, used, covered, left, length_s)
    # The pooled controller charges only into the headroom the reading now leaves (net above the
    # forecast: none), and so does the campus: max(net, fc). The part is applied a cycle after the
    # readings it is made on, but each agent moves a charge part by its own step since, at once
    # (agent.control.demand), so the parts answer the campus's load at its reading then, as the pooled
    # controller's count does. 16f counted a reading under the forecast as if the next stood as far
    # above it (fc + |net - fc|), for a swing read at its bottom: on the 8-feeder PG&E month the campus
    # then charged nothing in the first night's lulls, its load 17-28 MW under its aim, where the
    # pooled controller charged 4.9-10.4 MW; 20 % less over the month's first 36 hours, and it met the
    # first summer-peak window 8.4 MWh emptier (at 5 s: 90.8 % of the pooled controller's savings; with
    # the pooled controller's count 102.5 %; BENCHMARKS.md, issue 16, the campus's charge count).
    return min(0.0, max(net, fc) - allow), -a


def split_bound(bound_w: float, fs: Sequence[FeederState]) -> list[float]:
    """`bound_w` split over `fs` (all fresh): a discharge by available power and energy, a charge room
    by charge power (each part at most what that feeder can do)."""
    if not fs:
        return []
    if bound_w > 0.0:
        caps = [f.discharge_w for f in fs]
        return fill(bound_w, caps, [max(f.energy_wh, _TINY_WH) for f in fs])
    if bound_w < 0.0:
        caps = [f.charge_w for f in fs]
        if sum(caps) <= 0.0:
            return [0.0] * len(fs)
        return [-x for x in fill(-bound_w, caps, [max(c, 1.0) for c in caps])]
    return [0.0] * len(fs)
