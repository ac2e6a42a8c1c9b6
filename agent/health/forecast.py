"""End-of-life forecast of one wear indicator that sees knees, as an interval (pure).

Real cells do not fade along a straight line: capacity stays nearly flat, then bends down at a
knee (resistance often bends up first), so a line fitted over the past predicts the end late.
The forecast fits, on the last `FIT_DAYS` days of the outlier-cleaned series, a quadratic
around today: level a, local slope b (today's pace, not the window's average) and curvature c.

- knee onset: the curvature is in the bad direction and significant (t-statistic of c >=
  `KNEE_T`, from the fit's own residual scatter, widened for autocorrelated residuals), i.e.
  the indicator accelerates;
- the interval: level, slope and curvature each at `SLOPE_Z` standard errors toward the limit
  (early end: the acceleration goes on, and a knee is sharper than a parabola fitted across
  it) and away from it (late end: the curve may straighten or level off, as a cell whose fade
  slows does; never later than the limit is reached at all: inf);
- the central figure: the quadratic when a knee is seen, today's straight-line pace otherwise.

Outlier cycles (a capacity test gone wrong, a sensor glitch) are replaced by the median of
their neighbourhood first (a Hampel filter: median +- `HAMPEL_K` scaled MADs), so one bad
reading moves neither the level nor the slope. Days are whatever unit the series uses (one
cycle per day in a replay).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FIT_DAYS = 100  # recent window the curve is fitted on (long enough to see curvature through noise)
MIN_FIT_POINTS = 60  # fewer finite days: no forecast (early life and short records fit noise)
KNEE_T = 3.0  # curvature t-statistic that counts as acceleration (3 sigma: rare by chance)
SLOPE_Z = 2.0  # the interval uses level, slope and curvature +- this many standard errors (~95 %)
HAMPEL_HALF = 7  # Hampel window: this many days either side
HAMPEL_K = 3.0  # replace a day further than this many scaled MADs from its window median
MAD_SCALE = 1.4826  # MAD -> standard deviation for normal noise
CURVATURE_EPS = 1e-12  # per day^2: below this a noise-free fit is a straight line (rounding)


@dataclass(frozen=True, slots=True)
class EolForecast:
    day: float  # the last day seen
    value: float  # fitted level today
    slope_per_day: float  # today's pace, signed (per day)
    accelerating: bool  # knee onset: significant curvature in the bad direction
    early_days: float  # days to the limit if the acceleration goes on (0: already there)
    mid_days: float  # central figure
    late_days: float  # days to the limit if the acceleration stops today (inf: never at this pace)


def hampel(values: np.ndarray, half: int = HAMPEL_HALF, k: float = HAMPEL_K) -> np.ndarray:
    """Copy of `values` with outliers replaced by their window's median (NaN stays NaN).

    The window is centred but clipped to the series, so the result at day i only ever uses
    days <= the last one given: a replay stays causal."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return v.copy()
    pad = np.full(len(v) + 2 * half, np.nan)
    pad[half : half + len(v)] = v
    win = sliding_window_view(pad, 2 * half + 1)  # NaN padding = a window clipped to the series
    med = _row_nanmedian(win)
    mad = MAD_SCALE * _row_nanmedian(np.abs(win - med[:, None]))
    with np.errstate(invalid="ignore"):  # NaN days compare False: they stay as they are
        bad = np.isfinite(v) & (mad > 0) & (np.abs(v - med) > k * mad)
    out = v.copy()
    out[bad] = med[bad]
    return out


