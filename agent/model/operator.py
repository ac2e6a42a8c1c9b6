"""Operator commands (from the API or MQTT) and the operator state they change.

Pure: parsing and applying a command is a function of data. Both the API and the MQTT
command handler go through `parse_command` and `apply_command`, so one set of rules bounds
every way in. A rejected command raises CommandError naming the field and changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

MODES = ("auto", "idle", "conservative")
MAX_OVERRIDE_S = 4 * 3600.0
MIN_DERATE_PCT = 10.0  # below this, isolate the cluster instead (maintenance)


class CommandError(ValueError):
    """A command was refused. `field` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class SetMode:
    mode: str


@dataclass(frozen=True, slots=True)
class Override:
    """Hold the site battery at `setpoint_w` (positive = discharge) for `duration_s`.

    Still bounded by device limits, the backup reserve and the no-export rule.
    """

    setpoint_w: float
    duration_s: float


@dataclass(frozen=True, slots=True)
class ClearOverride:
    pass


@dataclass(frozen=True, slots=True)
class SetReserve:
    reserve_load_w: float
    reserve_minutes: float


@dataclass(frozen=True, slots=True)
class SetMaintenance:
    cluster_id: str
    on: bool


@dataclass(frozen=True, slots=True)
class AckAlarm:
    alarm: str


@dataclass(frozen=True, slots=True)
class Derate:
    """Cap a cluster at a share of its BMS limits (100 = lift the cap), e.g. on a health proposal."""

    cluster_id: str
    max_power_pct: float


Command = SetMode | Override | ClearOverride | SetReserve | SetMaintenance | AckAlarm | Derate


@dataclass(frozen=True, slots=True)
class OperatorState:
    """What operators have asked for. Read by the control policy each cycle."""

    mode: str = "auto"
    override_w: float | None = None
    override_until: float = 0.0  # monotonic time the override expires
    reserve_load_w: float | None = None  # None = the site file's value
    reserve_minutes: float | None = None
    maintenance: frozenset[str] = field(default_factory=frozenset)
    acked: frozenset[str] = field(default_factory=frozenset)
    derate: tuple[tuple[str, float], ...] = ()  # (cluster id, max power %), sorted; absent = 100 %

    def derate_factor(self, cluster_id: str) -> float:
        for cid, pct in self.derate:
            if cid == cluster_id:
                return pct / 100.0
        return 1.0

    def override_active(self, now_mono: float) -> bool:
        return self.override_w is not None and now_mono < self.override_until


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """What a command is checked against: the site's own physical bounds."""

    max_power_w: float  # total PCS rating
    cluster_ids: frozenset[str]
    max_reserve_load_w: float  # the reserve may not ask more than the battery can give


def _num(d: dict[str, Any], key: str) -> float:
    if key not in d:
        raise CommandError(key, "is required")
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise CommandError(key, f"must be a finite number, got {v!r}")
    try:
        f = float(v)  # an int of hundreds of digits overflows here
    except OverflowError:
        raise CommandError(key, "must be a finite number, got an integer too large for one") from None
    if not math.isfinite(f):
        raise CommandError(key, f"must be a finite number, got {v!r}")
    return f


def _str(d: dict[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v or len(v) > 64:
        raise CommandError(key, f"must be a non-empty string of at most 64 characters, got {v!r}")
    return v


_FIELDS: dict[str, frozenset[str]] = {
    "set_mode": frozenset({"mode"}),
    "override": frozenset({"setpoint_w", "duration_s"}),
    "clear_override": frozenset(),
    "set_reserve": frozenset({"reserve_load_w", "reserve_minutes"}),
    "maintenance": frozenset({"cluster_id", "on"}),
    "ack_alarm": frozenset({"alarm"}),
    "derate": frozenset({"cluster_id", "max_power_pct"}),
}


def parse_command(payload: Any) -> Command:
    """A JSON-like dict -> Command. `{"command": "override", "setpoint_w": ..., ...}`."""
    if not isinstance(payload, dict):
        raise CommandError("command", "payload must be a JSON object")
    name = payload.get("command")
    if name not in _FIELDS:
        raise CommandError("command", f"must be one of {', '.join(sorted(_FIELDS))}, got {name!r}")
    extra = set(payload) - _FIELDS[name] - {"command"}
    if extra:
        raise CommandError(sorted(extra)[0], f"is not a field of {name!r}")
    if name == "set_mode":
        mode = _str(payload, "mode")
        if mode not in MODES:
            raise CommandError("mode", f"must be one of {', '.join(MODES)}, got {mode!r}")
        return SetMode(mode)
    if name == "override":
        return Override(_num(payload, "setpoint_w"), _num(payload, "duration_s"))
    if name == "clear_override":
        return ClearOverride()
    if name == "set_reserve":
        return SetReserve(_num(payload, "reserve_load_w"), _num(payload, "reserve_minutes"))
    if name == "maintenance":
        on = payload.get("on")
        if not isinstance(on, bool):
            raise CommandError("on", f"must be true or false, got {on!r}")
        return SetMaintenance(_str(payload, "cluster_id"), on)
    if name == "derate":
        return Derate(_str(payload, "cluster_id"), _num(payload, "max_power_pct"))
    return AckAlarm(_str(payload, "alarm"))


def apply_command(state: OperatorState, cmd: Command, now_mono: float, limits: SiteLimits) -> OperatorState:
    """The operator state after `cmd`, or CommandError if it is out of bounds."""
    match cmd:
        case SetMode(mode):
            return replace(state, mode=mode)
        case Override(w, dur):
            if abs(w) > limits.max_power_w:
                raise CommandError("setpoint_w", f"|{w:g}| W exceeds the site's PCS rating of {limits.max_power_w:g} W")
            if not 0 < dur <= MAX_OVERRIDE_S:
                raise CommandError("duration_s", f"must be > 0 and <= {MAX_OVERRIDE_S:g} s, got {dur:g}")
            return replace(state, override_w=w, override_until=now_mono + dur)
        case ClearOverride():
            return replace(state, override_w=None, override_until=0.0)
        case SetReserve(load_w, minutes):
            if not 0 <= load_w <= limits.max_reserve_load_w:
                raise CommandError(
                    "reserve_load_w", f"must be between 0 and {limits.max_reserve_load_w:g} W, got {load_w:g}"
                )
            if not 0 <= minutes <= 24 * 60:
                raise CommandError("reserve_minutes", f"must be between 0 and 1440, got {minutes:g}")
            return replace(state, reserve_load_w=load_w, reserve_minutes=minutes)
        case SetMaintenance(cid, on):
            if cid not in limits.cluster_ids:
                raise CommandError("cluster_id", f"unknown cluster {cid!r}")
            m = state.maintenance | {cid} if on else state.maintenance - {cid}
            return replace(state, maintenance=frozenset(m))
        case AckAlarm(alarm):
            return replace(state, acked=state.acked | {alarm})
        case Derate(cid, pct):
            if cid not in limits.cluster_ids:
                raise CommandError("cluster_id", f"unknown cluster {cid!r}")
            if not MIN_DERATE_PCT <= pct <= 100.0:
                raise CommandError(
                    "max_power_pct", f"must be between {MIN_DERATE_PCT:g} and 100 (100 lifts it), got {pct:g}"
                )
            kept = tuple(d for d in state.derate if d[0] != cid)
            return replace(state, derate=tuple(sorted(kept + (((cid, pct),) if pct < 100.0 else ()))))
    raise CommandError("command", f"unsupported command {cmd!r}")  # pragma: no cover
