"""A loopback TCP proxy that can freeze: the peer vanishes without a FIN. (No tests here.)

    with FreezableProxy(target_port) as proxy:   # listens on 127.0.0.1:proxy.port
        ...                                      # traffic flows both ways
        proxy.freeze()   # every open connection stops forwarding and reading, and is never closed
                         # (a half-open peer: no FIN, no RST); new connections are accepted by the
                         # kernel and then held the same way (the network is gone)
        proxy.thaw()     # new connections flow again; the frozen ones stay frozen until the end

It runs its own event loop in a thread, so blocking tests (a telemetry writer thread) and asyncio
tests can both use it. Everything binds 127.0.0.1; `close()` ends every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType


class FreezableProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0  # accepted so far
        self._frozen = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="freeze-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._holds: list[asyncio.Event] = []  # set at close: releases every held pipe

    def __enter__(self) -> FreezableProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._handle, "127.0.0.1", 0)

    def freeze(self) -> None:
        self._loop.call_soon_threadsafe(self._set_frozen, True)

    def thaw(self) -> None:
        self._loop.call_soon_threadsafe(self._set_frozen, False)

    def _set_frozen(self, on: bool) -> None:
        self._frozen = on

    async def _hold(self) -> None:
        ev = asyncio.Event()
        self._holds.append(ev)
        await ev.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        if self._frozen:
            await self._hold()  # accepted, never answered, never closed
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.append(up_w)
        frozen_from_start = [False]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while True:
                if self._frozen or frozen_from_start[0]:
                    frozen_from_start[0] = True  # once frozen, this connection never moves again
                    await self._hold()
                    return
                try:
                    data = await src.read(65536)
                except OSError:
                    data = b""
                if self._frozen or frozen_from_start[0]:
                    frozen_from_start[0] = True  # read just before the freeze: lost in the network
                    await self._hold()
                    return
                if not data:
                    dst.close()
                    return
                dst.write(data)
                with contextlib.suppress(OSError):
                    await dst.drain()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for ev in self._holds:
            ev.set()
        for w in self._writers:
            w.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
