"""What the control policy decided in one cycle, and why. Immutable; read by every sink."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.pickling import fast_pickle


@fast_pickle
@dataclass(frozen=True, slots=True)
class Bound:
    """The window [lo_w, hi_w] of site battery power one controller allowed, and why.

    Positive = discharge. Controllers are applied in priority order; each may only narrow
    the window left by the ones before it.
    """

    source: str  # controller name, e.g. "device_limits", "reserve", "ramp"
    lo_w: float
    hi_w: float
    reason: str


@fast_pickle
@dataclass(frozen=True, slots=True)
class Plan:
    seq: int  # the snapshot's sequence number
    mode: str  # "auto", "conservative", "outage", "manual", "idle"
    site_setpoint_w: float  # total battery power after dispatch (what was achievable)
    requested_w: float  # what the policy wanted before dispatch
    decided_by: str  # the controller whose bound or target set the final value
    reason: str  # a sentence an operator can read
    bounds: tuple[Bound, ...]
    pcs_setpoints_w: dict[str, float]  # per PCS, what gets written
    cluster_setpoints_w: dict[str, float]  # per cluster share (0 for untrusted ones)
    shortfall_w: float = 0.0  # |requested - achievable| when dispatch could not meet it
    alarms: tuple[str, ...] = field(default_factory=tuple)  # alarm codes raised this cycle
