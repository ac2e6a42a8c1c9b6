"""The agent's in-process meeting point: the latest cycle, operator state, alarms, subscribers.

The control loop publishes one CycleRecord per cycle; sinks (telemetry, MQTT, ledger) and the
API read from here. Publishing never waits: every subscriber has a bounded queue and a slow
one loses its oldest records, never the loop's time. Operator commands from every channel
(API, MQTT) go through `submit`, which validates, bounds, audits and applies them.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from agent.alarms import AlarmBook
from agent.audit import AuditLog
from agent.config import SiteConfig
from agent.operator import Command, CommandError, OperatorState, SiteLimits, apply_command
from agent.plan import Plan
from agent.snapshot import SiteSnapshot


@dataclass(frozen=True, slots=True)
class CycleRecord:
    snapshot: SiteSnapshot
    plan: Plan
    cycle_ms: float  # wall time the cycle took (poll + decide + write)
    poll_ms: float
    write_ms: float
    overruns: int  # cycles skipped so far because one ran over its period


class Sink(Protocol):
    """Something fed every cycle. `submit` must return at once (queue and work elsewhere)."""

    def submit(self, rec: CycleRecord) -> None: ...


@dataclass
class CycleStats:
    window: deque[float] = field(default_factory=lambda: deque(maxlen=600))
    overruns: int = 0
    cycles: int = 0

    def add(self, ms: float) -> None:
        self.window.append(ms)
        self.cycles += 1

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


class Subscription:
    """A bounded queue of cycles for one consumer (an SSE client). The consumer's event loop may
    run in another thread (the API's): offers from the control loop then cross over safely."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[CycleRecord] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None

    def offer(self, rec: CycleRecord) -> None:
        if self._loop is not None:
            try:
                here = asyncio.get_running_loop()
            except RuntimeError:
                here = None
            if here is not self._loop:
                with contextlib.suppress(RuntimeError):  # the consumer's loop has closed: nobody to tell
                    self._loop.call_soon_threadsafe(self._offer, rec)
                return
        self._offer(rec)

    def _offer(self, rec: CycleRecord) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(rec)


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
        self._subs: set[Subscription] = set()
        # Other subsystems register read-outs here (ledger summary, ROI, health, spool depth...).
        self.providers: dict[str, Callable[[], dict[str, Any]]] = {}

    # --- cycle fan-out ---------------------------------------------------------------------
    def publish(self, rec: CycleRecord) -> None:
        self.latest = rec
        self.stats.add(rec.cycle_ms)
        for s in list(self._subs):
            s.offer(rec)
        for sink in self.sinks:
            sink.submit(rec)

    def subscribe(self, maxsize: int = 8) -> Subscription:
        sub = Subscription(maxsize)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    # --- operator commands -----------------------------------------------------------------
    def limits(self) -> SiteLimits:
        max_power = sum(p.rated_w for p in self.site.pcs)
        return SiteLimits(
            max_power_w=max_power,
            cluster_ids=frozenset(c.id for c in self.site.clusters),
            max_reserve_load_w=max_power,
        )

    def submit(self, cmd: Command, actor: str, via: str, now_wall: datetime) -> OperatorState:
        """Validate, bound, audit and apply a command. Raises CommandError (audited too)."""
        action = {"command": type(cmd).__name__, **asdict(cmd)}
        try:
            new = apply_command(self.operator, cmd, self.clock(), self.limits())
        except CommandError as e:
            self.audit.record(now_wall, actor, via, action, False, str(e))
            raise
        if type(cmd).__name__ == "AckAlarm" and not self.alarms.ack(action["alarm"], actor):
            err = CommandError("alarm", f"no active alarm {action['alarm']!r}")
            self.audit.record(now_wall, actor, via, action, False, str(err))
            raise err
        self.audit.record(now_wall, actor, via, action, True)
        self.operator = new
        return new

    def read(self, name: str) -> dict[str, Any] | None:
        fn = self.providers.get(name)
        return fn() if fn is not None else None
