"""ControllerState: what the policy remembers from one cycle to the next, split by concern.

- RampState: the previous cycle (its time, the grid import and battery power it planned: the ramp
  reference, unless the meters say the plant is elsewhere: agent.control.ramp), and the grid
  readings of the meter's running second (MeterSecond: agent.control.ramp_reference.tally);
- IntervalState: the running demand interval, the billing month's peaks and the day's profile;
- TouState: the time-of-use plan for the current price slot;
- LimitState: the energy the grid connection limit has needed (agent.control.limit_reserve);
- EdgeState: the fleet's device limits the previous cycle (agent.control.edges: their trend).

Frozen dataclasses with hand-written keyword-only __init__s (cheap to build once per cycle in the
compiled build: see agent/model/snapshot.py; keywords, so no caller lines up 18 positions). A cycle
that stays in the same interval hands the TouState on untouched. The loop keeps the latest state;
the offline replay threads it through 2.6 M cycles. `initial_state` accepts the month's billed
peaks persisted elsewhere (the ledger) so a restart never forgets a peak the utility will bill
anyway, which would make the shaving target too low.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from agent.control.envelope import ENVELOPE_DAYS
from agent.control.fleet import NO_COMMANDS
from agent.model.config import ControlConfig

NAN: Final = math.nan
ROLE_NONE: Final = -1
ROLE_HOLD: Final = 0
ROLE_CHARGE: Final = 1
ROLE_DISCHARGE: Final = 2
ROLE_NAMES = {ROLE_NONE: "none", ROLE_HOLD: "hold", ROLE_CHARGE: "charge", ROLE_DISCHARGE: "discharge"}


def rate_key(rate: float) -> float:
    """Demand windows are told apart by their summed rate (the Prices protocol names no windows)."""
    return round(rate, 6)


def month_peak(peaks: tuple[tuple[float, float], ...], rate: float) -> float:
    """The month's billed peak (W) in the demand window with this rate; 0 if none yet."""
    for k, v in peaks:
        if k == rate:  # the usual case: a tariff's rate is its own key (and round() costs ~1 µs)
            return v
    if peaks:
        key = rate_key(rate)
        for k, v in peaks:
            if k == key:
                return v
    return 0.0


def top_peak(peaks: tuple[tuple[float, float], ...]) -> float:
    """The highest peak the month bills in any demand window (W; 0 if none yet): the all-hours
    charge's, where the tariff has one."""
    top = 0.0
    for _, v in peaks:
        if v > top:  # NaN compares False
            top = v
    return top


@dataclass(frozen=True, slots=True, init=False)
class MeterSecond:
    """The grid readings in the utility meter's running second (a whole second of the wall clock)
    and the average of those in the second before it: how much of that second's ramp budget the grid
    has used so far (agent.control.ramp_reference)."""

    key: int  # the running second: floor of the wall time (s since the epoch; -1: none yet)
    sum_w: float  # the sum of its good grid readings (W)
    n: int  # how many
    prev_avg_w: float  # the readings' average over the second right before it (NaN: none, or not read)

    def __init__(self, *, key: int = -1, sum_w: float = 0.0, n: int = 0, prev_avg_w: float = NAN) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "sum_w", sum_w)
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "prev_avg_w", prev_avg_w)


METER0: Final = MeterSecond()


