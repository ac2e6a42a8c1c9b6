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
beat the demand rate (per kW-month); otherwise charging stays under the demand target. Never
above a level the load itself billed or reached (demand.raise_cap_w): the month's billed peak
stays at or under the peak without the battery (issue 13).

Where no round trip pays (PG&E E-20 at 0.15 USD/kWh of wear), or none from this slot within 24 h
(its weekend at 0.021), the slot charges for demand instead (demand_charge_now): the energy the
demand levels need is worth the demand charge it holds down. Discharge keeps back what the rest of
today's shaving needs as the levels count it (keep_wh: the week's envelope at their aim), so the
levels and arbitrage price a stored kWh the same way: the levels take it where a kWh of shaving is
worth at least the round trip's spread (levels.py's multiplier starts there), arbitrage the rest.
"""

from __future__ import annotations

import calendar
import math
from datetime import datetime, timedelta
from typing import Final

from agent.control.cycle import Cycle
from agent.control.demand import CHARGE_MARGIN, headroom_wh, need_wh, target_w
from agent.control.demand import MARGIN as DEMAND_MARGIN
from agent.control.envelope import ENVELOPE_DAYS
from agent.control.fleet import Fleet
from agent.control.prices import Prices
from agent.control.state import ROLE_CHARGE, ROLE_DISCHARGE, ROLE_HOLD, ROLE_NONE, IntervalState, TouState
from agent.control.window import AUTO, Window
from agent.model.config import ControlConfig
from agent.model.interval import DAY_S

NAN: Final = math.nan
INF: Final = math.inf


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

    sell = later_pays(q, c, len(q), eff, deg)
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


def later_pays(q: list[float], c: int, stop: int, eff: float, deg: float) -> float:
    """The first price after `q[c]` (before index `stop`) that pays for charging at `q[c]` through the
    round trip `eff` and the wear `deg`, unless a cheaper price comes first (charge there); NaN: none."""
    p = q[c]
    for j in range(c + 1, stop):
        if (q[j] - deg) * eff > p:
            return q[j]
        if q[j] < p:
            break
    return NAN


def recharge_wh(
    t: datetime,
    into: float,
    length_s: float,
    prices: Prices,
    round_trip: float,
    wear_per_kwh: float,
    gain: float,
    env: tuple[float, ...],
    past: tuple[float, ...],
    targets: tuple[float, ...],
    slot: int,
    chg_w: float,
) -> tuple[float, ...]:
    """Per slot of today, the energy the battery recharges there for arbitrage, `gain` Wh counted for
    each Wh charged (a site's stored energy: its charge efficiency; a campus's AC energy: the round
    trip): in each later slot of today with the charge role (plan_slot: a later price within 24 h pays
    `round_trip` and `wear_per_kwh`), the headroom of the load `env` may bring under the slot's target,
    less the charge margin, at most `chg_w`, where every day of the ring `past` (envelope.py) was seen
    (a day not seen there may have had none); 0 elsewhere (the running slot too: it is the one
    deciding). NaN round trip: none anywhere."""
    n = len(targets)
    out = [0.0] * n
    if n == 0 or len(env) != n or len(past) != ENVELOPE_DAYS * n or not 0 <= slot < n:
        return tuple(out)
    t0 = t - timedelta(seconds=into)
    q = [prices.energy_price(t0 + timedelta(seconds=k * length_s)) for k in range(n - slot + n)]
    h = length_s / 3600.0
    for k in range(slot + 1, n):
        c = k - slot
        sell = later_pays(q, c, c + n + 1, round_trip, wear_per_kwh)
        if sell != sell or any(past[d + k] != past[d + k] for d in range(0, len(past), n)):
            continue  # no charge role there, or a day of the week not seen there: no headroom known
        lvl = targets[k] * (1.0 - CHARGE_MARGIN)
        room = lvl - env[k] if lvl < INF else chg_w
        if room > 0.0:  # NaN load compares False: no room counted
            out[k] = (room if room < chg_w else chg_w) * h * gain
    return tuple(out)


def plan_interval(
    prev: TouState,
    iv: IntervalState,
    *,
    t: datetime,
    now: float,
    slot: int,
    into: float,
    length_s: float,
    prices: Prices | None,
    cfg: ControlConfig,
    f: Fleet,
    ceil: float,
) -> TouState:
    """The time-of-use plan for the interval `iv` just opened (once per interval, at its first cycle).

    The slot's role and when its price run ends; the charge power worth raising the demand peak
    for; and the energy kept back from discharging for the rest of the day's demand shaving.
    """
    peaks, shave, rate, profile = iv.peaks, iv.shave_floor_w, iv.rate, iv.profile
    role, tou_end, raise_w, tou_price = ROLE_NONE, NAN, 0.0, NAN
    spread = prev.spread  # from the previous slot's price plan (NaN on the first)
    if prices is not None and cfg.tou_enabled:
        sp = plan_slot(t, into, length_s, prices, cfg, rate)
        role, tou_end, tou_price = sp.role, now + sp.end_s, sp.price
        if sp.raise_ok and f.capacity_wh > 0.0:
            # Raise only by what the headroom under the target (on the last day's profile) cannot
            # fill over the rest of the run: where the fleet fills anyway, a higher peak buys nothing.
            # At most the even rate that fills the fleet over the whole run (what raise_ok priced),
            # so a fleet still short near the run's end does not buy a steep peak in the last slots.
            need = max(0.0, ceil * 0.01 * f.capacity_wh - f.energy_wh) / cfg.charge_efficiency
            tgt0 = target_w(peaks, shave, rate, cfg.demand_target_w) * (1.0 - DEMAND_MARGIN)
            room = headroom_wh(profile, slot, math.ceil(sp.end_s / length_s), tgt0, f.max_chg_w, length_s)
            if need > room:
                raise_w = min((need - room) * 3600.0 / max(sp.end_s, length_s), need * 3600.0 / sp.run_s)
        spread = sp.spread
    eta_d = cfg.discharge_efficiency
    targets = iv.targets
    # The rest of today's shaving as the levels count it: on the week's envelope they were sized on,
    # at the aim they are held at (levels.within_energy counts the same). The energy arbitrage may
    # discharge is what that leaves. Counted on the last day's profile at the levels themselves,
    # arbitrage took energy the levels had been sized with, and the running window's level then had
    # to rise for it: at the levels without the aim, one day at 1 s on Shanghai lost 4.5 points on
    # train100 and 6.0 on train200 (the evening peak's level raised after the morning's arbitrage).
    # energy the later charge slots of today put back before the shaving that needs it (the flat
    # hours before Shanghai's evening peak): what arbitrage keeps is the most the battery falls
    # short at any later point, not the day's whole need
    refill_wh = (
        recharge_wh(
            t,
            into,
            length_s,
            prices,
            cfg.charge_efficiency * cfg.discharge_efficiency,
            cfg.degradation_cost_per_kwh,
            cfg.charge_efficiency,
            iv.env,
            iv.past,
            targets,
            slot,
            f.max_chg_w,
        )
        if prices is not None and cfg.tou_enabled
        else ()
    )
    keep = shave_keep_wh(iv.env, targets, slot, length_s, eta_d, refill_wh)
    campus = cfg.campus  # the campus coordinator's decisions, where it sent them (config.CampusPart)
    if campus is not None and campus.keep_wh >= 0.0:
        keep = campus.keep_wh
    if (
        role != ROLE_CHARGE
        and prices is not None
        # Nothing else refills the battery: no round trip pays (the previous slot's spread, the one the
        # levels were priced with, begin.py; NaN on the first interval: levels not priced, no charge),
        # or none pays from this slot within 24 h (hold: PG&E's weekend at 0.021 USD/kWh, where the
        # battery sat empty from Friday's peak window to Sunday and Saturday's load set the month's
        # maximum demand: train100 billed 4,361 of 4,372 kW, the optimum 3,981 every day)
        and (prev.spread <= 0.0 or (prev.spread > 0.0 and role == ROLE_HOLD))
        and (
            campus.recharge > 0
            if campus is not None and campus.recharge >= 0
            else demand_charge_now(t, into, length_s, prices, iv.env, targets, slot)
        )
    ):
        role, tou_end, raise_w = ROLE_CHARGE, now + length_s - into, 0.0
    return TouState(
        key=iv.key, role=role, end_mono=tou_end, raise_w=raise_w, price=tou_price, spread=spread, keep_wh=keep
    )


def shave_keep_wh(
    env: tuple[float, ...],
    targets: tuple[float, ...],
    slot: int,
    length_s: float,
    eta_d: float,
    room: tuple[float, ...] = (),
) -> float:
    """Stored energy the rest of today's demand shaving needs as the levels count it: the load the
    envelope `env` says may come, held at the aim (MARGIN under each slot's target) from `slot` to the
    day's end. What time-of-use discharge keeps back (plan_interval), for a site and, on the campus's
    envelope and target, for a campus (agent/campus/keep.py). `room`: per slot of the day, the energy
    charged back there (recharge_wh; (): none counted): then the most the battery falls short at any
    later point, a need after a refill counted only for what the refill does not cover."""
    aims = tuple(x * (1.0 - DEMAND_MARGIN) for x in targets)
    n = len(targets)
    if len(room) != n:
        return need_wh(env, aims, slot, n - slot, length_s, eta_d)
    # backwards from the day's end: what must be stored before each slot so that none falls short
    req = 0.0
    for k in range(n - 1, slot - 1, -1):
        req += need_wh(env, aims, k, 1, length_s, eta_d) - room[k]
        if req < 0.0:
            req = 0.0
    return req


def demand_charge_now(
    t: datetime,
    into: float,
    length_s: float,
    prices: Prices,
    profile: tuple[float, ...],
    targets: tuple[float, ...],
    slot: int,
) -> bool:
    """Whether to charge now, under the demand targets, for the next 24 h's demand shaving.

    Where no round trip pays (PG&E at a wear above its price spread) nothing else refills the
    battery, and what shaving spends on the first day is gone for the month's real peak (issue 13e).
    Energy kept to hold the demand levels is worth the demand charge it holds down, not the energy
    spread: each level is no deeper than pays with the recharge counted (levels.py), so charging
    for it pays. `profile` is the load the next day may bring (envelope.py); where it rises above a
    target in the next 24 h, the battery charges in the cheapest slots before that slot, never in a
    slot that needs the energy. To the ceiling, not to that day's estimate: the estimate comes from
    a few days (on the inference load a day needed 4x what the two days before it showed) and a
    kWh stored and not needed keeps its value for the next day; what a shortfall costs is the
    month's demand charge on the level given up.
    """
    n = len(targets)
    if n == 0 or len(profile) != n:
        return False
    first = -1
    for k in range(n):
        s = (slot + k) % n
        if profile[s] > targets[s]:  # NaN compares False
            first = k
            break
    if first <= 0:
        return False  # nothing needed in the next 24 h, or needed now (shaving, not charging)
    t0 = t - timedelta(seconds=into)
    p0 = prices.energy_price(t0)
    # not if a cheaper slot comes before the need: charge there
    return all(prices.energy_price(t0 + timedelta(seconds=k * length_s)) >= p0 for k in range(1, first))


def tou(w: Window, c: Cycle) -> Window:
    """Controller 7: charge, discharge or hold by the slot's role (auto mode; the role was planned
    once for the interval by plan_interval)."""
    if w.mode != AUTO:
        return w
    tp = c.tou
    role = tp.role
    if role == ROLE_NONE:
        return w
    f = c.fleet
    soc, cap = f.soc_pct, f.capacity_wh
    rem = tp.end_mono - c.now
    rem = rem if rem > 1.0 else 1.0
    if role == ROLE_CHARGE:
        # As fast as the bounds allow (what is still missing within one demand interval): the
        # price is the same over the whole run, and the demand bound keeps the charge under the
        # target, so a dip in the load (a job restart) is headroom to fill now rather than a
        # chance lost; spreading it evenly left the fleet short at the run's end.
        need_wh = max(0.0, c.ceil - soc) * 0.01 * cap / c.cfg.charge_efficiency
        fill_s = rem if tp.raise_w > 0.0 else min(rem, c.length_s)
        target, src = -need_wh * 3600.0 / fill_s, "tou_charge"
    elif role == ROLE_DISCHARGE:
        # what is left once the rest of the day's demand shaving and the grid limit's reserve
        # (limit_reserve.py) are provided for
        avail_wh = max(0.0, (soc - c.floor) * 0.01 * cap - tp.keep_wh - c.limit_wh) * c.cfg.discharge_efficiency
        target, src = min(avail_wh * 3600.0 / rem, max(c.net, 0.0)), "tou_discharge"
    else:
        return w.decided(AUTO, 0.0, "tou_hold")
    h = c.cfg.ramp_headroom_w
    if h > 0.0 and c.cfg.ramp_limit_w_per_s > 0.0:
        # Arbitrage is discretionary, ramp support is not: at full discharge in a peak-price
        # hour a load rise would find nothing left to answer it (and full charge a fall).
        if target > f.dis_w - h:
            target = max(0.0, f.dis_w - h)
        elif target < h - f.chg_w:
            target = min(0.0, h - f.chg_w)
    return w.decided(AUTO, target, src)
