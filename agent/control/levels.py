"""Shave levels per demand window: the battery's energy split across the tariff's demand charges.

A tariff may bill several demands at once (PG&E E-20: the month's maximum demand at any hour at
11.98 USD/kW, plus the summer weekday 12:00-18:00 demand at 16.37 and the part-peak one at 3.56).
The policy sees only the summed rate at each time (the Prices protocol), so a demand window is a
rate: the lowest rate of the day, when every slot of the day is billed at least that, is the
charge that covers all hours (the maximum demand: level M, worth that rate per kW-month, held in
every slot); each higher rate adds a window charge worth the difference, with its own level L_k
(held in its slots at min(M, L_k)). A single-rate tariff (Shanghai) has the one level M.

Each level is set by the same marginal value, a Lagrange multiplier `lam` (currency per kWh of
stored energy discharged): lowering a level by 1 kW costs one kWh a day for every hour the day
profile spends above it in that level's slots, and is worth its rate / DAYS_PER_MONTH a day; so a
level sits where its hours above equal that value / lam. `lam` starts at what a kWh spent on
shaving costs (begin.py: the arbitrage it forgoes where arbitrage pays, else the wear and the
recharge less the import it avoids): no level is deeper than pays (a bound from the bill itself,
not a tuned constant). If the levels then need more energy over the day than the fleet holds,
`lam` rises until they fit; between the last two profile corners the levels are blended to use
the energy exactly (with one level: the lowest level the energy holds, as before issue 13e).

The hours above a level are those of an average day of the days given (pooled: every day's values
of the layer's slots, the k-th highest with k = the hours x the days), and the energy check holds
each day (the day that needs the most). A slot may have its own cost (`slot_costs`: where the
battery is refilled for demand alone, shaving avoids that slot's import, not the day's dearest,
demand.refill_costs); the multiplier then adds to each slot's cost what it adds above `lam0`.
"""

from __future__ import annotations

import math
from typing import Final

DAYS_PER_MONTH: Final = 30.4  # a demand charge is per kW-month, the energy is spent per day
_BISECT_STEPS: Final = 48
INF: Final = math.inf


class _Layer:
    """One demand charge as the levels see it: its value per kW-month, the slots it covers, and its
    known values over the past days, pooled (a level's hours above it are an average day's), each
    with what a kWh shaved in its slot costs (`costs`; none: `lam` everywhere)."""

    __slots__ = ("cum", "desc", "ndays", "priced", "slots", "top", "value")

    def __init__(self, value: float, slots: list[int], days: list[tuple[float, ...]], costs: tuple[float, ...]) -> None:
        self.value = value
        self.slots = slots
        pairs = sorted(((d[s], s) for d in days for s in slots if d[s] == d[s]), key=lambda x: -x[0])
        self.desc = [v for v, _ in pairs]  # the known values over all the days, highest first
        self.top = self.desc[0] if pairs else -INF
        # the days known there: a day partly known counts whole (its unknown slots as none above)
        self.ndays = sum(1 for d in days if any(d[s] == d[s] for s in slots))
        cum = [0.0]  # cum[i]: what the i highest values' slot-hours cost beyond the multiplier
        for _, s in pairs:
            c = costs[s] if costs else 0.0
            cum.append(cum[-1] + (c if c > 0.0 else 0.0))
        self.cum = cum
        self.priced = bool(costs)

    def level(self, lam: float, length_s: float, power_w: float, base: float) -> float:
        """The level where the slot-hours above it on an average day cost what it is worth: each at
        its slot's cost plus `lam - base` (without costs: at `lam`), never below what the power holds."""
        floor = self.top - power_w
        if not lam > 0.0:
            return floor
        worth = self.value / DAYS_PER_MONTH * self.ndays / (length_s / 3600.0)
        mu = lam - base if self.priced else lam
        # k: the most values whose slot-hours together cost no more than the level is worth
        lo, hi = 0, len(self.desc)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.cum[mid] + mid * mu <= worth:
                lo = mid
            else:
                hi = mid - 1
        lvl = self.desc[lo] if lo < len(self.desc) else -INF
        return lvl if lvl > floor else floor


def base_rate(rates: tuple[float, ...]) -> float:
    """The rate every slot is billed at least (0 if some slot is not billed): the all-hours charge."""
    return min(rates) if rates and min(rates) > 0.0 else 0.0


def _layers(days: list[tuple[float, ...]], rates: tuple[float, ...], costs: tuple[float, ...]) -> list[_Layer]:
    n = len(rates)
    base = base_rate(rates)
    out = [_Layer(base, list(range(n)), days, costs)] if base > 0.0 else []
    for v in sorted({r for r in rates if r > base}):
        out.append(_Layer(v - base, [s for s in range(n) if rates[s] == v], days, costs))
    return [la for la in out if la.desc]


def _slot_levels(layers: list[_Layer], levels: list[float], n: int) -> list[float]:
    out = [INF] * n
    for la, lvl in zip(layers, levels, strict=True):
        for s in la.slots:
            if lvl < out[s]:
                out[s] = lvl
    return out


def _need_wh(profile: tuple[float, ...], slot_levels: list[float], h: float) -> float:
    """Energy (AC, Wh) the profile needs above the levels, `h` hours a slot."""
    s = 0.0
    for p, lvl in zip(profile, slot_levels, strict=True):
        if p > lvl:  # NaN compares False
            s += p - lvl
    return s * h


