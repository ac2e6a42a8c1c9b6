"""Exponential back-off between connection attempts: aiomqtt has no reconnect of its own, so each
long-lived client (the agent's link, the fleet's subscriber) loops over `async with client` and
waits here between attempts."""

from __future__ import annotations

import asyncio
import contextlib


class Backoff:
    def __init__(self, min_s: float, max_s: float) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.delay_s = min_s  # the wait before the next attempt

    def reset(self) -> None:
        """A connection succeeded: the next loss retries quickly again."""
        self.delay_s = self.min_s

    async def wait(self, stop: asyncio.Event) -> bool:
        """Wait the current delay, or less if `stop` is set meanwhile, and double the delay (up to
        max_s) for the next time. True when stopping: the caller's loop ends."""
        if stop.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=self.delay_s)
        self.delay_s = min(self.delay_s * 2.0, self.max_s)
        return stop.is_set()
