"""Window: the cycle's decision as it passes down the controllers, in priority order.

The window [lo, hi] of site battery power (W, positive = discharge) and which controller set
each edge; the bounds that narrowed it (Plan.bounds); the alarms raised on the way; the mode
(AUTO unless the outage, the failsafe or the operator claims the cycle); and the target with the
controller that set it. Never changed once built:
a controller that changes nothing hands back the window it got (most cycles, most controllers),
one that narrows or decides hands back a new one.
"""

from __future__ import annotations

import math
from typing import Final

from agent.model.plan import Bound

AUTO: Final = "auto"  # the mode unless a controller claims the cycle: the economic controllers run
UNDECIDED: Final = ""  # the source of the target before any controller set one


class Window:
    """A plain record, not a frozen dataclass, built positionally: several are built per cycle, and
    in plain Python a frozen dataclass's object.__setattr__ and keywords cost five times as much.
    Never assigned to after __init__."""

    __slots__ = ("alarms", "bounds", "hi", "hi_src", "lo", "lo_src", "mode", "src", "target")

    def __init__(
        self,
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
        self.lo = lo
        self.hi = hi
        self.lo_src = lo_src  # the controller whose bound is the lower edge
        self.hi_src = hi_src
        self.bounds = bounds  # Plan.bounds so far
        self.alarms = alarms  # raised so far
        self.mode = mode  # Plan.mode: AUTO unless a controller claimed the cycle
        self.target = target  # W the deciding controller wants (NaN while undecided)
        self.src = src  # the controller that set the target (UNDECIDED before)

    def __repr__(self) -> str:
        return (
            f"Window([{self.lo:g}, {self.hi:g}] by {self.lo_src}/{self.hi_src}, mode {self.mode},"
            f" target {self.target:g} by {self.src or '-'}, bounds {[b.source for b in self.bounds]},"
            f" alarms {list(self.alarms)})"
        )

    def bound(self, lo: float, hi: float, lo_src: str, hi_src: str, b: Bound | None, alarm: str = "") -> Window:
        """The window narrowed to [lo, hi], recording bound `b` (if any) and raising `alarm` (if any)."""
        return Window(
            lo,
            hi,
            lo_src,
            hi_src,
            (*self.bounds, b) if b is not None else self.bounds,
            (*self.alarms, alarm) if alarm else self.alarms,
            self.mode,
            self.target,
            self.src,
        )

    def decided(self, mode: str, target: float, src: str, alarms: tuple[str, ...] = ()) -> Window:
        """The window with the cycle claimed: `mode`, `target` W set by `src`, and more alarms."""
        return Window(
            self.lo,
            self.hi,
            self.lo_src,
            self.hi_src,
            self.bounds,
            (*self.alarms, *alarms) if alarms else self.alarms,
            mode,
            target,
            src,
        )

    def with_alarm(self, alarm: str) -> Window:
        return self.decided(self.mode, self.target, self.src, (alarm,))
