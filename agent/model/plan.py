"""What the control policy decided in one cycle, and why. Immutable; read by every sink.

Frozen dataclasses with a hand-written `__init__`, as in agent/model/snapshot.py (why: its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.model.pickling import fast_pickle


@dataclass(frozen=True, slots=True, init=False)
class Bound:
    """The window [lo_w, hi_w] of site battery power one controller allowed, and why.

    Positive = discharge. Controllers are applied in priority order; each may only narrow
    the window left by the ones before it.
    """

    source: str  # controller name, e.g. "device_limits", "reserve", "ramp"
    lo_w: float
    hi_w: float
    reason: str
    # The controller whose bound left this one no room, so the window was held at its edge and the
    # step went past this bound (the ramp's, agent.control.ramp); "" when this bound was honoured.
    forced_by: str

    def __init__(self, source: str, lo_w: float, hi_w: float, reason: str, forced_by: str = "") -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "lo_w", lo_w)
        object.__setattr__(self, "hi_w", hi_w)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "forced_by", forced_by)


@dataclass(frozen=True, slots=True, init=False)
class PccLimits:
    """One PCS in grid-power (PCC) control: its share of the grid correction and its output window."""

    share: float  # fraction (0..1) of the correction this PCS takes; the shares sum to 1
    max_discharge_w: float  # magnitudes, >= 0: device limits and the reserve window for this PCS
    max_charge_w: float

    def __init__(self, share: float, max_discharge_w: float, max_charge_w: float) -> None:
        object.__setattr__(self, "share", share)
        object.__setattr__(self, "max_discharge_w", max_discharge_w)
        object.__setattr__(self, "max_charge_w", max_charge_w)


@dataclass(frozen=True, slots=True, init=False)
class GridControl:
    """Ramp support delegated to the PCS: they regulate the grid import on their own meter.

    Each PCS moves its grid reference toward `target_w` by at most `ramp_w_per_s` and never below
    `grid_min_w` (0 when the site may not export), within its `pcs` limits.
    """

    target_w: float  # grid import target = net load - the planned battery power
    ramp_w_per_s: float
    grid_min_w: float
    pcs: dict[str, PccLimits]

    def __init__(self, target_w: float, ramp_w_per_s: float, grid_min_w: float, pcs: dict[str, PccLimits]) -> None:
        object.__setattr__(self, "target_w", target_w)
        object.__setattr__(self, "ramp_w_per_s", ramp_w_per_s)
        object.__setattr__(self, "grid_min_w", grid_min_w)
        object.__setattr__(self, "pcs", pcs)


@dataclass(frozen=True, slots=True, init=False)
class FastPcs:
    """One PCS in the fast lane's window: the setpoints the 1 s policy allows it, and its own."""

    min_w: float  # most charge (<= 0) and most discharge (>= 0) it may be given: device limits,
    max_w: float  # derate and the reserve window for this PCS, as the 1 s dispatch used them
    setpoint_w: float  # what the 1 s plan wrote

    def __init__(self, min_w: float, max_w: float, setpoint_w: float) -> None:
        object.__setattr__(self, "min_w", min_w)
        object.__setattr__(self, "max_w", max_w)
        object.__setattr__(self, "setpoint_w", setpoint_w)