def shave_levels(
    days: list[tuple[float, ...]],
    rates: tuple[float, ...],
    length_s: float,
    energy_wh: float,
    power_w: float,
    cost_per_kwh: float,
    slot_costs: tuple[float, ...] = (),
) -> tuple[float, ...]:
    """The level (W) each slot of the day is shaved to, held on each of the `days` (day profiles, a
    value per slot of `rates`); () with no day at least half known.

    `rates`: the demand rate of each slot (0: not billed, inf level); `energy_wh`: what the fleet can
    give over a day (AC); `power_w`: at most this under each level's top; `cost_per_kwh`: what a
    kWh discharged for shaving costs (NaN or <= 0: no economic limit, the energy alone bounds);
    `slot_costs`: what it costs in each slot where that depends on the slot (its lowest is
    `cost_per_kwh`); a level's hours above it are those of an average day of `days`.
    """
    n = len(rates)
    days = [d for d in days if len(d) == n and 2 * sum(1 for v in d if v == v) >= n]
    if n == 0 or not days:
        return ()
    lam0 = cost_per_kwh if cost_per_kwh > 0.0 else 0.0  # NaN compares False
    costs = slot_costs if len(slot_costs) == n and lam0 > 0.0 else ()
    layers = _layers(days, rates, costs)
    if not layers:
        return (INF,) * n
    h = length_s / 3600.0

    def need(sl: list[float]) -> float:  # held on each of the days: the one that needs the most
        return max(_need_wh(d, sl, h) for d in days)

    def at(lam: float) -> list[float]:
        return [la.level(lam, length_s, power_w, lam0) for la in layers]

    lv = at(lam0)
    if need(_slot_levels(layers, lv, n)) <= energy_wh:
        return tuple(_slot_levels(layers, [_shaved(la, x) for la, x in zip(layers, lv, strict=True)], n))
    # Too deep for the energy: the multiplier rises until the levels fit. At lam_hi every level sits
    # at its layer's top (no hour above it is worth that much), which needs nothing.
    lo, hi = lam0, max(la.value * la.ndays for la in layers) / (DAYS_PER_MONTH * h) * 2.0 + lam0
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if need(_slot_levels(layers, at(mid), n)) <= energy_wh:
            hi = mid
        else:
            lo = mid
    deep, fits = _slot_levels(layers, at(lo), n), _slot_levels(layers, at(hi), n)
    # Between those corners the energy is linear in a blend of the two: use it exactly.
    t_lo, t_hi = 0.0, 1.0
    for _ in range(_BISECT_STEPS):
        t = 0.5 * (t_lo + t_hi)
        blend = [a + t * (b - a) if a > -INF else b for a, b in zip(deep, fits, strict=True)]
        if need(blend) <= energy_wh:
            t_hi = t
        else:
            t_lo = t
    lv = [
        la.level(lo, length_s, power_w, lam0)
        + t_hi * (la.level(hi, length_s, power_w, lam0) - la.level(lo, length_s, power_w, lam0))
        for la in layers
    ]
    return tuple(_slot_levels(layers, [_shaved(la, x) for la, x in zip(layers, lv, strict=True)], n))


def _shaved(layer: _Layer, level: float) -> float:
    """A level at its layer's top shaves nothing there: not defended at all (inf), or demand()'s
    margin under it would shave every hour at the top at a cost the level was set not to pay (at
    10 USD/kWh of wear a 1 % margin on a 4 MW afternoon cost 9,600 USD in 3 days for 1,134 saved)."""
    return INF if level >= layer.top else level


def within_energy(
    targets: tuple[float, ...],
    load: tuple[float, ...],
    slot: int,
    n_slots: int,
    aim: float,
    stored_wh: float,
    length_s: float,
) -> tuple[float, ...]:
    """`targets` with the lowest of the `n_slots` slots from `slot` raised, just enough that the
    energy stored now (`stored_wh`, AC) holds `load` (the day the envelope says may come) at their
    aim, `aim` under each, to the last of them; unchanged where it does.

    The levels are sized on a full battery and the load's interval averages; the battery holds them
    `aim` under from what it has when their slots come. On the first afternoon of a month at the
    demo's 0.021 USD/kWh of wear (PG&E E-20) that ran the battery empty in the peak window's last
    half hour, and the month billed the load's own peak there: everything spent before was wear.
    A level the energy cannot hold to the end of the day is raised now, evenly over the slots left
    (the lowest first: a kW of level costs the same energy in each slot above it), never lowered.
    """
    n = len(targets)
    if n == 0 or len(load) != n or stored_wh != stored_wh:  # NaN: unknown
        return targets
    h = length_s / 3600.0
    keep = 1.0 - aim
    # the slots that need energy: only their targets are raised (a raised target elsewhere would be
    # charging headroom above what the month bills)
    idx = [k % n for k in range(slot, slot + min(n_slots, n)) if load[k % n] > targets[k % n] * keep]

    def need(x: float) -> float:
        s = 0.0
        for k in idx:
            t = targets[k] if targets[k] > x else x
            if load[k] > t * keep:
                s += load[k] - t * keep
        return s * h

    if not idx or need(-INF) <= stored_wh:
        return targets
    lo = min(targets[k] for k in idx)
    hi = max(load[k] for k in idx) / keep
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if need(mid) <= stored_wh:
            hi = mid
        else:
            lo = mid
    out = list(targets)
    for k in idx:  # never above the slot's own load: there it needs nothing (nor leaves room to charge)
        x = hi if hi < load[k] / keep else load[k] / keep
        if out[k] < x:
            out[k] = x
    return tuple(out)
