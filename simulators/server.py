"""Modbus TCP servers for simulated devices: one server per port, several unit ids per port.

Each served unit is a register image (simulators/image.py) plus its communication faults.
A silent or removed unit raises NoSuchIdException and the server runs with
`ignore_missing_devices=True`, so the client gets no answer at all (a real time-out), exactly
like a device that fell off the network. Exception faults answer with that Modbus exception.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer

from simulators.faults import CommFaults
from simulators.image import DeviceImage

log = logging.getLogger("ems.sim.server")

READ_FCS = (3, 4)
WRITE_FCS = (6, 16, 23)


@dataclass(slots=True)
class ServedUnit:
    device_id: str
    image: DeviceImage
    faults: CommFaults
    present: Callable[[], bool]  # False while the device is pulled out (removed)
    on_write: Callable[[dict[str, float]], None]  # decoded canonical writes -> physics


class _Context(ModbusServerContext):
    """Routes requests to our register images (pymodbus calls only these three methods)."""

    def __init__(self, units: dict[int, ServedUnit]):
        # Not calling super().__init__: it builds deprecated datastores we do not use. These two
        # attributes make the server hand requests straight to this object.
        self.old_simulator = True
        self.simdevices: list[Any] = []
        self.units = units

    def _unit(self, device_id: int) -> ServedUnit | ExcCodes:
        u = self.units.get(device_id)
        if u is None or u.faults.silent or not u.present():
            raise NoSuchIdException(f"unit {device_id} does not answer")
        if u.faults.exception is not None:
            return ExcCodes(u.faults.exception)
        return u

    async def async_getValues(
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | ExcCodes:
        u = self._unit(device_id)
        if isinstance(u, ExcCodes):
            return u
        if func_code not in READ_FCS + WRITE_FCS:
            return ExcCodes.ILLEGAL_FUNCTION
        words = u.image.read(func_code, address, count)
        return ExcCodes.ILLEGAL_ADDRESS if words is None else words

    async def async_setValues(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        u = self._unit(device_id)
        if isinstance(u, ExcCodes):
            return u
        if func_code not in WRITE_FCS:
            return ExcCodes.ILLEGAL_FUNCTION
        decoded = u.image.write(address, [int(v) for v in values])
        if decoded is None:
            return ExcCodes.ILLEGAL_ADDRESS
        if decoded:
            try:
                u.on_write(decoded)
            except ValueError as e:
                log.warning("rejected write to %s: %s", u.device_id, e)
                return ExcCodes.ILLEGAL_VALUE
        return None

    def device_ids(self) -> list[int]:
        return list(self.units)


class PortServer:
    """One listening port on 127.0.0.1 serving several unit ids."""

    def __init__(self, port: int, units: dict[int, ServedUnit]):
        self.requested_port = port
        self.units = units
        self.port = port
        self._srv: Any = None

    async def start(self) -> None:
        self._srv = ModbusTcpServer(
            _Context(self.units), address=("127.0.0.1", self.requested_port), ignore_missing_devices=True
        )
        try:
            await self._srv.serve_forever(background=True)
        except RuntimeError as e:
            ids = ", ".join(u.device_id for u in self.units.values())
            raise OSError(f"cannot listen on 127.0.0.1:{self.requested_port} for {ids}: {e}") from None
        self.port = int(self._srv.transport.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._srv is not None:
            await self._srv.shutdown()
            self._srv = None
