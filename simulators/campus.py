"""A simulated campus in one process: N feeders (each a SimulatedSite) and the campus meter.

    campus = SimulatedCampus([load_site(a), load_site(b)], meter_cfg, any_port=True)
    await campus.start()        # every feeder's servers, and the campus meter's
    campus.ports["campus"]      # where the campus meter answers
    campus.sites["f1"].ports    # each feeder's devices
    await campus.stop()

The campus meter is the utility meter of the whole campus: it reads the sum of the feeders' grid
meters (power, current, energies; voltage and frequency of the first), refreshed every physics
tick, so it is at most one tick behind them, like any meter. One process hosts them all: one event
loop, one task per feeder's physics, which keeps a campus of several feeders within one core.
"""

from __future__ import annotations

import asyncio
import contextlib

from agent.model.config import DeviceConfig, SiteConfig
from drivers import keys as K
from simulators.faults import CommFaults
from simulators.image import image_for
from simulators.server import PortServer, ServedUnit
from simulators.site import SimulatedSite

_SUMMED = (K.POWER_W, K.CURRENT_A, K.ENERGY_IMPORT_WH, K.ENERGY_EXPORT_WH)


class SimulatedCampus:
    def __init__(self, sites: list[SiteConfig], meter: DeviceConfig, any_port: bool = False) -> None:
        if not sites:
            raise ValueError("a campus needs at least one feeder site")
        self.meter = meter
        self.any_port = any_port
        # each feeder's fault-injection socket on any free port (several sites cannot share one)
        self.sites = {s.id: SimulatedSite(s, any_port=any_port, control_port=0) for s in sites}
        if len(self.sites) != len(sites):
            raise ValueError("two feeder site files have the same [site] id")
        self.image = image_for(meter)
        self.faults = CommFaults()
        self.ports: dict[str, int] = {}
        self._server: PortServer | None = None
        self._task: asyncio.Task[None] | None = None
        self.refresh()

    def values(self) -> dict[str, float | int | str]:
        """What the campus meter reads now: the sum of the feeders' grid meters."""
        rows = [s.model.meter_values("grid") for s in self.sites.values()]
        out = dict(rows[0])
        for k in _SUMMED:
            out[k] = sum(float(r[k]) for r in rows)
        return out

    def refresh(self) -> None:
        self.image.refresh(self.values(), self.faults.corrupt)

    @property
    def import_w(self) -> float:
        return sum(s.model.grid.power_w for s in self.sites.values())

    async def start(self) -> None:
        try:
            for s in self.sites.values():
                await s.start()
            unit = ServedUnit(self.meter.id, self.image, self.faults, lambda: True, lambda _: None)
            self._server = PortServer(0 if self.any_port else self.meter.port, {self.meter.unit: unit})
            await self._server.start()
            self.ports[self.meter.id] = self._server.port
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        tick = min(s.sim.tick_s / s.speed for s in self.sites.values())
        while True:
            self.refresh()
            await asyncio.sleep(tick)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._server is not None:
            await self._server.stop()
            self._server = None
        for s in self.sites.values():
            await s.stop()
