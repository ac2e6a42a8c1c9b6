"""Contactor sequencing: open the contactor of a cluster in maintenance, close it when the cluster
returns to service.

The plan already gives an isolated cluster no share; its contactor makes that physical (a PCS
drives all its clusters on one DC bus). It is opened only once the cluster's current has died
away, never under load; a failed write leaves the cluster as it was and is retried next cycle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from agent.live.devices import DeviceSet
from agent.logs import kv
from agent.model.alarms import AlarmBook
from agent.model.snapshot import SiteSnapshot
from drivers import keys as k
from drivers.device import ModbusDevice

log = logging.getLogger("ems.loop")

OPEN_BELOW_W = 2_000.0  # a contactor is opened only once its cluster carries (almost) no current


class Contactors:
    def __init__(self, alarms: AlarmBook, wall: Callable[[], datetime]) -> None:
        self.alarms = alarms
        self.wall = wall
        self.opened: set[str] = set()  # clusters whose contactor this agent opened

    async def step(self, snap: SiteSnapshot, maintenance: frozenset[str], devs: DeviceSet) -> None:
        writes = []
        for c in snap.clusters:
            dev = devs.devices.get(c.id)
            if dev is None or k.CONNECT_CMD not in devs.profiles[c.id].writable_keys():
                continue
            if c.id in maintenance and c.id not in self.opened:
                if c.power_w.ok and abs(c.power_w.value) < OPEN_BELOW_W:
                    writes.append(self._connect(c.id, dev, False))
            elif c.id not in maintenance and c.id in self.opened:
                writes.append(self._connect(c.id, dev, True))
        if writes:
            await asyncio.gather(*writes)

    async def _connect(self, cid: str, dev: ModbusDevice, on: bool) -> None:
        try:
            await dev.write({k.CONNECT_CMD: float(k.CONNECT if on else k.DISCONNECT)})
        except Exception as e:
            self.alarms.raise_("write_failed", cid, str(e), self.wall())
            return
        self.alarms.clear("write_failed", cid, self.wall())
        if on:
            self.opened.discard(cid)
        else:
            self.opened.add(cid)
        log.info("cluster contactor " + ("closed" if on else "opened"), extra=kv(cluster=cid))
