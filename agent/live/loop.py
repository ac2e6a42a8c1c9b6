"""The control cycle: poll every device concurrently -> snapshot -> decide -> write -> publish.

One cycle per period (default 1 s). A cycle that runs over its period makes the loop skip
the missed slots (counted as overruns) instead of piling cycles up. Sinks are handed the
cycle's record through the Hub and never make the loop wait.

The cycle's parts live in their own modules: the PCS writer (setpoints, grid-power mode,
revert timer: agent/live/pcs_writer.py), contactor sequencing (agent/live/contactors.py) and
alarm reconciliation (agent/live/alarm_sync.py). A setpoint is only ever written from a Plan,
and a Plan never commands an untrusted unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from agent.control import ControllerState, Prices, decide, initial_state
from agent.control.campus_share import report_forecast_w, report_interval_wh, report_raise_w
from agent.control.schedule import DispatchPlan
from agent.control.state import IntervalState
from agent.live.alarm_sync import AlarmSync
from agent.live.assemble import build_snapshot
from agent.live.contactors import Contactors
from agent.live.devices import DeviceSet, open_device
from agent.live.hub import CycleRecord, Hub, PlanTarget
from agent.live.pcc_watch import PccMeterWatch
from agent.live.pcs_writer import PcsWriter
from agent.logs import kv
from agent.model.clock import accelerate, revert_s
from agent.model.config import ControlConfig, SiteConfig, load_site
from agent.model.snapshot import Measured, SiteSnapshot
from drivers.device import ModbusDevice
from drivers.profile import Profile
from drivers.reading import Reading

log = logging.getLogger("ems.loop")


class LoadSource(Protocol):
    def reading(self, now_mono: float) -> Measured: ...


class Planning(Protocol):
    """Predictive dispatch (agent/live/planning.py): the plan to track, fed after each decision."""

    def schedule(self, snap: SiteSnapshot) -> DispatchPlan | None: ...
    def after(self, snap: SiteSnapshot, before: IntervalState, now_iv: IntervalState) -> None: ...
    def running(self, t_s: float) -> PlanTarget | None: ...


class ControlSource(Protocol):
    """This cycle's ControlConfig from the site's (a campus share: agent/live/campus_link.py)."""

    def control(self, base: ControlConfig, now_wall: datetime) -> ControlConfig: ...


class AgentLoop:
    def __init__(
        self,
        site: SiteConfig,
        hub: Hub,
        prices: Prices | None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] | None = None,
        load_source: LoadSource | None = None,
        initial: ControllerState | None = None,
        speed: float = 1.0,
    ) -> None:
        """`clock` and `wall` are the site's clocks (agent.model.clock.SiteClock on an accelerated
        site: then `speed` is its speed, and the loop sleeps speed times less real time)."""
        self.speed = speed
        self.site = site
        self.hub = hub
        self.prices = prices
        self.clock = clock
        self.wall = wall or (lambda: datetime.now(site.timezone))
        self.load_source = load_source
        self.devs = DeviceSet({}, {})
        self.cstate: ControllerState = initial if initial is not None else initial_state(site.control)
        self.seq = 0
        self.writer = PcsWriter(hub.alarms, self.wall)
        self.contactors = Contactors(hub.alarms, self.wall)
        self.alarm_sync = AlarmSync(hub.alarms)
        self._pcc_pending: frozenset[str] = frozenset()
        self._pcc_watch = PccMeterWatch()  # PCS whose own grid meter disagrees with the site's
        self._pcc_off: frozenset[str] = frozenset()  # ... latched by it this cycle (decide's pcc_off)
        self._stop = asyncio.Event()
        self._apply_site(site)
        self.on_cycle: list[Callable[[CycleRecord], Awaitable[None] | None]] = []
        self.planning: Planning | None = None  # set by the runtime when [planner] is enabled
        self.control_source: ControlSource | None = None  # set by the runtime when [campus] is there

    # --- configuration ---------------------------------------------------------------------
    def _apply_site(self, site: SiteConfig) -> None:
        """Open devices that are new, keep those unchanged, close the ones gone."""
        site = accelerate(site, self.speed)
        old = self.devs.devices
        new: dict[str, ModbusDevice] = {}
        profiles: dict[str, Profile] = {}
        prev_cfg = {d.id: d for d in self.site.devices} if self.devs.devices else {}
        reopened: set[str] = set()
        for cfg in site.devices:
            if cfg.id in old and prev_cfg.get(cfg.id) == cfg:
                new[cfg.id] = old[cfg.id]
                profiles[cfg.id] = self.devs.profiles[cfg.id]
            else:
                new[cfg.id], profiles[cfg.id] = open_device(cfg, site, self.clock)
                reopened.add(cfg.id)
        self._closing = [d for i, d in old.items() if new.get(i) is not d]
        self.devs = DeviceSet(new, profiles)
        self.site = site
        self.writer.configure(site, reopened)
        self.hub.site = site

    def reload(self, site: SiteConfig | None = None) -> None:
        """Take the re-read site file: clusters added, removed or rewired take effect next cycle.

        `site` is the file already parsed off the event loop (Runtime.reload does it in a worker
        thread); without it the file is read here, on the caller's thread.
        """
        site = site if site is not None else load_site(self.site.path)
        added = {c.id for c in site.clusters} - {c.id for c in self.site.clusters}
        removed = {c.id for c in self.site.clusters} - {c.id for c in site.clusters}
        self._apply_site(site)
        log.info("site reloaded", extra=kv(added=sorted(added), removed=sorted(removed)))

    # --- one cycle -------------------------------------------------------------------------
    async def _poll(self) -> dict[str, dict[str, Reading]]:
        ids = list(self.devs.devices)
        results = await asyncio.gather(*(self.devs.devices[i].poll() for i in ids))
        return dict(zip(ids, results, strict=True))

    def snapshot(self, readings: dict[str, dict[str, Reading]], now: float) -> SiteSnapshot:
        self.seq += 1
        load = self.load_source.reading(now) if self.load_source is not None else None
        snap = build_snapshot(
            self.site,
            readings,
            self.seq,
            now,
            self.wall(),
            self.devs.namer(),
            load_override=load,
        )
        # a PCS regulating on a meter that disagrees with the site's follows setpoints instead
        # (decide() is told: pcc_off; the snapshot keeps what the devices reported)
        self._pcc_off = frozenset(self._pcc_watch.update(snap))
        return snap

    async def cycle(self) -> CycleRecord:
        t0 = self.clock()
        readings = await self._poll()
        t1 = self.clock()
        snap = self.snapshot(readings, t1)
        self._pcc_pending = frozenset(self.writer.pcc_on)  # what this cycle's read-back should show
        op = self.hub.operator  # what this cycle decides with (a command may arrive during the write)
        planning = self.planning
        before = self.cstate.interval
        source = self.control_source
        plan, self.cstate = decide(
            snap,
            self.cstate,
            source.control(self.site.control, snap.t_wall) if source is not None else self.site.control,
            op,
            self.prices,
            self.site.allow_export,
            pcc_off=self._pcc_off,
            schedule=planning.schedule(snap) if planning is not None else None,
        )
        if planning is not None:  # a closed interval goes to the planner (never waits on a solve)
            planning.after(snap, before, self.cstate.interval)
        # the revert timer in the PCS's (the site's) seconds
        await self.writer.write(snap, plan, self.devs, revert_s(self.site.cycle_s, self.speed))
        await self.contactors.step(snap, self.hub.operator.maintenance, self.devs)
        t2 = self.clock()
        self.alarm_sync.reconcile(snap, plan, self.site.meters, self._pcc_pending, self._pcc_watch, op.maintenance)
        self.hub.device_health = {i: d.health_dict() for i, d in self.devs.devices.items()}
        ms = 1000.0 / self.speed  # site seconds -> real milliseconds (what the host spent)
        rec = CycleRecord(
            snapshot=snap,
            plan=plan,
            cycle_ms=(t2 - t0) * ms,
            poll_ms=(t1 - t0) * ms,
            write_ms=(t2 - t1) * ms,
            overruns=self.hub.stats.overruns,
            maintenance=op.maintenance,
            planned=planning.running(snap.t_wall.timestamp()) if planning is not None else None,
        )
        if source is not None:  # a campus feeder: what its report to the coordinator carries (campus_link)
            rec = self._with_campus_report(rec)
        self.hub.publish(rec)
        return rec

    def _with_campus_report(self, rec: CycleRecord) -> CycleRecord:
        """`rec` with the fields a feeder's campus report is made of (agent.live.campus_link)."""
        snap = rec.snapshot
        iv_s = self.site.control.demand_interval_s
        return replace(
            rec,
            interval_grid_wh=report_interval_wh(
                self.cstate, snap.t_wall, iv_s, snap.grid_w.value if snap.grid_w.ok else math.nan
            ),
            campus_forecast_w=report_forecast_w(
                self.cstate,
                snap.load_w.value - snap.pv_w.value,
                snap.t_wall + timedelta(seconds=self.site.cycle_s),
                self.site.cycle_s,
                iv_s,
            ),
            campus_raise_w=report_raise_w(self.cstate),
            campus_spread=self.cstate.tou.spread,
        )

    async def run(self) -> None:
        period = self.site.cycle_s
        next_t = self.clock()
        log.info("control loop started", extra=kv(site=self.site.id, cycle_s=period, devices=len(self.devs.devices)))
        while not self._stop.is_set():
            if self._closing:
                closing, self._closing = self._closing, []
                await asyncio.gather(*(d.close() for d in closing))
            try:
                rec = await self.cycle()
                for cb in self.on_cycle:
                    r = cb(rec)
                    if r is not None:
                        await r
            except Exception:  # pragma: no cover - last line of defence; the revert timer covers the plant
                log.exception("cycle failed")
            period = self.site.cycle_s
            next_t += period
            now = self.clock()
            if now > next_t:
                missed = int((now - next_t) // period) + 1
                self.hub.stats.overruns += missed
                next_t += missed * period
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, next_t - self.clock()) / self.speed)
        await self.close()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """stop() was called: whatever else uses the devices (the fast lane) stops sending now."""
        return self._stop.is_set()

    async def close(self) -> None:
        await asyncio.gather(*(d.close() for d in self.devs.devices.values()), return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {"seq": self.seq, "devices": len(self.devs.devices)}
