"""A static Modbus TCP server for register images (tests and benchmarks of the driver layer).

Serves one RegisterImage per unit id on a loopback port, exactly as built by
`Profile.encode_image`, and can misbehave on demand per unit: "silent" (never answers, so the
client times out), "exception" (Modbus exception response 0x04, device failure) or
"ignore_writes" (acknowledges writes but keeps the old values). Addresses
outside the image answer "illegal data address", as a real device would. The live simulated
site is simulators/; this is only the smallest server that proves the driver against bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.profile import RegisterImage

MODES = ("ok", "silent", "exception", "ignore_writes")


def _runs(regs: Mapping[int, int]) -> list[SimData]:
    """Contiguous address runs of an image table as SimData blocks."""
    out: list[SimData] = []
    addrs = sorted(regs)
    i = 0
    while i < len(addrs):
        j = i
        while j + 1 < len(addrs) and addrs[j + 1] == addrs[j] + 1:
            j += 1
        out.append(SimData(addrs[i], values=[regs[a] for a in addrs[i : j + 1]], datatype=DataType.REGISTERS))
        i = j + 1
    return out


class ImageServer:
    def __init__(self, images: Mapping[int, RegisterImage], host: str = "127.0.0.1", port: int = 0) -> None:
        self.images = dict(images)
        self.host = host
        self.port = port
        self.mode: dict[int, str] = dict.fromkeys(self.images, "ok")
        self.requests = 0
        self._wake = asyncio.Event()
        self._server: ModbusTcpServer | None = None

    async def _action(
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        mode = self.mode.get(unit, "ok")
        if mode == "exception":
            return ExcCodes.DEVICE_FAILURE
        if mode == "ignore_writes" and set_values is not None:
            # a device that acknowledges writes but keeps its registers (write verify must catch it)
            off = address - start_address
            for i in range(len(set_values)):
                set_values[i] = current[off + i]  # type: ignore[call-overload]
        if mode == "silent":
            try:
                async with asyncio.timeout(60):
                    await self._wake.wait()
            except TimeoutError:
                pass
        return None

    def _device(self, unit: int, img: RegisterImage) -> SimDevice:
        async def action(
            fc: int, start: int, addr: int, count: int, cur: list[int], setv: list[int] | list[bool] | None
        ) -> ExcCodes | None:
            return await self._action(unit, fc, start, addr, count, cur, setv)

        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        hr = _runs(img.holding) or [SimData(0, values=0, datatype=DataType.REGISTERS)]
        ir = _runs(img.input) or [SimData(0, values=0, datatype=DataType.REGISTERS)]
        return SimDevice(id=unit, simdata=(bits, list(bits), hr, ir), action=action)

    async def start(self) -> int:
        """Start serving; returns the bound port."""
        self._wake.clear()
        devices = [self._device(u, img) for u, img in self.images.items()]
        self._server = ModbusTcpServer(devices, address=(self.host, self.port))
        await self._server.serve_forever(background=True)
        transport: Any = self._server.transport  # an asyncio.Server: has .sockets
        self.port = int(transport.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        self._wake.set()  # release requests held by "silent" units
        if self._server is not None:
            await self._server.shutdown()  # type: ignore[no-untyped-call]
            self._server = None

    async def set_values(self, unit: int, table: str, addr: int, words: list[int]) -> None:
        assert self._server is not None, "server not started"
        await self._server.async_setValues(unit, 3 if table == "holding" else 4, addr, words)

    async def get_values(self, unit: int, table: str, addr: int, count: int) -> list[int]:
        assert self._server is not None, "server not started"
        res = await self._server.async_getValues(unit, 3 if table == "holding" else 4, addr, count)
        return [int(x) for x in res]
