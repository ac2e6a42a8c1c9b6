"""Does each PCS in grid-power (PCC) control regulate on a meter that agrees with the site's?

A PCS in that mode holds the grid import on its own meter (its CT at the point of common
coupling). A CT wired the wrong way round, or with the wrong ratio, still lets the PCS "hold"
its reading while the real grid import goes elsewhere: with reversed polarity its loop pushes
the wrong way until its window limit. The agent reads that PCS's meter back (`pcc_grid_w`) and has
the site's grid meter; this watch compares them.

The two are read a few milliseconds apart in the same poll while the GPU load swings by
megawatts within a second, so one cycle's difference means little. A wiring fault is a bias
that persists: over the last `window` cycles in the mode, the mean of the PCS's readings is
compared with the mean of the site meter's. The tolerance is the larger of `min_w` and `rel` x
the mean grid import (a CT ratio off by a few per cent is the PCS's concern, not the agent's).

A PCS found disagreeing is latched: the caller takes it out of grid-power control (it follows
setpoints again, and the ramp is held by the others or by the plan) until an operator has
looked at it and calls `release`. Deterministic: a function of the snapshots it is fed; no I/O,
no clock.
"""

from __future__ import annotations

from collections import deque

from agent.model.snapshot import PcsSnapshot, SiteSnapshot

WINDOW_CYCLES = 30
MIN_W = 100_000.0
REL = 0.2


class PccMeterWatch:
    def __init__(self, window: int = WINDOW_CYCLES, min_w: float = MIN_W, rel: float = REL) -> None:
        if window < 2 or not min_w > 0.0 or not rel >= 0.0:
            raise ValueError(f"pcc meter watch: window >= 2, min_w > 0, rel >= 0; got {window}, {min_w}, {rel}")
        self.window = window
        self.min_w = min_w
        self.rel = rel
        self._pairs: dict[str, deque[tuple[float, float]]] = {}  # pcs id -> (site grid W, PCS meter W)
        self.latched: dict[str, str] = {}  # pcs id -> what was found (kept until release)

    def update(self, snap: SiteSnapshot) -> dict[str, str]:
        """Feed one cycle's snapshot; returns the latched PCS (id -> message), new ones included."""
        grid = snap.grid_w
        grid_ok = snap.grid_up and grid.ok
        for p in snap.pcs:
            if p.id in self.latched:
                continue
            pairs = self._pairs.get(p.id)
            if not (grid_ok and _regulating(p)):
                if pairs:
                    pairs.clear()  # a window spans only consecutive cycles in the mode
                continue
            if pairs is None:
                pairs = self._pairs[p.id] = deque(maxlen=self.window)
            pairs.append((grid.value, p.pcc_grid_w.value))
            if len(pairs) == self.window:
                site_mean = sum(g for g, _ in pairs) / self.window
                pcs_mean = sum(m for _, m in pairs) / self.window
                tol = max(self.min_w, self.rel * abs(site_mean))
                if abs(pcs_mean - site_mean) > tol:
                    self.latched[p.id] = (
                        f"its grid meter reads {pcs_mean / 1e3:,.0f} kW on average over {self.window} cycles, the"
                        f" site's grid meter {site_mean / 1e3:,.0f} kW (tolerance {tol / 1e3:,.0f} kW): CT wiring"
                        " or ratio? Out of grid-power control until acknowledged"
                    )
                    pairs.clear()
        return dict(self.latched)

    def release(self, pcs_id: str) -> None:
        """An operator has seen it: the PCS may go back into grid-power control and is watched afresh."""
        self.latched.pop(pcs_id, None)
        self._pairs.pop(pcs_id, None)


def _regulating(p: PcsSnapshot) -> bool:
    return p.grid_control and p.pcc_active.ok and p.pcc_active.value == 1.0 and p.pcc_grid_w.ok