@dataclass(frozen=True, slots=True, init=False)
class RampState:
    t_mono: float  # monotonic time of the previous cycle (NaN: none yet)
    grid_w: float  # grid import the previous cycle planned (ramp reference; NaN: none)
    battery_w: float  # battery power the previous cycle planned (NaN: none): checked against the meters
    # ... and the one planned the cycle before it: the PCS moves from there to battery_w with its lag,
    # so a measured output between the two is that lag, not a discontinuity (agent.control.ramp)
    from_w: float
    meter: MeterSecond  # the grid readings of the meter's running second, this cycle's included
    # each PCS's and each cluster's command the previous cycle planned (the agent's own, not read
    # back): an isolation's ramp-out steps down from them (agent.control.fleet._build)
    pcs_w: Mapping[str, float]
    cluster_w: Mapping[str, float]
    # the net load (load - pv) the previous cycle read (NaN: none, or not good): the interval book counts
    # the time between two readings at the load read at its start (begin.metered_w)
    net_w: float

    def __init__(
        self,
        *,
        t_mono: float = NAN,
        grid_w: float = NAN,
        battery_w: float = NAN,
        from_w: float = NAN,
        meter: MeterSecond = METER0,
        pcs_w: Mapping[str, float] = NO_COMMANDS,
        cluster_w: Mapping[str, float] = NO_COMMANDS,
        net_w: float = NAN,
    ) -> None:
        object.__setattr__(self, "t_mono", t_mono)
        object.__setattr__(self, "grid_w", grid_w)
        object.__setattr__(self, "battery_w", battery_w)
        object.__setattr__(self, "from_w", from_w)
        object.__setattr__(self, "meter", meter)
        object.__setattr__(self, "pcs_w", pcs_w)
        object.__setattr__(self, "cluster_w", cluster_w)
        object.__setattr__(self, "net_w", net_w)


@dataclass(frozen=True, slots=True, init=False)
class IntervalState:
    # --- the running demand interval (aligned by agent.model.interval) ---
    key: int  # interval index (agent.model.interval.interval_key; -1: none)
    rate: float  # demand rate (per kW-month) at the interval's start
    grid_ws: float  # measured import energy so far (W s)
    net_ws: float  # baseline (load - pv) energy so far (W s)
    covered_s: float  # seconds of good measurements in it
    # the baseline energy so far with each reading held at the grid connection limit (W s, the sum of
    # min(net, limit) dt; net_ws where no limit is set; NaN: not kept): what the interval imports while
    # the battery holds the limit, which demand shaving forecasts the rest of the interval from
    capped_ws: float
    # --- the billing month ---
    month: int  # year x 12 + month - 1 of the peaks below (-1: unknown)
    peaks: tuple[tuple[float, float], ...]  # (rate key, highest interval average import W)
    profile: tuple[float, ...]  # baseline average per slot of the day (last 24 h; NaN unknown)
    shave_floor_w: float  # the level this interval is defended at: targets[slot] (inf: none; NaN: unknown)
    # per slot of the day, the level shaving defends there over the next 24 h: the higher of what
    # the month already bills at that slot's rate and its share of the fleet's energy (demand.slot_targets)
    targets: tuple[float, ...]
    # the baseline averages of the last days, a ring by (day % ENVELOPE_DAYS) x slots + slot (NaN: unknown):
    # their highest per slot is the day the next one may bring (interval.envelope)
    past: tuple[float, ...]
    # per slot of the day, the highest of the profile and `past` (envelope.envelope): the load the
    # next day may bring, computed once when the interval opens for the levels and the ToU recharge
    env: tuple[float, ...]
    margin: float  # the fraction the running interval aims under its target (demand.close_interval; NaN: MARGIN)
    # the all-hours level the last week's optimum holds (week_level.py), worked out once on day
    # `week_day` (a date ordinal; -1: never) if it bills the all-hours charge alone (NaN: not such a day)
    week_day: int
    week_level_w: float
    # the same level on that day if it has demand windows (NaN: not such a day): the highest level
    # any window slot is shaved to (demand.close_interval)
    week_cap_w: float
    # the level the last such day of this billing month was held at (W; NaN: none yet): an all-hours
    # peak billed just over it is that day's error at its aim, not a level (begin.week_level)
    week_aim_w: float
    # the baseline's moving average over the last demand.PERSIST_S (W, exponential; NaN: no reading yet):
    # the load the rest of the interval is held at by demand.persistence_w, carried across intervals
    net_avg_w: float
    # the highest baseline reading of the running interval (W; NaN: none yet): what the load may come
    # back at after a job restart's dip, which demand.in_dip_w defers discharge against
    top_w: float

    def __init__(
        self,
        *,
        key: int = -1,
        rate: float = 0.0,
        grid_ws: float = 0.0,
        net_ws: float = 0.0,
        covered_s: float = 0.0,
        capped_ws: float = NAN,
        month: int = -1,
        peaks: tuple[tuple[float, float], ...] = (),
        profile: tuple[float, ...] = (),
        shave_floor_w: float = NAN,
        targets: tuple[float, ...] = (),
        past: tuple[float, ...] = (),
        env: tuple[float, ...] = (),
        margin: float = NAN,
        week_day: int = -1,
        week_level_w: float = NAN,
        week_cap_w: float = NAN,
        week_aim_w: float = NAN,
        net_avg_w: float = NAN,
        top_w: float = NAN,
    ) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "grid_ws", grid_ws)
        object.__setattr__(self, "net_ws", net_ws)
        object.__setattr__(self, "covered_s", covered_s)
        object.__setattr__(self, "capped_ws", capped_ws)
        object.__setattr__(self, "month", month)
        object.__setattr__(self, "peaks", peaks)
        object.__setattr__(self, "profile", profile)
        object.__setattr__(self, "shave_floor_w", shave_floor_w)
        object.__setattr__(self, "targets", targets)
        object.__setattr__(self, "past", past)
        object.__setattr__(self, "env", env)
        object.__setattr__(self, "margin", margin)
        object.__setattr__(self, "week_day", week_day)
        object.__setattr__(self, "week_level_w", week_level_w)
        object.__setattr__(self, "week_cap_w", week_cap_w)
        object.__setattr__(self, "week_aim_w", week_aim_w)
        object.__setattr__(self, "net_avg_w", net_avg_w)
        object.__setattr__(self, "top_w", top_w)


