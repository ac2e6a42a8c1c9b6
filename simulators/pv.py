"""PV output on a clear day: a smooth bell between sunrise and sunset, zero at night.

`day_offset_s` is the site-local time of day (s after midnight) at t = 0, as in load.py.
"""

from __future__ import annotations

import numpy as np

from simulators.load import Array, _times


class ClearSkyPv:
    def __init__(self, peak_w: float, sunrise_h: float = 6.0, sunset_h: float = 18.0, day_offset_s: float = 0.0):
        if peak_w < 0 or not 0 <= sunrise_h < sunset_h <= 24:
            raise ValueError(
                f"pv: need peak_w >= 0 and 0 <= sunrise_h < sunset_h <= 24, got {peak_w!r}, {sunrise_h!r}, {sunset_h!r}"
            )
        self.peak_w, self.sunrise_h, self.sunset_h = peak_w, sunrise_h, sunset_h
        self.day_offset_s = day_offset_s

    def series(self, start_s: float, n: int, dt: float) -> Array:
        hour = np.mod((_times(start_s, n, dt) + self.day_offset_s) / 3600.0, 24.0)
        x = (hour - self.sunrise_h) / (self.sunset_h - self.sunrise_h)
        # sin^1.5 over the daylight window: roughly the clear-sky irradiance on a tilted array
        shape = np.where((x > 0) & (x < 1), np.sin(np.pi * np.clip(x, 0.0, 1.0)) ** 1.5, 0.0)
        return np.asarray(self.peak_w * shape, dtype=np.float64)

    def at(self, t: float) -> float:
        return float(self.series(t, 1, 1.0)[0])
