"""The fleet's MQTT side: one client on one broker, wildcard subscriptions to every site's
retained topics, each message folded into the site's state (agent/fleet/state.py).

aiomqtt has no automatic reconnect, so `run` is a retry loop with exponential back-off like the
agent's link (agent/mqtt/link.py). On every (re)connect the broker sends the retained messages
again, so the picture is rebuilt from the broker alone; while the broker is away, the sites go
stale by themselves (their ages grow). One message can only degrade its own site: the parsing is
total, and a topic outside the tree is counted and ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from agent.fleet.config import FleetConfig
from agent.fleet.state import KINDS, SiteState, fleet_view, receive, split_topic
from agent.logs import kv
from agent.mqtt.backoff import Backoff

log = logging.getLogger("ems.fleet")
MAX_SITES = 10_000  # a flood of invented site ids must not grow the fleet without bound


class FleetState:
    """The newest state per site, fed by `FleetSubscriber` (or directly in tests and benches)."""

    def __init__(self, cfg: FleetConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.clock = clock
        self.sites: dict[str, SiteState] = {s.id: SiteState(s.id) for s in cfg.sites}
        self.ignored = 0  # messages on topics that are not a site's status/state/alarm/savings
        self.refused_sites = 0  # messages from new sites beyond MAX_SITES

    def on_message(self, topic: str, payload: bytes) -> None:
        where = split_topic(self.cfg.topic_prefix, topic)
        if where is None:
            self.ignored += 1
            return
        sid, kind = where
        s = self.sites.get(sid)
        if s is None:
            if len(self.sites) >= MAX_SITES:
                self.refused_sites += 1
                return
            s = SiteState(sid)
        self.sites[sid] = receive(s, kind, payload, self.clock())

    def view(self) -> dict[str, Any]:
        return fleet_view(self.sites, self.cfg.sites, self.clock(), self.cfg.stale_after_s)


class FleetSubscriber:
    def __init__(self, state: FleetState) -> None:
        self.state = state
        self.cfg = state.cfg
        self.connected = False
        self.connects = 0
        self._stop = asyncio.Event()

    def topics(self) -> list[str]:
        return [f"{self.cfg.topic_prefix}/+/{kind}" for kind in KINDS]

    async def run(self) -> None:
        backoff = Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        broker = f"{self.cfg.host}:{self.cfg.port}"
        while not self._stop.is_set():
            try:
                async with aiomqtt.Client(
                    self.cfg.host,
                    self.cfg.port,
                    identifier=self.cfg.client_id,
                    keepalive=self.cfg.keepalive_s,
                    timeout=5.0,
                ) as client:
                    self.connected = True
                    self.connects += 1
                    backoff.reset()
                    for topic in self.topics():
                        await client.subscribe(topic, qos=1)
                    log.info("fleet subscribed", extra=kv(broker=broker, prefix=self.cfg.topic_prefix))
                    await self._receive(client)
            except aiomqtt.MqttError as e:
                log.warning(
                    "fleet: broker unreachable or connection lost; retrying",
                    extra=kv(broker=broker, error=str(e), retry_s=backoff.delay_s),
                )
            finally:
                self.connected = False
            if await backoff.wait(self._stop):
                break

    async def _receive(self, client: aiomqtt.Client) -> None:
        stopper = asyncio.create_task(self._stop.wait())
        reader = asyncio.create_task(self._read(client))
        try:
            await asyncio.wait({stopper, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (stopper, reader):
                t.cancel()
            await asyncio.gather(stopper, reader, return_exceptions=True)
        exc = reader.exception() if reader.done() and not reader.cancelled() else None
        if exc is not None:
            raise exc

    async def _read(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            raw = m.payload
            payload = raw if isinstance(raw, bytes) else bytes(raw) if isinstance(raw, bytearray) else str(raw).encode()
            self.state.on_message(m.topic.value, payload)

    def stop(self) -> None:
        self._stop.set()