@dataclass(frozen=True, slots=True, init=False)
class TouState:
    key: int  # the interval this plan was made for (-1: none)
    role: int  # ROLE_*
    end_mono: float  # when the current price run ends
    raise_w: float  # charge power worth adding above the demand target here (0: none)
    price: float
    spread: float  # best arbitrage value per kWh discharged over the price horizon
    keep_wh: float  # stored energy kept from arbitrage for the rest of the day's shaving

    def __init__(
        self,
        *,
        key: int = -1,
        role: int = ROLE_NONE,
        end_mono: float = NAN,
        raise_w: float = 0.0,
        price: float = NAN,
        spread: float = NAN,
        keep_wh: float = 0.0,
    ) -> None:
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "role", role)
        object.__setattr__(self, "end_mono", end_mono)
        object.__setattr__(self, "raise_w", raise_w)
        object.__setattr__(self, "price", price)
        object.__setattr__(self, "spread", spread)
        object.__setattr__(self, "keep_wh", keep_wh)


@dataclass(frozen=True, slots=True, init=False)
class LimitState:
    deficit_wh: float  # what an ideal battery holding grid_import_limit_w has given and not yet got back
    key: int  # the demand interval the running maximum belongs to (-1: none)
    slot_max_wh: float  # the deficit's maximum in that interval
    past_wh: tuple[float, ...]  # the deficit's maximum per demand interval, a ring over the last days
    past_max_wh: float  # max(past_wh)
    ahead_wh: float  # what the day profile's averages above the limit need for the rest of the day
    seen_s: float  # seconds of readings counted so far, up to a day (the 24 h maximum is known after that)

    def __init__(
        self,
        *,
        deficit_wh: float = 0.0,
        key: int = -1,
        slot_max_wh: float = 0.0,
        past_wh: tuple[float, ...] = (),
        past_max_wh: float = 0.0,
        ahead_wh: float = 0.0,
        seen_s: float = 0.0,
    ) -> None:
        object.__setattr__(self, "deficit_wh", deficit_wh)
        object.__setattr__(self, "key", key)
        object.__setattr__(self, "slot_max_wh", slot_max_wh)
        object.__setattr__(self, "past_wh", past_wh)
        object.__setattr__(self, "past_max_wh", past_max_wh)
        object.__setattr__(self, "ahead_wh", ahead_wh)
        object.__setattr__(self, "seen_s", seen_s)


