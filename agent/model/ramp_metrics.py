"""Grid ramp as the utility sees it: one definition for analysis, the benches and the API.

The ramp is the change of the grid import between consecutive seconds of its 1 s average,
per second. A series sampled faster than 1 s is averaged per whole second first (in groups of
round(1 s / step) samples from its start); one sampled at 1 s or slower is compared sample to
sample, the change divided by the time between them. Unknown samples (NaN) give no ramp. A ramp
counts as over the limit above `SLACK` x the limit, so a limit met exactly does not count
through rounding.

The controller's ramp bound (agent.control.ramp) limits the change of the grid import it plans
from one cycle to the next; this is what the meter shows of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
SLACK = 1.0001


def grid_ramps(ts: FloatArray, w: FloatArray) -> tuple[FloatArray, FloatArray]:
    """(|ramp| W/s, the seconds each stands for) of series `w` at times `ts` (s)."""
    if len(ts) < 2:
        return np.zeros(0), np.zeros(0)
    step = float(np.median(np.diff(ts)))
    per_s = round(1.0 / step) if step < 1.0 else 1
    if per_s > 1:
        n = len(w) // per_s
        avg = w[: n * per_s].reshape(n, per_s).mean(axis=1)
        r = np.abs(np.diff(avg))
        dt = np.ones(len(r))
    else:
        dt = np.diff(ts)
        r = np.abs(np.diff(w)) / dt
    ok = np.isfinite(r)
    return r[ok], dt[ok]


@dataclass(frozen=True, slots=True)
class RampStats:
    max_w_per_s: float  # largest ramp (0 without any)
    p99_w_per_s: float
    over_limit_s: float  # seconds whose ramp exceeded the limit (0 when no limit given)
    over_limit_n: int  # ramps over the limit
    samples: int  # ramps counted


def ramp_stats(ts: FloatArray, w: FloatArray, limit_w_per_s: float = 0.0) -> RampStats:
    r, dt = grid_ramps(ts, w)
    if len(r) == 0:
        return RampStats(0.0, 0.0, 0.0, 0, 0)
    over = r > limit_w_per_s * SLACK if limit_w_per_s > 0 else np.zeros(len(r), dtype=bool)
    return RampStats(float(r.max()), float(np.percentile(r, 99)), float(np.sum(dt[over])), int(np.sum(over)), len(r))