@dataclass(frozen=True, slots=True, init=False)
class FastWindow:
    """What the 1 s policy grants the sub-second fast lane (agent.control.fast) until its next cycle.

    The fast lane moves the PCS setpoints only inside this: the site battery within [lo_w, hi_w]
    (the bounds on the battery, controllers 1-3b), each PCS within its own window, the grid between
    grid_min_w and grid_max_w (controllers 4 and 4b) at the load it reads, toward target_grid_w at
    ramp_w_per_s.
    """

    t_mono: float  # the plan's snapshot time: the window is stale some cycles after it
    target_grid_w: float  # grid import the 1 s plan aims at (net load - its battery power)
    ramp_w_per_s: float  # the fastest the fast lane moves the grid
    grid_min_w: float  # grid floor (0 W when the site may not export)
    grid_max_w: float  # grid ceiling (the connection limit; inf: none)
    pv_w: float  # PV the 1 s cycle read (the fast lane reads only the load and grid meters)
    lo_w: float  # site battery window of the bounds on the battery (1-3b)
    hi_w: float
    pcs: dict[str, FastPcs]  # the PCS the fast lane may write (trusted, on setpoints)

    def __init__(
        self,
        t_mono: float,
        target_grid_w: float,
        ramp_w_per_s: float,
        grid_min_w: float,
        grid_max_w: float,
        pv_w: float,
        lo_w: float,
        hi_w: float,
        pcs: dict[str, FastPcs],
    ) -> None:
        object.__setattr__(self, "t_mono", t_mono)
        object.__setattr__(self, "target_grid_w", target_grid_w)
        object.__setattr__(self, "ramp_w_per_s", ramp_w_per_s)
        object.__setattr__(self, "grid_min_w", grid_min_w)
        object.__setattr__(self, "grid_max_w", grid_max_w)
        object.__setattr__(self, "pv_w", pv_w)
        object.__setattr__(self, "lo_w", lo_w)
        object.__setattr__(self, "hi_w", hi_w)
        object.__setattr__(self, "pcs", pcs)


@dataclass(frozen=True, slots=True, init=False)
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
    shortfall_w: float  # |requested - achievable| when dispatch could not meet it
    alarms: tuple[str, ...]  # alarm codes raised this cycle
    # Set when PCS in grid-power (PCC) control hold the ramp: what to write to them. The PCS named
    # here regulate the grid; pcs_setpoints_w is still the planned split (and the setpoint of
    # every other PCS). None: every PCS follows its setpoint (and any PCC-capable one leaves the mode).
    grid_control: GridControl | None
    # The limits the agent allows per cluster where they are below what its BMS reports (the
    # snapshot's max_charge_w / max_discharge_w): (max charge W, max discharge W), magnitudes, for
    # every trusted cluster behind a PCS the operator derated. None: the agent allows the BMS limits.
    allowed_limits_w: dict[str, tuple[float, float]] | None
    # What the fast lane may do until the next cycle ([control] fast_lane_s): None when it must not
    # write (off, or a mode other than auto: failsafe, outage, operator; PCC control; grid down).
    fast_window: FastWindow | None
    # With ramp support on, the controller whose bound left no room inside the ramp's window this
    # cycle, so the grid moved past the ramp limit (agent.control.edges.step_cause): "device_limits"
    # for a safety trip (a BMS fault or lost PCS took clusters out at once) or a load step beyond the
    # fleet's power, "edges" / "reserve" for one beyond what its energy allows, "no_export",
    # "grid_import_limit"; "" when the grid moved within the ramp bound.
    step_cause: str

    def __init__(
        self,
        seq: int,
        mode: str,
        site_setpoint_w: float,
        requested_w: float,
        decided_by: str,
        reason: str,
        bounds: tuple[Bound, ...],
        pcs_setpoints_w: dict[str, float],
        cluster_setpoints_w: dict[str, float],
        shortfall_w: float = 0.0,
        alarms: tuple[str, ...] = (),
        grid_control: GridControl | None = None,
        allowed_limits_w: dict[str, tuple[float, float]] | None = None,
        fast_window: FastWindow | None = None,
        step_cause: str = "",
    ) -> None:
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "site_setpoint_w", site_setpoint_w)
        object.__setattr__(self, "requested_w", requested_w)
        object.__setattr__(self, "decided_by", decided_by)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "bounds", bounds)
        object.__setattr__(self, "pcs_setpoints_w", pcs_setpoints_w)
        object.__setattr__(self, "cluster_setpoints_w", cluster_setpoints_w)
        object.__setattr__(self, "shortfall_w", shortfall_w)
        object.__setattr__(self, "alarms", alarms)
        object.__setattr__(self, "grid_control", grid_control)
        object.__setattr__(self, "allowed_limits_w", allowed_limits_w)
        object.__setattr__(self, "fast_window", fast_window)
        object.__setattr__(self, "step_cause", step_cause)


# the plan goes to the API process every cycle (agent/model/pickling.py)
for _cls in (Bound, PccLimits, GridControl, FastPcs, FastWindow, Plan):
    fast_pickle(_cls)
