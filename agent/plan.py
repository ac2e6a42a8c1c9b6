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
class PccLimits:
    """One PCS in grid-power (PCC) control: its share of the grid correction and its output window."""

    share: float  # fraction (0..1) of the correction this PCS takes; the shares sum to 1
    max_discharge_w: float  # magnitudes, >= 0: device limits and the reserve window for this PCS
    max_charge_w: float


@dataclass(frozen=True, slots=True)
class GridControl:
    """Ramp support delegated to the PCS: they regulate the grid import on their own meter.

    Each PCS moves its grid reference toward `target_w` by at most `ramp_w_per_s` and never below
    `grid_min_w` (0 when the site may not export), within its `pcs` limits.
    """

    target_w: float  # grid import target = net load - the planned battery power
    ramp_w_per_s: float
    grid_min_w: float
    pcs: dict[str, PccLimits]


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
    # Set when PCS in grid-power (PCC) control hold the ramp: what to write to them. The PCS named
    # here regulate the grid; pcs_setpoints_w is still the planned split (and the setpoint of
    # every other PCS). None: every PCS follows its setpoint (and any PCC-capable one leaves the mode).
    grid_control: GridControl | None = None
