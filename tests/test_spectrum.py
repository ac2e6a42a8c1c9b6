"""Band energy (agent.model.spectrum) on synthetic sines whose answers are known exactly.

A sine of amplitude A on a frequency bin has mean square A^2/2; with the periodic Hann window all
of it lies within one bin of its frequency, so a band around it reads A^2/2 to rounding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.model.spectrum import band_energy


def sine(n: int, step_s: float, *parts: tuple[float, float]) -> np.ndarray:
    t = np.arange(n) * step_s
    out = np.full(n, 5_000_000.0)  # a site's mean load: removed before the spectrum
    for amp, hz in parts:
        out = out + amp * np.sin(2 * np.pi * hz * t)
    return out


N, STEP = 6000, 0.1  # 600 s at 0.1 s: bins every 1/600 Hz, Nyquist 5 Hz

CASES = [
    # (load parts, grid parts, band, load mean square, grid/load energy, removed)
    ([(1e6, 0.5)], [(5e5, 0.5)], (0.1, 2.0), 0.5e12, 0.25, 0.75),  # battery halves the swing
    ([(1e6, 0.5)], [(1e6, 0.5)], (0.1, 2.0), 0.5e12, 1.0, 0.0),  # no battery
    ([(1e6, 0.5)], [(2e6, 0.5)], (0.1, 2.0), 0.5e12, 4.0, -3.0),  # battery doubles it
    # a slow swing (0.02 Hz) outside the band counts in neither; only the 1 Hz part is in the band
    ([(1e6, 0.02), (4e5, 1.0)], [(1e6, 0.02), (1e5, 1.0)], (0.1, 2.0), 0.08e12, 1 / 16, 15 / 16),
    # the same series, band around the slow swing: the battery leaves all of it
    ([(1e6, 0.02), (4e5, 1.0)], [(1e6, 0.02), (1e5, 1.0)], (0.01, 0.05), 0.5e12, 1.0, 0.0),
    # energy at 3 Hz only: outside a 0.1-2 Hz band
    ([(1e6, 3.0)], [(1e6, 3.0)], (0.1, 2.0), 0.0, None, None),
]


@pytest.mark.parametrize(("load", "grid", "band", "load_w2", "ratio", "removed"), CASES)
def test_band_energy_of_sines(
    load: list[tuple[float, float]],
    grid: list[tuple[float, float]],
    band: tuple[float, float],
    load_w2: float,
    ratio: float | None,
    removed: float | None,
) -> None:
    e = band_energy(STEP, sine(N, STEP, *load), sine(N, STEP, *grid), band)
    assert e.note == ""
    assert e.analysed_hz == band
    assert e.load_w2 == pytest.approx(load_w2, rel=1e-9, abs=1e-3)
    if ratio is None:
        assert e.grid_to_load is None and e.removed is None
    else:
        assert e.grid_to_load == pytest.approx(ratio, rel=1e-9)
        assert e.removed == pytest.approx(removed, rel=1e-9, abs=1e-12)
    d = e.as_dict()
    assert d["load_rms_kw"] == pytest.approx(math.sqrt(load_w2) / 1000.0, rel=1e-9, abs=1e-6)


def test_band_above_nyquist_gives_no_figures_and_says_why() -> None:
    # 1 s samples: Nyquist 0.5 Hz; a 1-2 Hz band cannot be seen at all
    w = sine(600, 1.0, (1e6, 0.25))
    e = band_energy(1.0, w, w, (1.0, 2.0))
    assert e.analysed_hz is None and e.load_w2 is None and e.removed is None
    assert e.nyquist_hz == 0.5
    assert "beyond the Nyquist frequency of a trace sampled every 1 s" in e.note


def test_band_cut_at_nyquist_analyses_what_the_sampling_allows() -> None:
    w = sine(600, 1.0, (1e6, 0.25))
    g = sine(600, 1.0, (3e5, 0.25))
    e = band_energy(1.0, w, g, (0.1, 2.0))
    assert e.analysed_hz == (0.1, 0.5)
    assert "above 0.5 Hz" in e.note
    assert e.load_w2 == pytest.approx(0.5e12, rel=1e-9)
    assert e.removed == pytest.approx(0.91, rel=1e-9)


def test_unknown_samples_are_interpolated_not_counted_as_swings() -> None:
    w = sine(N, STEP, (1e6, 0.5))
    g = w.copy()
    g[100] = np.nan  # one lost grid reading on a smooth sine: interpolation restores it closely
    e = band_energy(STEP, w, g)
    assert e.grid_to_load == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize(
    ("step", "band", "grid_len", "field"),
    [(0.1, (2.0, 1.0), N, "band_hz"), (0.1, (-1.0, 1.0), N, "band_hz"), (0.0, (0.1, 2.0), N, "step_s"),
     (0.1, (0.1, 2.0), N - 1, "grid_w")],
)  # fmt: skip
def test_bad_arguments_name_the_argument(step: float, band: tuple[float, float], grid_len: int, field: str) -> None:
    w = sine(N, STEP, (1e6, 0.5))
    with pytest.raises(ValueError, match=field):
        band_energy(step, w, w[:grid_len], band)