@dataclass(frozen=True, slots=True, init=False)
class EdgeState:
    """The fleet's device limits the previous cycle: their trend (agent.control.edges)."""

    dis_w: float  # trusted fleet's discharge and charge limits (W, magnitudes; NaN: none yet)
    chg_w: float
    capacity_wh: float  # the trusted fleet's nameplate: another fleet (a trip, an isolation), no trend

    def __init__(self, *, dis_w: float = NAN, chg_w: float = NAN, capacity_wh: float = NAN) -> None:
        object.__setattr__(self, "dis_w", dis_w)
        object.__setattr__(self, "chg_w", chg_w)
        object.__setattr__(self, "capacity_wh", capacity_wh)


_RAMP0 = RampState()
_EDGE0 = EdgeState()
_INTERVAL0 = IntervalState()
_TOU0 = TouState()
_LIMIT0 = LimitState()


@dataclass(frozen=True, slots=True, init=False)
class ControllerState:
    ramp: RampState
    interval: IntervalState
    tou: TouState
    limit: LimitState
    edge: EdgeState

    def __init__(
        self,
        *,
        ramp: RampState = _RAMP0,
        interval: IntervalState = _INTERVAL0,
        tou: TouState = _TOU0,
        limit: LimitState = _LIMIT0,
        edge: EdgeState = _EDGE0,
    ) -> None:
        object.__setattr__(self, "ramp", ramp)
        object.__setattr__(self, "interval", interval)
        object.__setattr__(self, "tou", tou)
        object.__setattr__(self, "limit", limit)
        object.__setattr__(self, "edge", edge)

    def month_peak(self, rate: float) -> float:
        """The month's billed peak (W) in the demand window with this rate; 0 if none yet."""
        return month_peak(self.interval.peaks, rate)


def initial_state(
    cfg: ControlConfig,
    month_peaks: Mapping[float, float] | None = None,
    month: tuple[int, int] | None = None,
    profile: Sequence[float] | None = None,
    past: Sequence[float] | None = None,
) -> ControllerState:
    """A fresh state; `month_peaks` maps demand rate -> peak W already billed in `month` (year, month).

    Peaks are only kept for the month they belong to: the first cycle in another month drops them.
    `profile` seeds the baseline (load - pv) average per demand interval of the day, from midnight
    (e.g. yesterday's, from the ledger), so demand shaving knows what level the fleet can hold
    from the first interval instead of learning it over a day. `past` seeds the ring of the last
    days' averages (envelope.ring_of, from the ledger's last week), which the levels are priced and
    held on (demand.held_days): without it they learn it again over a week.
    """
    if month_peaks and month is None:
        raise ValueError("month_peaks: give the (year, month) they belong to")
    peaks: list[tuple[float, float]] = []
    for rate, w in (month_peaks or {}).items():
        if not (math.isfinite(rate) and math.isfinite(w)) or w < 0:
            raise ValueError(f"month_peaks: peak {w!r} W at rate {rate!r} must be finite and >= 0")
        peaks.append((rate_key(rate), float(w)))
    m = -1 if month is None else month[0] * 12 + month[1] - 1
    prof = tuple(float(v) for v in profile) if profile is not None else ()
    if prof and len(prof) != math.ceil(86400.0 / cfg.demand_interval_s):
        raise ValueError(
            f"profile: needs one value per {cfg.demand_interval_s:g} s interval of the day "
            f"({math.ceil(86400.0 / cfg.demand_interval_s)}), got {len(prof)}"
        )
    spd = math.ceil(86400.0 / cfg.demand_interval_s)
    ring = tuple(float(v) for v in past) if past is not None else ()
    if ring and len(ring) != ENVELOPE_DAYS * spd:
        raise ValueError(
            f"past: needs {ENVELOPE_DAYS} days of {spd} intervals ({ENVELOPE_DAYS * spd}), got {len(ring)}"
        )
    return ControllerState(interval=IntervalState(month=m, peaks=tuple(peaks), profile=prof, past=ring))
