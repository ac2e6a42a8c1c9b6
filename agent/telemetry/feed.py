"""Turning the Hub's cycles into points, split between the caller and the writer thread.

`capture` runs on the control loop's side inside `submit`: it only takes references and a copy
of the (small) active-alarm list, so a cycle never waits on telemetry. `points` runs on the
writer thread and does the formatting work.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.live.hub import CycleRecord, Hub
from agent.model.alarms import Alarm
from agent.model.snapshot import Measured
from agent.telemetry.schema import Point, health_points, ledger_point, points_for

RackProvider = Callable[[float], Mapping[str, Measured]]  # now_mono -> per-rack power


@dataclass(frozen=True, slots=True)
class Captured:
    rec: CycleRecord
    alarms: tuple[tuple[Alarm, bool], ...]
    ledger: Mapping[str, Any] | None
    racks: Mapping[str, Measured] | None
    health: Mapping[str, Any] | None = None  # the health read-out, only when a day just closed


class Feed:
    def __init__(self, hub: Hub, ledger_every_s: float, racks: RackProvider | None = None) -> None:
        self.hub = hub
        self.ledger_every_s = ledger_every_s
        self.racks = racks
        self._active: dict[str, Alarm] = {}
        self._ledger_at = -float("inf")
        self._health_version: object = None
        self._loop: asyncio.AbstractEventLoop | None = None
        with contextlib.suppress(RuntimeError):
            self._loop = asyncio.get_running_loop()

    def capture(self, rec: CycleRecord) -> Captured:
        now_active = {a.id: a for a in self.hub.alarms.active()}
        cleared = [a for aid, a in self._active.items() if aid not in now_active]
        self._active = now_active
        alarms = tuple((a, True) for a in now_active.values()) + tuple((a, False) for a in cleared)
        ledger = None
        t = rec.snapshot.t_mono
        if t - self._ledger_at >= self.ledger_every_s:
            self._ledger_at = t
            ledger = self.hub.read("ledger")
        racks = self.racks(t) if self.racks is not None else None
        # The health read-out is prebuilt and changes once a day: write it when its version moves.
        health = self.hub.read("health")
        if health is not None and health.get("version") != self._health_version:
            self._health_version = health.get("version")
        else:
            health = None
        return Captured(rec, alarms, ledger, racks, health)

    def points(self, c: Captured, agent_fields: Mapping[str, float]) -> list[Point]:
        site = self.hub.site
        pts = points_for(
            c.rec,
            site.id,
            c.alarms,
            agent_fields,
            c.racks,
            site.control.ramp_limit_w_per_s,
            site.control.demand_target_w,
        )
        if c.ledger:
            lp = ledger_point(c.ledger, site.id, c.rec.snapshot.t_wall)
            if lp is not None:
                pts.append(lp)
        if c.health:
            pts += health_points(c.health, site.id, c.rec.snapshot.t_wall)
        return pts

    # --- alarms from the writer thread: applied on the event loop's thread (AlarmBook is not
    # thread-safe and the loop iterates it every cycle) ---------------------------------------
    def alarm(self, code: str, message: str, on: bool = True) -> None:
        def apply() -> None:
            now = datetime.now(self.hub.site.timezone)
            if on:
                self.hub.alarms.raise_(code, "telemetry", message, now)
            else:
                self.hub.alarms.clear(code, "telemetry", now)

        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(apply)
                return
            except RuntimeError:  # loop closed between the check and the call
                pass
        apply()
