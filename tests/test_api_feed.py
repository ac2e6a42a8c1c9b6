"""The API's two ends in one event loop, for the API tests (the site they watch is a fake from
tests/fakes.py: SiteFeed). This module holds no tests; test_api*.py and the browser test use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from datetime import datetime

from agent.api.bridge import ApiBridge
from agent.api.mirror import Mirror
from agent.live.hub import Hub


class ApiPair:
    """The API's two ends in one event loop, joined by a socketpair: the Hub's ApiBridge (as in the
    control process) and the Mirror the app reads (as in the API process). The same channel, frames
    and requests as between the two processes, without spawning one; `attach()` in the loop that
    runs the app."""

    def __init__(self, hub: Hub, wall: Callable[[], datetime], clock: Callable[[], float] | None = None) -> None:
        self.bridge = ApiBridge(hub, wall=wall)
        self.mirror = Mirror(hub.site, clock=clock or hub.clock)
        self._tasks: list[asyncio.Task[None]] = []

    async def attach(self) -> None:
        a, b = socket.socketpair()
        ra, wa = await asyncio.open_unix_connection(sock=a)
        rb, wb = await asyncio.open_unix_connection(sock=b)
        self._tasks = [
            asyncio.create_task(self.bridge.serve(ra, wa)),
            asyncio.create_task(self.mirror.serve(rb, wb)),
        ]
        await asyncio.wait_for(self.bridge.started.wait(), 10)
        await self.sync()

    async def sync(self, timeout_s: float = 10.0) -> None:
        """Mirror the Hub now (a state change that is not a cycle) and wait until it arrived."""
        self.bridge.push()
        deadline = time.monotonic() + timeout_s
        while self.bridge.pending or self.mirror.frames < self.bridge.frames_sent:
            assert time.monotonic() < deadline, "the mirror did not catch up"
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
