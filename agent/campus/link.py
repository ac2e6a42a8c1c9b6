"""The MQTT connection both campus sides keep (the coordinator and each agent's campus link).

aiomqtt has no automatic reconnect: `keep_connected` is the retry loop with exponential back-off,
and a session is a sender and a receiver task, the first to end (the connection lost) ending the
other. Each side sends only its newest messages (a slot per topic, nothing buffered while the
broker is away: a late report or share is refused as stale anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiomqtt

from agent.campus.config import Broker
from agent.logs import kv

log = logging.getLogger("ems.campus")

RECONNECT_MIN_S, RECONNECT_MAX_S = 0.5, 5.0


def client(b: Broker, will: aiomqtt.Will | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(b.host, b.port, identifier=b.client_id, keepalive=b.keepalive_s, will=will, timeout=5.0)


def payload_bytes(message: aiomqtt.Message) -> bytes:
    raw = message.payload
    return raw if isinstance(raw, bytes) else bytes(raw) if isinstance(raw, bytearray) else str(raw).encode()


async def keep_connected(
    b: Broker,
    session: Callable[[aiomqtt.Client], Awaitable[None]],
    stop: asyncio.Event,
    who: str,
    connected: Callable[[bool], None],
    will: aiomqtt.Will | None = None,
) -> None:
    """Connect, run `session` until the connection drops, retry with back-off, until `stop` is set."""
    backoff = RECONNECT_MIN_S
    while not stop.is_set():
        try:
            async with client(b, will) as c:
                connected(True)
                backoff = RECONNECT_MIN_S
                log.info(f"{who} connected", extra=kv(broker=f"{b.host}:{b.port}"))
                await session(c)
        except aiomqtt.MqttError as e:
            log.warning(
                f"{who} lost the broker; retrying", extra=kv(broker=f"{b.host}:{b.port}", error=str(e), retry_s=backoff)
            )
        finally:
            connected(False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=backoff)
        backoff = min(backoff * 2.0, RECONNECT_MAX_S)


async def first_of(*coros: Awaitable[object]) -> None:
    """Run `coros` until the first ends; cancel the rest; re-raise what ended one (a lost connection)."""
    tasks = {asyncio.ensure_future(c) for c in coros}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for t in done:
        exc = t.exception() if not t.cancelled() else None
        if exc is not None:
            raise exc


async def finish(task: asyncio.Task[None], timeout_s: float) -> None:
    """Wait for `task` to end by itself (it was asked to stop) for up to `timeout_s`, then cancel it."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, timeout_s)  # on time-out wait_for cancels it and waits for that
