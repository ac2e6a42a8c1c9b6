"""The envelope of the last days' load: per slot of the day, the highest baseline average of the
last ENVELOPE_DAYS days.

What demand shaving may need tomorrow is the worst recent day at each hour, not yesterday alone: a
training load's restarts come at any hour, and one day's profile missed most of them. A level set
so yesterday's profile just empties the battery is not held on a day with more above it, and the
energy spent on that day before the level gave way bought nothing (the month bills the day's
peak): on PG&E E-20 that was the whole first week's shaving (issue 13e).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

ENVELOPE_DAYS: Final = 7  # a week: the weekly rhythm of jobs and most of the day-to-day spread


def ring_index(key: int, spd: int) -> int:
    """Where interval `key` (agent.model.interval.local_slot's) sits in the ring: its day's row, its slot."""
    return (key // spd) % ENVELOPE_DAYS * spd + key % spd


def remember(past: tuple[float, ...], key: int, spd: int, avg: float) -> tuple[float, ...]:
    """The ring of past days' averages with interval `key`'s average `avg` written in."""
    ring = list(past) if len(past) == ENVELOPE_DAYS * spd else [math.nan] * (ENVELOPE_DAYS * spd)
    ring[ring_index(key, spd)] = avg
    return tuple(ring)


def ring_of(intervals: Iterable[tuple[int, float]], spd: int) -> tuple[float, ...]:
    """The ring as a controller leaves it after closing `intervals` ((key, baseline average W), oldest
    first; NaN: not counted): a restarted agent's from its ledger, a replay's from the days before
    its trace. Without it the levels are priced and held on the last 24 h alone for a week after
    every start (the ring refills a day at a day), while the ledger holds those days."""
    ring = [math.nan] * (ENVELOPE_DAYS * spd)
    for key, avg in intervals:
        if avg == avg:  # NaN: the interval was not counted, as remember() never writes one
            ring[ring_index(key, spd)] = avg
    return tuple(ring)


def envelope(profile: tuple[float, ...], past: tuple[float, ...]) -> tuple[float, ...]:
    """Per slot of the day, the highest of the profile and the past days' averages (NaN: none known)."""
    n = len(profile)
    if n == 0 or len(past) != ENVELOPE_DAYS * n:
        return profile
    out = list(profile)
    for i, v in enumerate(past):
        s = i % n
        if v > out[s] or (out[s] != out[s] and v == v):  # NaN compares False
            out[s] = v
    return tuple(out)
