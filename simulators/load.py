"""GPU data-centre load models: seeded synthetic training jobs, measured-trace replay, inference.

Every model offers a scalar `at(t)` (live simulator, t in seconds since the simulation start)
and a vectorised `series(start_s, n, dt)` (offline analysis); both give the same values.

Time of day: `day_offset_s` is the site-local time of day (s after midnight) at t = 0, so
diurnal shapes line up with the tariff windows.
"""

from __future__ import annotations

import bisect
import csv
import math
import random
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

TRACE_H100 = Path("/work/shared/data/h100-node-training-100stepsync.csv")
# the same node and job synchronizing every 200 steps (its file has no time_seconds column)
TRACE_H100_200 = Path("/work/shared/data/h100-node-training-200stepsync.csv")


class LoadModel(Protocol):
    def at(self, t: float) -> float: ...

    def series(self, start_s: float, n: int, dt: float) -> Array: ...


def _times(start_s: float, n: int, dt: float) -> Array:
    if n < 0 or dt <= 0:
        raise ValueError(f"series needs n >= 0 and dt > 0, got n={n!r}, dt={dt!r}")
    return start_s + dt * np.arange(n, dtype=np.float64)


PRUNE_AT = 20_000  # breakpoints kept before old ones are forgotten (~1 simulated day)
KEEP_S = 3600.0  # history kept behind the latest query


class SyntheticTraining:
    """Large synchronized training jobs on `nodes` 8-GPU nodes (seeded, piecewise linear).

    A job: warm-up (data loading), then iterations of compute (~4.5 kW/node) and a
    communication dip (~1.1 kW/node); every `checkpoint_every_s` a longer checkpoint dip; the
    job ends after a random length, either cleanly or by failure (instant drop to idle), then
    an idle gap until the next job (or the restart after a failure). Ramps follow the measured
    H100 trace: up ~1 s, down ~0.3 s. The schedule is generated lazily and cached, so `at`
    and `series` agree for any t >= 0.
    """

    def __init__(
        self,
        nodes: int = 1250,
        seed: int = 0,
        idle_w: float = 600.0,
        compute_w: float = 4500.0,
        comm_w: float = 1100.0,
        checkpoint_w: float = 1300.0,
        base_w: float = 0.0,
        compute_s: tuple[float, float] = (6.0, 14.0),
        comm_s: tuple[float, float] = (1.0, 3.0),
        checkpoint_every_s: float = 1800.0,
        checkpoint_s: float = 60.0,
        job_s: tuple[float, float] = (3600.0, 6 * 3600.0),
        idle_gap_s: tuple[float, float] = (120.0, 900.0),
        failure_prob: float = 0.3,
        ramp_up_s: float = 1.0,
        ramp_down_s: float = 0.3,
    ):
        if nodes < 1:
            raise ValueError(f"synthetic load: nodes must be >= 1, got {nodes!r}")
        self.nodes = nodes
        self.n = float(nodes)
        self.base_w = base_w
        self._rng = random.Random(seed)
        self._p = (idle_w, compute_w, comm_w, checkpoint_w)
        self._compute_s, self._comm_s = compute_s, comm_s
        self._ckpt_every, self._ckpt_s = checkpoint_every_s, checkpoint_s
        self._job_s, self._gap_s = job_s, idle_gap_s
        self._fail = failure_prob
        self._up, self._down = ramp_up_s, ramp_down_s
        # breakpoints of per-node power (t, W), linear in between; starts idle
        self._t: list[float] = [0.0]
        self._w: list[float] = [idle_w]
        self._tn: Array = np.array(self._t)
        self._wn: Array = np.array(self._w)
        self._dirty = False
        self._job()  # a job is already starting at t = 0 (the demo shows swings at once)

    # --- schedule generation --------------------------------------------------------------------
    def _go(self, level: float, hold_s: float) -> None:
        """Ramp from the current level to `level`, then hold it for `hold_s`."""
        t, w = self._t[-1], self._w[-1]
        ramp = self._up if level > w else self._down
        self._t.append(t + ramp)
        self._w.append(level)
        self._t.append(t + ramp + hold_s)
        self._w.append(level)

    def _gap(self) -> None:
        self._go(self._p[0], self._rng.uniform(*self._gap_s))
        self._job()

    def _job(self) -> None:
        r = self._rng
        idle, compute, comm, ckpt = self._p
        end = self._t[-1] + r.uniform(*self._job_s)
        self._go(0.5 * (idle + compute), r.uniform(20.0, 60.0))  # warm-up: data loading, compile
        next_ckpt = self._t[-1] + self._ckpt_every
        failed = r.random() < self._fail
        while True:
            self._go(compute, r.uniform(*self._compute_s))
            if self._t[-1] >= end:
                break
            if self._t[-1] >= next_ckpt:
                self._go(ckpt, self._ckpt_s)
                next_ckpt = self._t[-1] + self._ckpt_every
            else:
                self._go(comm, r.uniform(*self._comm_s))
        if failed:  # a node fails mid-compute: the whole synchronized job stops at once
            self._t.append(self._t[-1] + 0.05)
            self._w.append(idle)
        self._dirty = True

    def _extend(self, t: float) -> None:
        while self._t[-1] < t:
            self._gap()
        if self._dirty:
            self._tn = np.array(self._t)
            self._wn = np.array(self._w)
            self._dirty = False

    def _prune(self, t: float) -> None:
        """Forget breakpoints more than KEEP_S before `t`: a simulator runs for months and asks
        for ever later times, and an append-only schedule grew ~1.5 MB per simulated day."""
        if len(self._t) < PRUNE_AT:
            return
        i = bisect.bisect_left(self._t, t - KEEP_S) - 1  # keep the breakpoint before the window
        if i > 0:
            del self._t[:i]
            del self._w[:i]
            self._dirty = True

    def _check(self, t: float) -> None:
        if t < self._t[0] and self._t[0] > 0.0:
            raise ValueError(f"t = {t:g} s is before the kept schedule (from {self._t[0]:g} s; KEEP_S = {KEEP_S:g})")

    # --- queries ------------------------------------------------------------------------------
    def at(self, t: float) -> float:
        self._check(t)
        self._extend(t)
        self._prune(t)
        ts, ws = self._t, self._w
        i = bisect.bisect_right(ts, t)
        if i <= 0:
            return self.base_w + self.n * ws[0]
        t0, w0 = ts[i - 1], ws[i - 1]
        t1, w1 = ts[i], ws[i]
        w = w0 if t1 <= t0 else w0 + (w1 - w0) * (t - t0) / (t1 - t0)
        return self.base_w + self.n * w

    def series(self, start_s: float, n: int, dt: float) -> Array:
        ts = _times(start_s, n, dt)
        self._check(start_s)
        self._extend(float(ts[-1]) if n else start_s)
        if self._dirty:
            self._tn = np.array(self._t)
            self._wn = np.array(self._w)
            self._dirty = False
        return np.asarray(self.base_w + self.n * np.interp(ts, self._tn, self._wn), dtype=np.float64)