def _row_nanmedian(m: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN (NaN for a row of NaN only). np.nanmedian does the same
    through masked arrays, some 50 times slower on the short rows a daily replay makes."""
    srt = np.sort(m, axis=1)  # NaN sorts last
    n = np.isfinite(m).sum(axis=1)
    rows = np.arange(len(m))
    lo = np.maximum((n - 1) // 2, 0)
    hi = np.maximum(n // 2, 0)
    hi = np.where(n > 0, hi, 0)
    med = 0.5 * (srt[rows, lo] + srt[rows, hi])
    return np.where(n > 0, med, np.nan)


def forecast(
    days: np.ndarray, values: np.ndarray, limit: float, worse: int, window: int = FIT_DAYS
) -> EolForecast | None:
    """Days until `values` reaches `limit` (`worse` = +1: rising is bad, -1: falling is bad).

    None when there are fewer than MIN_FIT_POINTS (at most `window`) finite days in the window."""
    d = np.asarray(days, dtype=float)
    if len(d) == 0:
        return None
    need = min(MIN_FIT_POINTS, window)
    near = d > d[-1] - window - HAMPEL_HALF  # the filter needs a few days beyond the window
    d = d[near]
    raw = np.asarray(values, dtype=float)[near]
    if int(np.isfinite(raw).sum()) < need:  # cheap exit for indicators a site lacks
        return None
    v = hampel(raw)
    ok = np.isfinite(v) & (d > d[-1] - window)
    if int(ok.sum()) < need:
        return None
    today = float(d[-1])
    x = d[ok] - today
    y = worse * v[ok]  # rising is bad from here on
    a_mat = np.vstack([np.ones_like(x), x, x * x]).T
    coef, *_ = np.linalg.lstsq(a_mat, y, rcond=None)
    a, b, c = (float(t) for t in coef)
    resid = y - a_mat @ coef
    dof = max(len(y) - 3, 1)
    sigma2 = float(resid @ resid) / dof * _ar1_inflation(resid)
    try:
        cov = sigma2 * np.linalg.inv(a_mat.T @ a_mat)
    except np.linalg.LinAlgError:  # all days equal: no shape to fit
        return None
    sb = math.sqrt(max(float(cov[1, 1]), 0.0))
    sc = math.sqrt(max(float(cov[2, 2]), 0.0))
    accelerating = c > KNEE_T * sc and c > CURVATURE_EPS  # an exact fit has sc = 0: demand real curvature
    remaining = worse * limit - a
    if remaining <= 0:
        return EolForecast(today, worse * a, worse * b, accelerating, 0.0, 0.0, 0.0)
    sa = math.sqrt(max(float(cov[0, 0]), 0.0))
    late = _reach(remaining + SLOPE_Z * sa, b - SLOPE_Z * sb, min(c - SLOPE_Z * sc, 0.0))
    early = _reach(max(remaining - SLOPE_Z * sa, 0.0), b + SLOPE_Z * sb, max(c + SLOPE_Z * sc, 0.0))
    mid = _reach(remaining, b, c) if accelerating else _reach(remaining, b, 0.0)
    # keep the order whatever the fit did (a negative slope bound can only make `late` larger)
    early = min(early, mid)
    late = max(late, mid)
    return EolForecast(today, worse * a, worse * b, accelerating, early, mid, late)


def _ar1_inflation(resid: np.ndarray) -> float:
    """Variance factor (1 + rho) / (1 - rho) for lag-1 autocorrelated residuals.

    Real aging data wanders (rest recovery, temperature, test interruptions): neighbouring days'
    residuals are alike, so the plain least-squares errors would claim far more certainty than
    the data holds (and see knees in every wobble). Positive correlation only; capped at 0.9."""
    if len(resid) < 3:
        return 1.0
    den = float(resid @ resid)
    rho = float(resid[1:] @ resid[:-1]) / den if den > 0 else 0.0
    rho = min(max(rho, 0.0), 0.9)
    return (1.0 + rho) / (1.0 - rho)


def _reach(remaining: float, slope: float, curv: float) -> float:
    """Smallest t > 0 with slope*t + curv*t^2 = remaining (> 0); inf if never."""
    if curv == 0:
        return remaining / slope if slope > 0 else math.inf
    disc = slope * slope + 4.0 * curv * remaining
    if disc < 0:  # decelerating: levels off before the limit
        return math.inf
    t = (-slope + math.sqrt(disc)) / (2.0 * curv)
    return t if t > 0 else math.inf
