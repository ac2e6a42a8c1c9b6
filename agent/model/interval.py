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
    zone changes its offset on a quarter-hour boundary)."""
    q = np.floor(ts / 900.0).astype(np.int64)
    uq, inv = np.unique(q, return_inverse=True)
    offs = np.fromiter(
        ((datetime.fromtimestamp(int(x) * 900, tz).utcoffset() or timedelta()).total_seconds() for x in uq),
        dtype=np.float64,
        count=len(uq),
    )
    out: npt.NDArray[np.float64] = offs[inv.reshape(-1)]
    return out


def interval_starts(ts: npt.NDArray[np.float64], tz: ZoneInfo, length_s: float) -> npt.NDArray[np.float64]:
    """Start (Unix s) of the interval holding each timestamp: `interval_bounds` over an array."""
    off = utc_offsets(ts, tz)
    local = ts + off
    day = np.floor(local / DAY_S) * DAY_S
    start_local = day + np.floor((local - day) / length_s) * length_s
    out: npt.NDArray[np.float64] = start_local - off
    return out
