"""The control cycle: poll every device concurrently -> snapshot -> decide -> write -> publish.

One cycle per period (default 1 s). A cycle that runs over its period makes the loop skip
the missed slots (counted as overruns) instead of piling cycles up. Sinks are handed the
cycle's record through the Hub and never make the loop wait.

Safety at the edges: the PCS revert timer is written at start-up and whenever a PCS comes
back, and every cycle's setpoint write restarts it, so if this process dies the plant
returns to 0 W by itself. A setpoint is only ever written from a Plan, and a Plan never
commands an untrusted unit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from agent.control import ControllerState, Prices, decide, initial_state
from agent.control.commands import pcc_command, setpoint_w
from agent.live.assemble import StateNamer, build_snapshot
from agent.live.hub import CycleRecord, Hub
from agent.live.pcc_watch import PccMeterWatch
from agent.logs import kv
from agent.model.alarms import Severity
from agent.model.config import DeviceConfig, SiteConfig, load_site
from agent.model.plan import Plan
from agent.model.snapshot import ClusterStatus, Measured, PcsStatus, SiteSnapshot
from drivers import keys as k
from drivers.device import ModbusDevice
from drivers.profile import Profile, load_profile
from drivers.reading import Quality, Reading

log = logging.getLogger("ems.loop")

REVERT_FACTOR = 5.0  # PCS revert timer = this many cycles (at least 2 s): survives one missed write
OPEN_BELOW_W = 2_000.0  # a contactor is opened only once its cluster carries (almost) no current


class LoadSource(Protocol):
    def reading(self, now_mono: float) -> Measured: ...


@dataclass
class DeviceSet:
    """The devices the loop polls, rebuilt when the site file is reloaded."""

    devices: dict[str, ModbusDevice]
    profiles: dict[str, Profile]

    def namer(self) -> StateNamer:
        profiles = self.profiles

        def name(dev_id: str, code: int) -> str | None:
            p = profiles.get(dev_id)
            return p.state_name(code) if p is not None else None

        return name


def open_device(cfg: DeviceConfig, site: SiteConfig, clock: Callable[[], float]) -> tuple[ModbusDevice, Profile]:
    profile = load_profile(cfg.profile)
    return ModbusDevice(cfg, profile, stale_after_s=site.stale_after_s, clock=clock), profile


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
    ) -> None:
        self.site = site
        self.hub = hub
        self.prices = prices
        self.clock = clock
        self.wall = wall or (lambda: datetime.now(site.timezone))
        self.load_source = load_source
        self.devs = DeviceSet({}, {})
        self.cstate: ControllerState = initial if initial is not None else initial_state(site.control)
        self.seq = 0
        self._revert_ok: set[str] = set()
        self._opened: set[str] = set()  # clusters whose contactor this agent opened (maintenance)
        self._pcc_on: set[str] = set()  # PCS told to regulate the grid (PCC mode) by the last good write
        self._pcc_pending: frozenset[str] = frozenset()
        self._pcc_watch = PccMeterWatch()  # PCS whose own grid meter disagrees with the site's
        self._pcc_off: frozenset[str] = frozenset()  # ... latched by it this cycle (decide's pcc_off)
        self._stop = asyncio.Event()
        self._apply_site(site)
        self.on_cycle: list[Callable[[CycleRecord], Awaitable[None] | None]] = []

    # --- configuration ---------------------------------------------------------------------
    def _apply_site(self, site: SiteConfig) -> None:
        """Open devices that are new, keep those unchanged, close the ones gone."""
        old = self.devs.devices
        new: dict[str, ModbusDevice] = {}
        profiles: dict[str, Profile] = {}
        prev_cfg = {d.id: d for d in self.site.devices} if self.devs.devices else {}
        for cfg in site.devices:
            if cfg.id in old and prev_cfg.get(cfg.id) == cfg:
                new[cfg.id] = old[cfg.id]
                profiles[cfg.id] = self.devs.profiles[cfg.id]
            else:
                new[cfg.id], profiles[cfg.id] = open_device(cfg, site, self.clock)
                self._revert_ok.discard(cfg.id)
        self._closing = [d for i, d in old.items() if new.get(i) is not d]
        self.devs = DeviceSet(new, profiles)
        self.site = site
        # PCS the site file runs in grid-power (PCC) control: they get the mode's registers written
        # every cycle, in the mode or out of it (the snapshot says whether this cycle may use them).
        self._pcc_capable = frozenset(p.id for p in site.pcs if p.grid_control == "pcc")
        self.hub.site = site

    def reload(self) -> None:
        """Re-read the site file: clusters added, removed or rewired take effect next cycle."""
        site = load_site(self.site.path)
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
            self.hub.operator.maintenance,
            load_override=load,
        )
        # a PCS regulating on a meter that disagrees with the site's follows setpoints instead
        # (decide() is told: pcc_off; the snapshot keeps what the devices reported)
        self._pcc_off = frozenset(self._pcc_watch.update(snap))
        return snap

    async def _write(self, snap: SiteSnapshot, plan: Plan) -> None:
        writes = []
        revert_s = max(2.0, REVERT_FACTOR * self.site.cycle_s)
        for p in snap.pcs:
            dev = self.devs.devices.get(p.id)
            if dev is None or p.status is PcsStatus.OFFLINE:
                self._revert_ok.discard(p.id)
                self._pcc_on.discard(p.id)
                continue
            w = setpoint_w(plan, p.id)
            values: dict[str, float] = {}
            pcc: bool | None = None  # None: not a grid-power (PCC) PCS
            if p.id in self._pcc_capable:  # (one the watch took out of the mode is told to leave it)
                # Mode commands first (one request, register order), then the setpoint: a PCS leaving
                # the mode holds its output and then follows the setpoint; in the mode the setpoint
                # write only restarts the revert timer. The same timer covers both modes.
                cmd = pcc_command(plan, p.id)
                pcc = cmd is not None
                if cmd is not None:
                    values = {
                        k.PCC_ENABLE: 1.0,
                        k.PCC_TARGET_W: cmd.target_w,
                        k.PCC_RAMP_W_PER_S: cmd.ramp_w_per_s,
                        k.PCC_SHARE: cmd.share,
                        k.PCC_MAX_DISCHARGE_W: cmd.max_discharge_w,
                        k.PCC_MAX_CHARGE_W: cmd.max_charge_w,
                        k.PCC_GRID_MIN_W: cmd.grid_min_w,
                    }
                else:
                    values = {k.PCC_ENABLE: 0.0}
            if p.id not in self._revert_ok:
                values |= {k.REVERT_S: revert_s, k.SETPOINT_ENABLE: 1.0}
            values[k.SETPOINT_W] = w
            writes.append(self._write_one(p.id, dev, values, pcc))
        await asyncio.gather(*writes)

    async def _write_one(self, pid: str, dev: ModbusDevice, values: dict[str, float], pcc: bool | None = None) -> None:
        writable = self.devs.profiles[pid].writable_keys()
        values = {key: v for key, v in values.items() if key in writable}
        try:
            await dev.write(values)
        except Exception as e:
            self._revert_ok.discard(pid)
            self._pcc_on.discard(pid)
            self.hub.alarms.raise_("write_failed", pid, Severity.WARNING, str(e), self.wall())
            return
        self._revert_ok.add(pid)
        if pcc:
            self._pcc_on.add(pid)
        else:
            self._pcc_on.discard(pid)
        self.hub.alarms.clear("write_failed", pid, self.wall())

    async def _contactors(self, snap: SiteSnapshot) -> None:
        """Open the contactor of a cluster in maintenance, close it when it returns to service.

        The plan already gives an isolated cluster no share; its contactor makes that physical
        (a PCS drives all its clusters on one DC bus). It is opened only once the cluster's
        current has died away, never under load.
        """
        wanted = self.hub.operator.maintenance
        writes = []
        for c in snap.clusters:
            dev = self.devs.devices.get(c.id)
            if dev is None or k.CONNECT_CMD not in self.devs.profiles[c.id].writable_keys():
                continue
            if c.id in wanted and c.id not in self._opened:
                if c.power_w.ok and abs(c.power_w.value) < OPEN_BELOW_W:
                    writes.append(self._connect(c.id, dev, False))
            elif c.id not in wanted and c.id in self._opened:
                writes.append(self._connect(c.id, dev, True))
        if writes:
            await asyncio.gather(*writes)

    async def _connect(self, cid: str, dev: ModbusDevice, on: bool) -> None:
        try:
            await dev.write({k.CONNECT_CMD: float(k.CONNECT if on else k.DISCONNECT)})
        except Exception as e:  # a failed write leaves the cluster as it was; retried next cycle
            self.hub.alarms.raise_("write_failed", cid, Severity.WARNING, str(e), self.wall())
            return
        self.hub.alarms.clear("write_failed", cid, self.wall())
        if on:
            self._opened.discard(cid)
        else:
            self._opened.add(cid)
        log.info("cluster contactor " + ("closed" if on else "opened"), extra=kv(cluster=cid))

    def _alarms(self, snap: SiteSnapshot, plan: Plan) -> None:
        now = snap.t_wall
        book = self.hub.alarms
        wanted: dict[str, tuple[str, str, Severity, str]] = {}
        for c in snap.clusters:
            if c.status is ClusterStatus.FAULT:
                wanted[f"cluster_fault@{c.id}"] = ("cluster_fault", c.id, Severity.CRITICAL, "BMS reports a fault")
            elif c.status is ClusterStatus.OFFLINE and c.soc_pct.ok:
                msg = "BMS reports the cluster disconnected (contactor open)"
                wanted[f"cluster_disconnected@{c.id}"] = ("cluster_disconnected", c.id, Severity.WARNING, msg)
            elif c.status is ClusterStatus.OFFLINE:
                q = c.soc_pct.quality.value
                wanted[f"device_comm@{c.id}"] = ("device_comm", c.id, Severity.WARNING, f"no usable data ({q})")
        for p in snap.pcs:
            if p.status is PcsStatus.FAULT:
                wanted[f"pcs_fault@{p.id}"] = ("pcs_fault", p.id, Severity.CRITICAL, "PCS tripped or faulted")
            elif p.status is PcsStatus.OFFLINE:
                q = p.power_w.quality.value
                wanted[f"device_comm@{p.id}"] = ("device_comm", p.id, Severity.WARNING, f"no usable data ({q})")
            elif p.id in self._pcc_pending and not (p.pcc_active.ok and p.pcc_active.value == 1.0):
                # commanded into grid-power control a cycle ago, yet it does not report the mode
                msg = "commanded into grid-power (PCC) control but pcc_active does not read 1"
                wanted[f"pcc_inactive@{p.id}"] = ("pcc_inactive", p.id, Severity.WARNING, msg)
        before = {a.id: a for a in book.active()}
        acked = {a.source for a in before.values() if a.code == "pcc_meter_mismatch" and a.acked_by is not None}
        for pid, msg in self._pcc_watch.latched.copy().items():
            if pid in acked:  # an operator has seen it: back into grid-power control, watched afresh
                self._pcc_watch.release(pid)
            else:
                wanted[f"pcc_meter_mismatch@{pid}"] = ("pcc_meter_mismatch", pid, Severity.WARNING, msg)
        meter_values = {"grid": snap.grid_w, "load": snap.load_w, "pv": snap.pv_w}
        for m in self.site.meters:
            v = meter_values.get(m.role)
            if v is not None and v.quality in (Quality.COMM_ERROR, Quality.STALE):
                wanted[f"device_comm@{m.id}"] = ("device_comm", m.id, Severity.WARNING, f"no usable data ({v.quality})")
        if not snap.grid_up:
            wanted["grid_outage@grid"] = ("grid_outage", "grid", Severity.CRITICAL, "utility supply lost")
        for code in plan.alarms:
            wanted[f"{code}@control"] = (code, "control", Severity.WARNING, code.replace("_", " "))
        owned = {
            "cluster_fault", "cluster_disconnected", "device_comm", "pcs_fault", "grid_outage", "pcc_inactive",
            "pcc_meter_mismatch",
        }  # fmt: skip
        book.sync(wanted, owned | set(plan.alarms), now)
        for a in book.active():
            if a.source == "control" and f"{a.code}@control" not in wanted:
                book.clear(a.code, "control", now)
        # One log line per alarm transition: the log stays quiet while nothing changes.
        after = {a.id: a for a in book.active()}
        for aid in after.keys() - before.keys():
            a = after[aid]
            log.warning("alarm raised", extra=kv(code=a.code, source=a.source, severity=a.severity, message=a.message))
        for aid in before.keys() - after.keys():
            a = before[aid]
            log.info("alarm cleared", extra=kv(code=a.code, source=a.source))

    async def cycle(self) -> CycleRecord:
        t0 = self.clock()
        readings = await self._poll()
        t1 = self.clock()
        snap = self.snapshot(readings, t1)
        self._pcc_pending = frozenset(self._pcc_on)  # what this cycle's read-back should show
        plan, self.cstate = decide(
            snap,
            self.cstate,
            self.site.control,
            self.hub.operator,
            self.prices,
            self.site.allow_export,
            pcc_off=self._pcc_off,
        )
        await self._write(snap, plan)
        await self._contactors(snap)
        t2 = self.clock()
        self._alarms(snap, plan)
        self.hub.device_health = {i: d.health_dict() for i, d in self.devs.devices.items()}
        rec = CycleRecord(
            snapshot=snap,
            plan=plan,
            cycle_ms=(t2 - t0) * 1000,
            poll_ms=(t1 - t0) * 1000,
            write_ms=(t2 - t1) * 1000,
            overruns=self.hub.stats.overruns,
        )
        self.hub.publish(rec)
        return rec

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
                await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, next_t - self.clock()))
        await self.close()

    def stop(self) -> None:
        self._stop.set()

    async def close(self) -> None:
        await asyncio.gather(*(d.close() for d in self.devs.devices.values()), return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {"seq": self.seq, "devices": len(self.devs.devices)}
