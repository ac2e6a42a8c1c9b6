"""Window: the cycle's decision as it passes down the controllers, in priority order.

The window [lo, hi] of site battery power (W, positive = discharge) and which controller set
each edge; the bounds that narrowed it (Plan.bounds); the alarms raised on the way; the mode
(AUTO unless the outage, the failsafe or the operator claims the cycle); and the target with the
controller that set it. Immutable:
a controller that changes nothing hands back the window it got (most cycles, most controllers),
one that narrows or decides hands back a new one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from agent.model.plan import Bound

AUTO: Final = "auto"  # the mode unless a controller claims the cycle: the economic controllers run
UNDECIDED: Final = ""  # the source of the target before any controller set one


@dataclass(frozen=True, slots=True, init=False)
class Window:
    lo: float
    hi: float
    lo_src: str  # the controller whose bound is the lower edge
    hi_src: str
    bounds: tuple[Bound, ...]
    alarms: tuple[str, ...]
    mode: str  # Plan.mode: AUTO unless a controller claimed the cycle
    target: float  # W the deciding controller wants (NaN while undecided)
    src: str  # the controller that set the target (UNDECIDED before)

    def __init__(
        self,
        *,
        lo: float,
        hi: float,
        lo_src: str,
        hi_src: str,
        bounds: tuple[Bound, ...],
        alarms: tuple[str, ...] = (),
        mode: str = AUTO,
        target: float = math.nan,
        src: str = UNDECIDED,
    ) -> None:
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "lo_src", lo_src)
        object.__setattr__(self, "hi_src", hi_src)
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "alarms", alarms)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "src", src)

    def bound(self, lo: float, hi: float, lo_src: str, hi_src: str, b: Bound | None, alarm: str = "") -> Window:
        """The window narrowed to [lo, hi], recording bound `b` (if any) and raising `alarm` (if any)."""
        return Window(
            lo=lo,
            hi=hi,
            lo_src=lo_src,
            hi_src=hi_src,
            bounds=(*self.bounds, b) if b is not None else self.bounds,
            alarms=(*self.alarms, alarm) if alarm else self.alarms,
            mode=self.mode,
            target=self.target,
            src=self.src,
        )

    def decided(self, mode: str, target: float, src: str, alarms: tuple[str, ...] = ()) -> Window:
        """The window with the cycle claimed: `mode`, `target` W set by `src`, and more alarms."""
        return Window(
            lo=self.lo,
            hi=self.hi,
            lo_src=self.lo_src,
            hi_src=self.hi_src,
            bounds=self.bounds,
            alarms=(*self.alarms, *alarms) if alarms else self.alarms,
            mode=mode,
            target=target,
            src=src,
        )

    def with_alarm(self, alarm: str) -> Window:
        return self.decided(self.mode, self.target, self.src, (alarm,))
