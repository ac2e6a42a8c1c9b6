"""Shave levels per demand window: the battery's energy split across the tariff's demand charges.

A tariff may bill several demands at once (PG&E E-20: the month's maximum demand at any hour at
11.98 USD/kW, plus the summer weekday 12:00-18:00 demand at 16.37 and the part-peak one at 3.56).
The policy sees only the summed rate at each time (the Prices protocol), so a demand window is a
rate: the lowest rate of the day, when every slot of the day is billed at least that, is the
charge that covers all hours (the maximum demand: level M, worth that rate per kW-month, held in
every slot); each higher rate adds a window charge worth the difference, with its own level L_k
(held in its slots at min(M, L_k)). A single-rate tariff (Shanghai) has the one level M.

Each level is set by the same marginal value, a Lagrange multiplier `lam` (currency per kWh of
stored energy discharged): lowering a level by 1 kW costs one kWh a day for every hour a day spends
above it in that level's slots (on average over the last days known; the day profile's own hours
without them), and is worth its rate / DAYS_PER_MONTH a day; so a level sits where its hours above
equal that value / lam. The energy must hold each recent day (the last week's and the last 24 h,
demand.held_days), not their envelope, which is none of them (issue 13z). `lam` starts at what a kWh spent on
shaving costs (begin.py: the arbitrage it forgoes where arbitrage pays, else the wear and the
recharge less the import it avoids): no level is deeper than pays (a bound from the bill itself,
not a tuned constant). If the levels then need more energy over the day than the fleet holds on
the profile, that energy gets a price of its own, `mu` per kWh over each level's hours above it on
the profile, rising until they fit (with no days apart from the profile the two prices add up, as
one `lam` rising did before); between the last two profile corners the levels are blended to use
the energy exactly (with one level: the lowest level the energy holds, as before issue 13e).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

DAYS_PER_MONTH: Final = 30.4  # a demand charge is per kW-month, the energy is spent per day
_BISECT_STEPS: Final = 48
INF: Final = math.inf


class _Layer:
    """One demand charge as the levels see it: its value per kW-month, the slots it covers, and the
    load in them: the day profile's values (`top`: its highest) and the days' own values."""

    __slots__ = ("desc", "on_days", "on_profile", "slots", "top", "value")

    def __init__(self, value: float, slots: list[int], profile: tuple[float, ...], days: tuple[float, ...]) -> None:
        self.value = value
        self.slots = slots
        known = [profile[s] for s in slots if profile[s] == profile[s]]
        self.top = max(known) if known else -INF
        # Every value the level may sit at, with the slots a day spends there: on the days known,
        # each slot's value on each weighing 1 / their number (the slots above a level on average),
        # and on the profile, each slot's weighing 1 (the slots its energy is held for); a slot
        # without days counts its profile value for both.
        n = len(profile)
        rows: list[tuple[float, float, float]] = []
        for s in slots:
            p = profile[s]
            vals = [days[i] for i in range(s, len(days), n) if days[i] == days[i]] if n else []
            if not vals:
                if p == p:
                    rows.append((p, 1.0, 1.0))
                continue
            for v in vals:
                rows.append((v, 1.0 / len(vals), 0.0))
            if p == p:
                rows.append((p, 0.0, 1.0))
        rows.sort(reverse=True)
        self.desc = [v for v, _, _ in rows]  # highest first
        on_days, on_profile = [0.0], [0.0]  # [i]: the slots a day spends above desc[i] (ties aside)
        for _, wd, wp in rows:
            on_days.append(on_days[-1] + wd)
            on_profile.append(on_profile[-1] + wp)
        self.on_days, self.on_profile = on_days, on_profile

    def level(self, lam: float, mu: float, length_s: float, power_w: float) -> float:
        """The deepest level where a kW of it is worth what it costs: lam per kWh over the hours the
        days spend above it, and mu per kWh over the hours the profile does (the energy's price where
        the profile's need binds); never below what the power holds."""
        floor = self.top - power_w
        if not (lam > 0.0 or mu > 0.0):
            return floor
        worth = self.value / DAYS_PER_MONTH * 3600.0 / length_s  # per kW-day, in slots x per-kWh
        on_days, on_profile = self.on_days, self.on_profile
        lo, hi = 0, len(on_days) - 1  # the cost at index lo is within `worth`; both sums rise with i
        if lam * on_days[hi] + mu * on_profile[hi] <= worth:
            lo = hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if lam * on_days[mid] + mu * on_profile[mid] <= worth:
                lo = mid
            else:
                hi = mid
        lvl = self.desc[lo] if lo < len(self.desc) else -INF
        return lvl if lvl > floor else floor


def base_rate(rates: tuple[float, ...]) -> float:
    """The rate every slot is billed at least (0 if some slot is not billed): the all-hours charge."""
    return min(rates) if rates and min(rates) > 0.0 else 0.0


def _layers(profile: tuple[float, ...], rates: tuple[float, ...], days: tuple[float, ...]) -> list[_Layer]:
    n = len(profile)
    base = base_rate(rates)
    out = [_Layer(base, list(range(n)), profile, days)] if base > 0.0 else []
    for v in sorted({r for r in rates if r > base}):
        out.append(_Layer(v - base, [s for s in range(n) if rates[s] == v], profile, days))
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


def _fit_rows(profile: tuple[float, ...], fit: tuple[float, ...]) -> list[tuple[float, ...]]:
    """The days the energy must hold, one row per day of `fit` (day after day by slot) with any value
    known, its unknown slots at the profile's; the profile alone without such a day."""
    n = len(profile)
    rows: list[tuple[float, ...]] = []
    if n and len(fit) % n == 0:
        for d in range(0, len(fit), n):
            row = fit[d : d + n]
            if any(v == v for v in row):
                rows.append(tuple(v if v == v else p for v, p in zip(row, profile, strict=True)))
    return rows or [profile]


def _bisect(lo: float, hi: float, fits: Callable[[float], bool]) -> tuple[float, float]:
    """The bracket after _BISECT_STEPS halvings of [lo, hi], `fits` monotone: False at lo, True at
    hi (the lowest that fits is within the returned pair, `hi` fitting)."""
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        if fits(mid):
            hi = mid
        else:
            lo = mid
    return lo, hi


def enough(profile: tuple[float, ...]) -> bool:
    """At least half the day profile known: what any level is sized on (shave_levels)."""
    return 2 * sum(1 for v in profile if v == v) >= len(profile) > 0


def shave_levels(
    profile: tuple[float, ...],
    rates: tuple[float, ...],
    length_s: float,
    energy_wh: float,
    power_w: float,
    cost_per_kwh: float,
    days: tuple[float, ...] = (),
    fit: tuple[float, ...] = (),
) -> tuple[float, ...]:
    """The level (W) each slot of the day profile is shaved to; () with less than half a day of data.

    `rates`: the demand rate of each slot (0: not billed, inf level); `energy_wh`: what the fleet can
    give over the day (AC); `power_w`: at most this under each level's top; `cost_per_kwh`: what a
    kWh discharged for shaving costs (NaN or <= 0: no economic limit, the energy alone bounds).
    `days`: the days the profile sums up, day after day by slot (envelope.py's ring; NaN: unknown):
    a level is priced on the hours they spend above it on average, its energy held on the profile.
    A profile that is their envelope (per slot, the highest of them) is a day none of them was: on
    the savings bench's training fleet it had 13 slots above the level its days held 1.7 a day,
    and a level priced on it sat ~150 kW over what pays (BENCHMARKS.md, issue 5, branch issue-5r).
    `fit`: the days the energy must hold, in the profile's units, day after day by slot (NaN: unknown,
    the profile's value stands in; (): the profile itself): the levels need no more than the energy
    on each of them, the worst one binding. The envelope is that bound on none of them: a load whose
    plateau comes at another hour each day (the flat HPL loop, 2.25 h a period) is at its plateau in
    every slot of the envelope, which needed twice what any of its days did, and PG&E's peak window
    was held at 3,950 kW where the battery held 3,640 on each day (issue 13z).
    """
    n = len(profile)
    if not enough(profile) or len(rates) != n:
        return ()
    layers = _layers(profile, rates, days if len(days) % n == 0 else ())
    if not layers:
        return (INF,) * n
    h = length_s / 3600.0
    rows = _fit_rows(profile, fit)

    def need_wh(slot_levels: list[float]) -> float:
        return max(_need_wh(r, slot_levels, h) for r in rows)

    lam0 = cost_per_kwh if cost_per_kwh > 0.0 else 0.0  # NaN compares False

    def at(mu: float) -> list[float]:
        return [la.level(lam0, mu, length_s, power_w) for la in layers]

    lv = at(0.0)
    if need_wh(_slot_levels(layers, lv, n)) <= energy_wh:
        return tuple(_slot_levels(layers, [_shaved(la, x) for la, x in zip(layers, lv, strict=True)], n))
    # Too deep for the energy: the energy's own price `mu` rises until the levels fit, each level
    # charged it on the hours the profile (where the energy is held) spends above it: a level the
    # days price cheaply but the profile holds for many hours (a plateau at another hour each day)
    # gives way first. At mu_hi every level sits at its layer's top, which needs nothing.
    lo, hi = _bisect(
        0.0,
        max(la.value for la in layers) / (DAYS_PER_MONTH * h) * 2.0,
        lambda mu: need_wh(_slot_levels(layers, at(mu), n)) <= energy_wh,
    )
    at_lo, at_hi = at(lo), at(hi)
    deep, fits = _slot_levels(layers, at_lo, n), _slot_levels(layers, at_hi, n)

    # Between those corners the energy is linear in a blend of the two: use it exactly.
    def blend(t: float) -> list[float]:
        return [a + t * (b - a) if a > -INF else b for a, b in zip(deep, fits, strict=True)]

    t_hi = _bisect(0.0, 1.0, lambda t: need_wh(blend(t)) <= energy_wh)[1]
    lv = [a + t_hi * (b - a) for a, b in zip(at_lo, at_hi, strict=True)]
    return tuple(_slot_levels(layers, [_shaved(la, x) for la, x in zip(layers, lv, strict=True)], n))


def _shaved(layer: _Layer, level: float) -> float:
    """A level at its layer's top shaves nothing there: not defended at all (inf), or demand()'s
    margin under it would shave every hour at the top at a cost the level was set not to pay (at
    10 USD/kWh of wear a 1 % margin on a 4 MW afternoon cost 9,600 USD in 3 days for 1,134 saved)."""
    return INF if level >= layer.top else level


def _worst_row(
    rows: list[tuple[float, ...]],
    targets: tuple[float, ...],
    idx: list[int],
    keep: float,
    x: float,
    kept: list[int],
) -> tuple[float, int, int]:
    """On the row that needs the most above the `targets`, held `keep` times under (in the slots
    `idx` at least `x`, in the slots `kept` as they are): its need (W x slots), and its slots above
    their level in `idx` and in `kept`."""
    worst, above, above_kept = -1.0, 0, 0
    for row in rows:
        s, a, b = 0.0, 0, 0
        for k in idx:
            t = targets[k] if targets[k] > x else x
            if row[k] > t * keep:
                s += row[k] - t * keep
                a += 1
        for k in kept:
            if row[k] > targets[k] * keep:
                s += row[k] - targets[k] * keep
                b += 1
        if s > worst:
            worst, above, above_kept = s, a, b
    return (worst if worst > 0.0 else 0.0), above, above_kept


def within_energy(
    targets: tuple[float, ...],
    load: tuple[float, ...],
    slot: int,
    n_slots: int,
    aim: float,
    stored_wh: float,
    length_s: float,
    days: tuple[float, ...] = (),
    tail: int = 0,
    tail_ratio: float = 1.0,
) -> tuple[float, ...]:
    """`targets` with the lowest of the `n_slots` slots from `slot` raised, just enough that the
    energy stored now (`stored_wh`, AC) holds `load` (the envelope of the days that may come; with
    `days`, each of them) at their aim, `aim` under each, to the last of them, and the `tail` slots
    after them at their own targets; unchanged where it does.

    The levels are sized on a full battery and the load's interval averages; the battery holds them
    `aim` under from what it has when their slots come. On the first afternoon of a month at the
    demo's 0.021 USD/kWh of wear (PG&E E-20) that ran the battery empty in the peak window's last
    half hour, and the month billed the load's own peak there: everything spent before was wear.
    A level the energy cannot hold to the end of the day is raised now, evenly over the slots left
    (the lowest first: a kW of level costs the same energy in each slot above it), never lowered.
    `days`: the days `load` is the envelope of, day after day by slot (NaN: unknown, `load`'s value
    stands in; (): `load` itself): the energy must hold each of them, not their envelope, which
    is none of them (shave_levels' `fit`).
    `tail`: slots after the running ones whose levels the battery must still hold from what it has
    (interval.roll: a lower-rate shoulder after a window, before the night refills it); their need
    is kept for them, not raised for. Where they alone need more than is stored, they are left out.
    `tail_ratio`: the running slots' demand rate over the tail's. The window gives way for the tail
    only where that is the cheaper kWh: a kW of window level frees a kWh for each of its slots above
    it (on the day that binds), a kW of tail level one for each of the tail's, so the tail is kept
    while the window's slots above the raised level are at least `tail_ratio` times the tail's.
    """
    n = len(targets)
    if n == 0 or len(load) != n or stored_wh != stored_wh:  # NaN: unknown
        return targets
    h = length_s / 3600.0
    keep = 1.0 - aim
    # the slots that need energy: only their targets are raised (a raised target elsewhere would be
    # charging headroom above what the month bills)
    n_run = min(n_slots, n)
    idx = [k % n for k in range(slot, slot + n_run) if load[k % n] > targets[k % n] * keep]
    end = slot + n_run + max(0, min(tail, n - n_run))
    kept = [k % n for k in range(slot + n_run, end) if load[k % n] > targets[k % n] * keep]

    rows = _fit_rows(load, days)
    if not idx:
        return targets
    lo, top = min(targets[k] for k in idx), max(load[k] for k in idx) / keep
    if kept and _worst_row(rows, targets, [], keep, -INF, kept)[0] * h > stored_wh:
        kept = []  # the shoulder alone needs more than is stored: the running window's energy is its own

    def raised(kept: list[int]) -> float:
        """The lowest level of the running slots the energy holds with `kept`'s need kept (NaN: it
        holds them as they are)."""
        if _worst_row(rows, targets, idx, keep, -INF, kept)[0] * h <= stored_wh:
            return math.nan
        return _bisect(lo, top, lambda x: _worst_row(rows, targets, idx, keep, x, kept)[0] * h <= stored_wh)[1]

    hi = raised(kept)
    if kept and hi == hi:  # the window gives way for the shoulder only where its kW is the cheaper kWh
        _, above, above_kept = _worst_row(rows, targets, idx, keep, hi, kept)
        if above < tail_ratio * above_kept:
            hi = raised([])
    if hi != hi:  # NaN: held as they are
        return targets
    out = list(targets)
    for k in idx:  # never above the slot's own load: there it needs nothing (nor leaves room to charge)
        x = hi if hi < load[k] / keep else load[k] / keep
        if out[k] < x:
            out[k] = x
    return tuple(out)
