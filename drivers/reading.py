"""One decoded value from a device, with the time it was read and how far to trust it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Quality(StrEnum):
    """How far a value can be trusted. Only GOOD values may ever reach a setpoint."""

    GOOD = "good"
    STALE = "stale"  # read successfully once, but too long ago
    OUT_OF_RANGE = "out_of_range"  # decoded, but outside the profile's valid range
    INVALID = "invalid"  # NaN/inf, SunSpec "not implemented", undecodable words
    COMM_ERROR = "comm_error"  # the device did not answer, or answered with an exception


@dataclass(frozen=True, slots=True)
class Reading:
    """A point's value as read. `t` is the monotonic time of the read (seconds)."""

    value: float | int | str | None
    quality: Quality
    t: float

    @property
    def ok(self) -> bool:
        if self.quality is not Quality.GOOD or self.value is None:
            return False
        return not (isinstance(self.value, float) and not math.isfinite(self.value))

    def number(self) -> float:
        """The value as a float, NaN when it is not a good number."""
        if not self.ok or isinstance(self.value, str):
            return math.nan
        return float(self.value)  # type: ignore[arg-type]
