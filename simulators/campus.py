"""A simulated campus in one process: N feeders (each a SimulatedSite) and the campus meter.

    campus = SimulatedCampus([load_site(a), load_site(b)], meter_cfg, any_port=True)
    await campus.start()        # every feeder's servers, and the campus meter's
    campus.ports["campus"]      # where the campus meter answers
    campus.sites["f1"].ports    # each feeder's devices
    await campus.stop()

The campus meter is the utility meter of the whole campus: it reads the sum of the feeders' grid
meters (power, current, energies; voltage and frequency of the first), computed when it is read,
so it always agrees with them. One process hosts them all: one event loop, one task per feeder's
physics, which keeps a campus of several feeders within one core.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.model.config import DeviceConfig, SiteConfig
from drivers import keys as K
from drivers.profile import load_profile
from simulators.faults import CommFaults
from simulators.image import DeviceImage, Values
from simulators.server import PortServer, ServedUnit
from simulators.site import SimulatedSite

_SUMMED = (K.POWER_W, K.CURRENT_A, K.ENERGY_IMPORT_WH, K.ENERGY_EXPORT_WH)


class _SumImage(DeviceImage):
    """A register image refreshed from `values` whenever it is read."""

    def __init__(self, dev: DeviceConfig, values: Callable[[], Values], faults: CommFaults) -> None:
        super().__init__(dev.id, load_profile(dev.profile))
        self._values = values
        self._faults = faults

    def read(self, func_code: int, address: int, count: int) -> list[int] | None:
        self.refresh(self._values(), self._faults.corrupt)
        return super().read(func_code, address, count)


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
        self.faults = CommFaults()
        self.image = _SumImage(meter, self.values, self.faults)
        self.ports: dict[str, int] = {}
        self._server: PortServer | None = None

    def values(self) -> dict[str, float | int | str]:
        """What the campus meter reads now: the sum of the feeders' grid meters."""
        rows = [s.model.meter_values("grid") for s in self.sites.values()]
        out = dict(rows[0])
        for k in _SUMMED:
            out[k] = sum(float(r[k]) for r in rows)
        return out

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

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop()
            self._server = None
        for s in self.sites.values():
            await s.stop()