class TraceReplay:
    """The measured H100 node trace (README in /work/shared/data) scaled to `nodes`, looped.

    Nodes in one synchronized job swing together, so the site draws `nodes` x the node trace.
    Between samples the value is linearly interpolated, so any step size works.
    """

    def __init__(self, nodes: int = 1250, path: Path = TRACE_H100, base_w: float = 0.0):
        if nodes < 1:
            raise ValueError(f"trace load: nodes must be >= 1, got {nodes!r}")
        ts: list[float] = []
        ws: list[float] = []
        try:
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    # time_seconds where the file has it, else the seconds since its first datetime
                    sec = row.get("time_seconds")
                    ts.append(float(sec) if sec is not None else datetime.fromisoformat(row["datetime"]).timestamp())
                    ws.append(float(row["power_watts"]))
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"trace load: cannot read {path} (time_seconds or datetime, power_watts): {e}") from None
        if len(ts) < 2:
            raise ValueError(f"trace load: {path} has fewer than 2 samples")
        self.nodes = nodes
        self.base_w = base_w
        step = float(np.median(np.diff(ts)))
        self.period_s = ts[-1] - ts[0] + step  # loop closes with one typical sample interval
        t = np.array(ts) - ts[0]
        w = np.array(ws)
        # append the first sample one period later so the loop wraps smoothly
        self._t = np.append(t, self.period_s)
        self._w = np.append(w, w[0])
        self._tl: list[float] = self._t.tolist()
        self._wl: list[float] = self._w.tolist()

    def at(self, t: float) -> float:
        x = t % self.period_s
        i = bisect.bisect_right(self._tl, x)
        t0, t1 = self._tl[i - 1], self._tl[i]
        w0, w1 = self._wl[i - 1], self._wl[i]
        return self.base_w + self.nodes * (w0 + (w1 - w0) * (x - t0) / (t1 - t0))

    def series(self, start_s: float, n: int, dt: float) -> Array:
        x = np.mod(_times(start_s, n, dt), self.period_s)
        return np.asarray(self.base_w + self.nodes * np.interp(x, self._t, self._w), dtype=np.float64)


