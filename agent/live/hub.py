"""The agent's in-process meeting point: the latest cycle, operator state, alarms, sinks.

The control loop publishes one CycleRecord per cycle; sinks (telemetry, MQTT, ledger, the API
process's feed) read from here. Publishing never waits: every sink queues and works elsewhere,
and a slow one loses records, never the loop's time. Operator commands from every channel
(API, MQTT) go through `submit`, which validates, bounds, audits and applies them.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from agent.live.audit import AuditLog
from agent.model.alarms import AlarmBook
from agent.model.config import SiteConfig
from agent.model.operator import Command, CommandError, OperatorState, SiteLimits, apply_command
from agent.model.pickling import fast_pickle
from agent.model.plan import Plan
from agent.model.snapshot import SiteSnapshot

# Cycle-time histogram bounds, s (Prometheus `le` buckets of ems_cycle_duration_seconds).
CYCLE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PlanTarget(NamedTuple):
    """The dispatch plan at the cycle's time (agent/live/planning.py): where it has the SoC, and its
    grid-import cap on the interval average (inf: no demand charge in that slot)."""

    soc_pct: float
    grid_cap_w: float


@dataclass(frozen=True, slots=True)
class CycleRecord:
    snapshot: SiteSnapshot
    plan: Plan
    cycle_ms: float  # wall time the cycle took (poll + decide + write)
    poll_ms: float
    write_ms: float
    overruns: int  # cycles skipped so far because one ran over its period
    # the clusters the operator held out of service this cycle (decide()'s OperatorState.maintenance):
    # the sinks show them as in maintenance (agent.model.snapshot.shown_status)
    maintenance: frozenset[str] = frozenset()
    planned: PlanTarget | None = None  # the tracked dispatch plan's running target (None: no plan)
    interval_grid_wh: float = 0.0  # import counted so far in the running demand interval (campus report)
    # the demand forecast for the next cycle and the priced charge raise (campus report:
    # agent.control.campus_share.report_forecast_w / report_raise_w; NaN / 0: none)
    campus_forecast_w: float = math.nan
    campus_raise_w: float = 0.0
    # the round trip's value its price plan priced (TouState.spread; NaN: none): what a kWh spent
    # shaving costs the campus's economic levels (agent/campus/levels.py)
    campus_spread: float = math.nan


class Sink(Protocol):
    """Something fed every cycle. `submit` must return at once (queue and work elsewhere)."""

    def submit(self, rec: CycleRecord) -> None: ...


@dataclass
class CycleStats:
    """Cycle times: a window for percentiles and a histogram since start (for /metrics)."""

    window: deque[float] = field(default_factory=lambda: deque(maxlen=600))
    overruns: int = 0
    cycles: int = 0
    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(CYCLE_BUCKETS_S) + 1))
    sum_s: float = 0.0

    def add(self, ms: float) -> None:
        self.window.append(ms)
        self.cycles += 1
        self.bucket_counts[bisect.bisect_left(CYCLE_BUCKETS_S, ms / 1000.0)] += 1
        self.sum_s += ms / 1000.0

    def summary(self) -> dict[str, float]:
        if not self.window:
            return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "cycles": 0.0, "overruns": 0.0}
        xs = sorted(self.window)
        p99 = xs[min(len(xs) - 1, round(0.99 * (len(xs) - 1)))]
        return {
            "p50_ms": statistics.median(xs),
            "p99_ms": p99,
            "max_ms": xs[-1],
            "cycles": float(self.cycles),
            "overruns": float(self.overruns),
        }


class Hub:
    def __init__(self, site: SiteConfig, audit: AuditLog, clock: Callable[[], float]) -> None:
        self.site = site
        self.audit = audit
        self.clock = clock  # monotonic
        self.latest: CycleRecord | None = None
        self.operator = OperatorState(maintenance=site.maintenance)
        self.alarms = AlarmBook()
        self.stats = CycleStats()
        self.device_health: dict[str, dict[str, Any]] = {}
        self.sinks: list[Sink] = []
        # Other subsystems register read-outs here (ledger summary, ROI, health, spool depth...).
        self.providers: dict[str, Callable[[], dict[str, Any]]] = {}
        audit.on_failure = self._audit_failure

    def _audit_failure(self, why: str | None) -> None:
        """The audit log stopped (or resumed) taking writes: commands are refused meanwhile."""
        now = datetime.now(self.site.timezone)
        if why is None:
            self.alarms.clear("audit_write_failed", "audit", now)
        else:
            msg = f"{why}; operator commands are refused until it can be written"
            self.alarms.raise_("audit_write_failed", "audit", msg, now)

    # --- cycle fan-out ---------------------------------------------------------------------
    def publish(self, rec: CycleRecord) -> None:
        self.latest = rec
        self.stats.add(rec.cycle_ms)
        for sink in self.sinks:
            sink.submit(rec)

    # --- operator commands -----------------------------------------------------------------
    def limits(self) -> SiteLimits:
        max_power = sum(p.rated_w for p in self.site.pcs)
        return SiteLimits(
            max_power_w=max_power,
            cluster_ids=frozenset(c.id for c in self.site.clusters),
            max_reserve_load_w=max_power,
        )

    def submit(self, cmd: Command, actor: str, via: str, now_wall: datetime) -> OperatorState:
        """Validate, bound, audit and apply a command. Raises CommandError (audited too), or
        AuditUnavailable when the audit log cannot be written (then nothing is applied)."""
        action = {"command": type(cmd).__name__, **asdict(cmd)}
        try:
            new = apply_command(self.operator, cmd, self.clock(), self.limits())
        except CommandError as e:
            self.audit.record(now_wall, actor, via, action, False, str(e))
            raise
        ack = action["alarm"] if type(cmd).__name__ == "AckAlarm" else None
        if ack is not None and not any(a.id == ack for a in self.alarms.active()):
            err = CommandError("alarm", f"no active alarm {ack!r}")
            self.audit.record(now_wall, actor, via, action, False, str(err))
            raise err
        self.audit.record(now_wall, actor, via, action, True)  # audited before it takes effect
        if ack is not None:
            self.alarms.ack(ack, actor)
        self.operator = new
        return new

    def read(self, name: str) -> dict[str, Any] | None:
        fn = self.providers.get(name)
        return fn() if fn is not None else None


fast_pickle(CycleRecord)
