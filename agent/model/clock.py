"""One clock for a site that may run faster than real time (an accelerated simulation).

A `SiteClock` maps real time to the site's time: at Unix time `epoch` the two agree and from
there the site's clock runs `speed` times as fast. Two numbers, so separate processes share it
by being given both (`ems-agent simulate --speed N --epoch E` and `ems-agent run --speed N
--epoch E`; `ems-agent demo --speed N` picks the epoch and passes it on): no IPC, no global
monkeypatching. The agent takes the clock's functions as its injected clocks (loop, hub,
devices, ledger, health through the snapshot's time), the simulator steps its physics on the
same rate. At speed 1 it is the real clock.

Durations in the site file (cycle, staleness, ledger hold, PCS revert timer) are in site seconds.
A host cannot poll a site faster than some real period, so `accelerate` stretches the cycle to at
least `MIN_REAL_CYCLE_S` real seconds (6 site seconds at x60) and the durations derived from it;
`revert_s` gives the PCS revert timer in the PCS's own (site) seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from agent.model.config import SiteConfig

MIN_REAL_CYCLE_S = 0.1  # a demo cycle (19 devices polled) takes tens of ms on a busy 2-core host
REVERT_CYCLES = 5.0  # PCS revert timer = this many cycles: survives one missed write ...
REVERT_MIN_REAL_S = 2.0  # ... and at least this much real time (host stalls, network jitter)
STALE_CYCLES = 3.0  # a reading older than this many (stretched) cycles is stale


@dataclass(frozen=True, slots=True)
class SiteClock:
    speed: float = 1.0  # site seconds per real second
    epoch: float = 0.0  # Unix time (real) at which the site's clock and the real one agree
    real: Callable[[], float] = field(default=time.time, compare=False)  # real Unix time
    real_mono: Callable[[], float] = field(default=time.monotonic, compare=False)

    def __post_init__(self) -> None:
        if not self.speed > 0.0 or self.speed != self.speed:
            raise ValueError(f"speed must be > 0, got {self.speed!r}")

    def now(self) -> float:
        """The site's Unix time (s)."""
        return self.epoch + (self.real() - self.epoch) * self.speed

    def wall(self, tz: ZoneInfo) -> datetime:
        return datetime.fromtimestamp(self.now(), tz)

    def monotonic(self) -> float:
        """Monotonic site seconds (the real monotonic clock scaled: it never steps)."""
        return self.real_mono() * self.speed

    def real_s(self, site_s: float) -> float:
        """Real seconds that `site_s` site seconds take."""
        return site_s / self.speed


def cycle_s(configured_s: float, speed: float) -> float:
    """The cycle in site seconds: as configured, stretched so a real cycle lasts MIN_REAL_CYCLE_S."""
    return max(configured_s, speed * MIN_REAL_CYCLE_S) if speed > 1.0 else configured_s


def accelerate(site: SiteConfig, speed: float) -> SiteConfig:
    """`site` with its cycle (and the staleness that follows it) stretched for `speed`; at speed
    <= 1 (or when the configured cycle is long enough) `site` unchanged."""
    c = cycle_s(site.cycle_s, speed)
    if c == site.cycle_s:
        return site
    return replace(site, cycle_s=c, stale_after_s=max(site.stale_after_s, STALE_CYCLES * c))


def revert_s(cycle: float, speed: float) -> float:
    """The PCS revert timer in the PCS's (site) seconds: REVERT_CYCLES cycles, at least
    REVERT_MIN_REAL_S of real time."""
    return max(REVERT_MIN_REAL_S * max(speed, 1.0), REVERT_CYCLES * cycle)
