"""Oscillation in a frequency band: how much of the load's swing energy in the band reaches the grid.

Synchronized AI training makes the whole site's power swing with the job's step period; published
work on AI training power (Microsoft, OpenAI and NVIDIA, 2025) warns that this spectrum can meet
the grid's critical frequencies (its electromechanical modes: inter-area 0.1-0.8 Hz, local ones up
to ~2 Hz, hence the default band). A ramp limit bounds the size of each second's change, not how
much energy the grid sees at those frequencies, so this is measured apart.

The measure is the mean-square power in the band (W^2; its square root is the band's RMS swing in
W) from one periodogram of the whole series: mean removed, a periodic Hann window (its power
normalised out, so a sine of amplitude A whose frequency falls on a bin reads exactly A^2/2), and
the one-sided bins whose frequency lies in the band summed. The grid's band energy divided by the
load's says what the battery leaves of the oscillation; 1 minus it is what the battery removes
(negative: the battery adds oscillation in that band).

A series sampled every `step_s` shows nothing above its Nyquist frequency 1 / (2 step_s), nor
below 1 / its duration: the band is cut to what the sampling allows and a note says so; a band
entirely outside gives no figures (None), never zeros.

Pure: numpy arrays in, a dataclass out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_BAND_HZ = (0.1, 2.0)


@dataclass(frozen=True, slots=True)
class BandEnergy:
    band_hz: tuple[float, float]  # as asked
    analysed_hz: tuple[float, float] | None  # the part the sampling allows; None: none of it
    nyquist_hz: float
    load_w2: float | None  # mean-square power in the analysed band, W^2
    grid_w2: float | None
    note: str  # "" when the whole band was analysed

    @property
    def grid_to_load(self) -> float | None:
        """The grid's band energy relative to the load's (None without load energy in the band)."""
        if self.load_w2 is None or self.grid_w2 is None or self.load_w2 <= 0.0:
            return None
        return self.grid_w2 / self.load_w2

    @property
    def removed(self) -> float | None:
        """Share of the load's band energy the battery keeps off the grid (negative: it adds)."""
        r = self.grid_to_load
        return None if r is None else 1.0 - r

    def as_dict(self) -> dict[str, object]:
        return {
            "band_hz": list(self.band_hz),
            "analysed_hz": list(self.analysed_hz) if self.analysed_hz is not None else None,
            "nyquist_hz": self.nyquist_hz,
            "load_rms_kw": _rms_kw(self.load_w2),
            "grid_rms_kw": _rms_kw(self.grid_w2),
            "grid_to_load_energy": self.grid_to_load,
            "removed_share": self.removed,
            "note": self.note,
        }


def _rms_kw(w2: float | None) -> float | None:
    return None if w2 is None else math.sqrt(w2) / 1000.0


def _filled(w: FloatArray) -> FloatArray:
    """`w` with unknown (NaN) samples linearly interpolated from their known neighbours."""
    ok = np.isfinite(w)
    if ok.all():
        return w
    idx = np.arange(len(w))
    return np.interp(idx, idx[ok], w[ok])


def band_power_w2(step_s: float, w: FloatArray, lo_hz: float, hi_hz: float) -> float:
    """Mean-square of `w` (sampled every `step_s`) in frequencies [lo_hz, hi_hz]."""
    n = len(w)
    x = _filled(w) - float(np.nanmean(w))
    win = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)  # periodic Hann
    spec = np.abs(np.fft.rfft(x * win)) ** 2 / (n * float(np.sum(win**2)))
    spec[1 : (n + 1) // 2] *= 2.0  # one-sided: the negative frequencies' half (not DC, not Nyquist)
    f = np.fft.rfftfreq(n, step_s)
    sel = (f >= lo_hz) & (f <= hi_hz)
    e = float(np.sum(spec[sel]))
    # the window's rounding leaves ~1e-16 of every swing in every bin: below that, nothing is there
    return e if e > 1e-12 * float(np.sum(spec)) else 0.0


def band_energy(
    step_s: float, load_w: FloatArray, grid_w: FloatArray, band_hz: tuple[float, float] = DEFAULT_BAND_HZ
) -> BandEnergy:
    """Band energy of the load and of the grid (both sampled every `step_s`, same length).

    ValueError names the argument at fault (a band that is not lo < hi, mismatched series)."""
    lo, hi = band_hz
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi):
        raise ValueError(f"band_hz: expected 0 <= low < high, got {lo:g}..{hi:g} Hz")
    if not (math.isfinite(step_s) and step_s > 0.0):
        raise ValueError(f"step_s: expected a positive sample step, got {step_s!r}")
    if len(load_w) != len(grid_w):
        raise ValueError(f"grid_w: {len(grid_w)} samples for {len(load_w)} of load_w")
    nyq = 0.5 / step_s
    n = len(load_w)
    floor = 1.0 / (n * step_s) if n else math.inf  # one period over the whole series
    a, b = max(lo, floor), min(hi, nyq)
    notes = []
    if hi > nyq:
        notes.append(f"the band above {nyq:g} Hz is beyond the Nyquist frequency of a trace sampled every {step_s:g} s")
    if lo < floor:
        notes.append(f"the band below {floor:.3g} Hz is longer than the trace ({n * step_s:g} s)")
    known = np.isfinite(load_w).sum() >= 2 and np.isfinite(grid_w).sum() >= 2
    if a >= b or not known:
        if not known:
            notes.append("fewer than 2 known samples")
        return BandEnergy((lo, hi), None, nyq, None, None, "; ".join(notes))
    return BandEnergy(
        (lo, hi),
        (a, b),
        nyq,
        band_power_w2(step_s, load_w, a, b),
        band_power_w2(step_s, grid_w, a, b),
        "; ".join(notes),
    )