class Inference:
    """Inference-style load: a diurnal shape (low at night, peak mid-afternoon) plus seeded ripple.

    Ripple is a sum of a few sinusoids with seeded periods (30 s-20 min) and phases: smooth,
    deterministic and identical in `at` and `series`.
    """

    def __init__(
        self,
        peak_w: float = 5_000_000.0,
        trough_w: float = 2_500_000.0,
        peak_hour: float = 15.0,
        ripple: float = 0.05,
        seed: int = 0,
        day_offset_s: float = 0.0,
    ):
        if trough_w > peak_w or trough_w < 0:
            raise ValueError(f"inference load: need 0 <= trough_w <= peak_w, got {trough_w!r}, {peak_w!r}")
        self.peak_w, self.trough_w, self.peak_hour = peak_w, trough_w, peak_hour
        self.ripple, self.day_offset_s = ripple, day_offset_s
        r = random.Random(seed)
        self._waves = [(2 * math.pi / r.uniform(30.0, 1200.0), r.uniform(0, 2 * math.pi)) for _ in range(4)]

    def at(self, t: float) -> float:
        return float(self.series(t, 1, 1.0)[0])

    def series(self, start_s: float, n: int, dt: float) -> Array:
        ts = _times(start_s, n, dt)
        hour = (ts + self.day_offset_s) / 3600.0
        shape = 0.5 * (1.0 + np.cos(2 * np.pi * (hour - self.peak_hour) / 24.0))
        mean = self.trough_w + (self.peak_w - self.trough_w) * shape
        rip = sum(np.sin(w * ts + ph) for w, ph in self._waves) / len(self._waves)
        return np.asarray(mean * (1.0 + self.ripple * rip), dtype=np.float64)


class WithCooling:
    """IT load plus cooling that lags it: cooling = (pue - 1) x first-order lag of IT (tau_s).

    `series` filters exactly (zero-order hold per step) starting from steady state at start_s.
    `at` keeps filter state between calls and expects non-decreasing t (the live simulator);
    going back in time restarts the filter from steady state.
    """

    def __init__(self, it: LoadModel, pue: float = 1.2, tau_s: float = 300.0, other_w: float = 0.0):
        if pue < 1.0 or tau_s < 0:
            raise ValueError(f"cooling: need pue >= 1 and tau_s >= 0, got pue={pue!r}, tau_s={tau_s!r}")
        self.it, self.pue, self.tau_s, self.other_w = it, pue, tau_s, other_w
        self._t: float | None = None
        self._y = 0.0  # lagged IT power

    def cooling_at(self, t: float) -> float:
        x = self.it.at(t)
        if self._t is None or t < self._t or self.tau_s == 0:
            self._y = x
        else:
            self._y += (x - self._y) * (1.0 - math.exp(-(t - self._t) / self.tau_s))
        self._t = t
        return (self.pue - 1.0) * self._y

    def at(self, t: float) -> float:
        c = self.cooling_at(t)
        return self.it.at(t) + c + self.other_w

    def series(self, start_s: float, n: int, dt: float) -> Array:
        x = self.it.series(start_s, n, dt)
        if n == 0:
            return x
        if self.tau_s == 0:
            y = x
        else:
            from scipy.signal import lfilter

            a = 1.0 - math.exp(-dt / self.tau_s)
            y, _ = lfilter([a], [1.0, -(1.0 - a)], x, zi=[(1.0 - a) * x[0]])
        return np.asarray(x + (self.pue - 1.0) * y + self.other_w, dtype=np.float64)


class Offset:
    """A load model plus a settable offset in W (load-step tests, fault injection)."""

    def __init__(self, inner: LoadModel):
        self.inner = inner
        self.offset_w = 0.0

    def at(self, t: float) -> float:
        return self.inner.at(t) + self.offset_w

    def series(self, start_s: float, n: int, dt: float) -> Array:
        return self.inner.series(start_s, n, dt) + self.offset_w
