"""Demand intervals: the one alignment rule shared by control, the ledger, billing and the API.

A utility's demand meter averages the import over intervals of `length_s` counted from local
midnight: interval k of a day starts at local midnight + k x length_s (the last one of the day
is cut at midnight when the length does not divide a day). Local, not Unix, time: in a zone whose
UTC offset is not a multiple of the length (UTC+5:30 with hourly intervals, say) the two differ.
For 15-min intervals in every real zone (all offsets are whole quarter hours) they coincide.

Three forms of the same rule:
- `local_slot` for the controller, which has the site-local wall time of the cycle;
- `interval_bounds` for a running accumulator fed Unix time (the ledger);
- `interval_starts` vectorised over Unix timestamps (billing).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

DAY_S: Final = 86400.0


def slots_per_day(length_s: float) -> int:
    """Intervals per local day (the last may be short)."""
    return math.ceil(DAY_S / length_s)


def local_slot(t: datetime, length_s: float) -> tuple[int, int, float, float]:
    """(key, slot of the day, seconds into the interval, the interval's length) at local time `t`.

    `key` numbers intervals across days (day ordinal x slots per day + slot), so it changes exactly
    when the interval does.
    """
    secs = t.hour * 3600.0 + t.minute * 60.0 + t.second + t.microsecond * 1e-6
    slot = int(secs // length_s)
    key = t.toordinal() * slots_per_day(length_s) + slot
    into = secs - slot * length_s
    return key, slot, into, min(length_s, DAY_S - slot * length_s)


def interval_bounds(t: float, tz: tzinfo, length_s: float) -> tuple[float, float]:
    """(start, end) Unix seconds of the interval holding Unix time `t` in zone `tz`.

    The same start for every `t` in the interval (a running accumulator compares them): `t - into`
    is off by up to a microsecond (the local time's rounding, the float's last bit), so it is
    rounded to the millisecond; starts lie on whole seconds (zone offsets, interval lengths).
    """
    _, _, into, length = local_slot(datetime.fromtimestamp(t, tz), length_s)
    start = round(t - into, 3)
    return start, start + length


def utc_offsets(ts: npt.NDArray[np.float64], tz: ZoneInfo) -> npt.NDArray[np.float64]:
    """UTC offset (s) at each Unix timestamp, resolved once per distinct quarter hour (every real
    zone changes its offset on a quarter-hour boundary), and per quarter only in a UTC day whose
    first and last quarter differ (no real zone changes its offset twice within a day): a
    forecast's two weeks of history cost ~30 zone look-ups instead of ~1,300 (the planner's
    re-plans spent most of their forecast time here)."""
    q = np.floor(ts / 900.0).astype(np.int64)
    uq, inv = np.unique(q, return_inverse=True)
    offs = np.empty(len(uq), dtype=np.float64)
    day = uq // 96
    first = np.flatnonzero(np.concatenate(([True], day[1:] != day[:-1]))) if len(uq) else np.zeros(0, np.int64)
    last = np.concatenate((first[1:] - 1, [len(uq) - 1])) if len(uq) else first
    for a, b in zip(first.tolist(), last.tolist(), strict=True):
        oa = _offset_s(int(uq[a]), tz)
        ob = _offset_s(int(uq[b]), tz)
        if oa == ob:
            offs[a : b + 1] = oa
        else:
            for i in range(a, b + 1):
                offs[i] = _offset_s(int(uq[i]), tz)
    out: npt.NDArray[np.float64] = offs[inv.reshape(-1)]
    return out


def _offset_s(quarter: int, tz: ZoneInfo) -> float:
    """UTC offset (s) at the start of quarter hour `quarter` (Unix s / 900)."""
    return (datetime.fromtimestamp(quarter * 900, tz).utcoffset() or timedelta()).total_seconds()


def interval_starts(ts: npt.NDArray[np.float64], tz: ZoneInfo, length_s: float) -> npt.NDArray[np.float64]:
    """Start (Unix s) of the interval holding each timestamp: `interval_bounds` over an array."""
    off = utc_offsets(ts, tz)
    local = ts + off
    day = np.floor(local / DAY_S) * DAY_S
    start_local = day + np.floor((local - day) / length_s) * length_s
    out: npt.NDArray[np.float64] = start_local - off
    return out
