"""The agent's MQTT connection: publishes every cycle, takes commands and rack load.

aiomqtt has no automatic reconnect, so `run` is a retry loop with exponential back-off. The
status topic is retained "online" while connected, and the broker publishes the retained
"offline" will if the agent dies without saying goodbye (a clean stop publishes it itself).
`submit` (the Hub sink) only queues: payloads are formatted by the sender task. While the
broker is away, messages wait in a bounded buffer; when it is full the oldest are dropped
and counted. A message is removed from the buffer only after its publish call returned, so a
connection lost mid-send resends it (at least once). Command acks and alarm events go in a
separate small queue that is sent first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import aiomqtt

from agent.live.hub import CycleRecord, Hub
from agent.logs import kv
from agent.model.alarms import Alarm
from agent.mqtt.auth import Verifier
from agent.mqtt.backoff import Backoff
from agent.mqtt.commands import CommandHandler
from agent.mqtt.config import MqttConfig
from agent.mqtt.rackload import RackLoad
from agent.mqtt.topics import (
    Topics,
    alarm_active_payload,
    alarm_payload,
    cluster_payload,
    dispatch_payload,
    dumps,
    health_payload,
    pcs_payload,
    plan_payload,
    savings_payload,
    state_payload,
    status_payload,
)

log = logging.getLogger("ems.mqtt")

STOP_FLUSH_S = 2.0  # a clean stop sends what is buffered for at most this long
PRIORITY_MAX = 1000  # acks and alarm events waiting (they are few; a flood of commands drops oldest)


@dataclass(slots=True)
class Outgoing:
    topic: str
    payload: bytes | Callable[[], bytes]
    qos: int
    retain: bool


class MqttLink:
    def __init__(
        self,
        cfg: MqttConfig,
        hub: Hub,
        wall: Callable[[], datetime] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.hub = hub
        self.topics = Topics(cfg.topic_prefix, hub.site.id)
        self.wall = wall or (lambda: datetime.now(hub.site.timezone))
        self.clock = clock
        # commands signed before this process started are refused: a restart forgets the nonces seen
        started = self.wall().timestamp()
        verifier = Verifier(cfg.secret, cfg.max_skew_s, not_before=started) if cfg.secret is not None else None
        self.commands = CommandHandler(hub, verifier, self.wall)
        self.rack = (
            RackLoad(cfg.rack_load_topic, cfg.rack_stale_s, cfg.racks) if cfg.rack_load_topic is not None else None
        )
        self._out: deque[Outgoing] = deque()
        self._prio: deque[Outgoing] = deque()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._alarms: dict[str, Alarm] = {}
        self._health_version: object = None
        self._dispatch_version: object = None
        self._ledger_report: object = None  # the ledger report last looked at (replaced every 10 s)
        self._savings_sent: dict[str, Any] | None = None  # its savings as last published (without "t")
        self._alarm_summary: dict[str, Any] | None = None  # the alarm/active payload last published (without "t")
        self.connected = False
        self.connects = 0
        self.sent = 0
        self.dropped = 0
        self.bad_messages = 0  # messages whose handling raised (a bug; logged with its traceback)

    # --- the Hub sink --------------------------------------------------------------------------
    def submit(self, rec: CycleRecord) -> None:
        t = self.topics
        s = rec.snapshot
        self._put(Outgoing(t.state, partial(_enc, state_payload, rec), 0, True))
        for c in s.clusters:
            sp = rec.plan.cluster_setpoints_w.get(c.id)
            payload = partial(_enc, cluster_payload, c, sp, s.t_wall, rec.maintenance)
            self._put(Outgoing(t.cluster(c.id), payload, 0, True))
        for p in s.pcs:
            cmd = rec.plan.pcs_setpoints_w.get(p.id)
            self._put(Outgoing(t.pcs(p.id), partial(_enc, pcs_payload, p, cmd, s.t_wall), 0, True))
        self._put(Outgoing(t.plan, partial(_enc, plan_payload, rec.plan, s.t_wall), 0, True))
        self._health()
        self._dispatch()
        self._savings(s.t_wall)
        self._alarm_events(s.t_wall)
        self.commands.summarise()
        self._wake.set()

    def _health(self) -> None:
        """Publish the (prebuilt, daily) health read-out when its version moves."""
        h = self.hub.read("health")
        if h is not None and h.get("version") != self._health_version:
            self._health_version = h.get("version")
            self._put(Outgoing(self.topics.health, partial(_enc, health_payload, h), 1, True))

    def _dispatch(self) -> None:
        """Publish the dispatch plan (agent/live/planning.py) when it changes (its version moves)."""
        d = self.hub.read("plan")
        if d is not None and d.get("version") != self._dispatch_version:
            self._dispatch_version = d.get("version")
            self._put(Outgoing(self.topics.dispatch, partial(_enc, dispatch_payload, d), 1, True))

    def _savings(self, t: datetime) -> None:
        """Publish the savings to date (retained) when the ledger's report was recomputed (the
        runtime does it at most every 10 s) and its figures moved: not every cycle."""
        report = self.hub.read("ledger")
        if report is None or report is self._ledger_report:
            return
        self._ledger_report = report
        p = savings_payload(report, t)
        if p is None or {**p, "t": None} == self._savings_sent:
            return
        self._savings_sent = {**p, "t": None}
        self._put(Outgoing(self.topics.savings, dumps(p), 1, True))

    def _alarm_events(self, t: datetime) -> None:
        now = {a.id: a for a in self.hub.alarms.active()}
        self._alarm_active(list(now.values()), t)
        for aid, a in now.items():
            old = self._alarms.get(aid)
            if old is None or old.message != a.message or old.acked_by != a.acked_by:
                self._put(Outgoing(self.topics.alarm, dumps(alarm_payload(a, True)), 1, False), prio=True)
        cleared = {aid: a for aid, a in self._alarms.items() if aid not in now}
        if cleared:
            history = {a.id: a for a in self.hub.alarms.history(50) if a.id in cleared}
            for aid, a in cleared.items():
                self._put(
                    Outgoing(self.topics.alarm, dumps(alarm_payload(history.get(aid, a), False)), 1, False),
                    prio=True,
                )
        self._alarms = now

    def _alarm_active(self, active: list[Alarm], t: datetime) -> None:
        """The retained summary of the active alarms, on the first cycle and whenever it changes."""
        p = alarm_active_payload(active, t)
        if {**p, "t": None} != self._alarm_summary:
            self._alarm_summary = {**p, "t": None}
            self._put(Outgoing(self.topics.alarm_active, dumps(p), 1, True), prio=True)

    def _put(self, m: Outgoing, prio: bool = False) -> None:
        q, cap = (self._prio, PRIORITY_MAX) if prio else (self._out, self.cfg.buffer_messages)
        if len(q) >= cap:
            q.popleft()
            self.dropped += 1
        q.append(m)

    # --- connection ------------------------------------------------------------------------------
    def _client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(
            self.topics.status, dumps(status_payload("offline", self.cfg.client_id, None)), qos=1, retain=True
        )
        return aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            identifier=self.cfg.client_id,
            will=will,
            keepalive=self.cfg.keepalive_s,
            timeout=5.0,
        )

    async def run(self) -> None:
        backoff = Backoff(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)
        while not self._stop.is_set():
            try:
                async with self._client() as client:
                    self.connected = True
                    self.connects += 1
                    backoff.reset()
                    log.info("mqtt connected", extra=kv(broker=f"{self.cfg.host}:{self.cfg.port}"))
                    await client.subscribe(self.topics.cmd, qos=1)
                    if self.rack is not None:
                        await client.subscribe(self.rack.topic, qos=0)
                    online = status_payload("online", self.cfg.client_id, self.wall())
                    await client.publish(self.topics.status, dumps(online), qos=1, retain=True)
                    await self._session(client)
                    offline = status_payload("offline", self.cfg.client_id, self.wall())
                    await client.publish(self.topics.status, dumps(offline), qos=1, retain=True)
            except aiomqtt.MqttError as e:
                log.warning(
                    "mqtt connection lost; retrying",
                    extra=kv(broker=f"{self.cfg.host}:{self.cfg.port}", error=str(e), retry_s=backoff.delay_s),
                )
            finally:
                self.connected = False
            if await backoff.wait(self._stop):
                break

    async def _session(self, client: aiomqtt.Client) -> None:
        sender = asyncio.create_task(self._sender(client))
        receiver = asyncio.create_task(self._receiver(client))
        stopper = asyncio.create_task(self._stop.wait())
        tasks = {sender, receiver, stopper}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done and not sender.done():
                # A clean stop: let the sender finish its message and flush for a moment. Cancelling
                # it inside publish() would leave the client unable to send the "offline" status.
                self._wake.set()
                await asyncio.wait({sender}, timeout=STOP_FLUSH_S + 1.0)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for t in (sender, receiver):
            exc = t.exception() if t.done() and not t.cancelled() else None
            if exc is not None:
                raise exc

    async def _sender(self, client: aiomqtt.Client) -> None:
        deadline = None
        while True:
            while self._prio or self._out:
                if self._stop.is_set():
                    deadline = deadline or time.monotonic() + STOP_FLUSH_S
                    if time.monotonic() > deadline:
                        return
                q = self._prio if self._prio else self._out
                m = q[0]
                payload = m.payload if isinstance(m.payload, bytes) else m.payload()
                await client.publish(m.topic, payload, qos=m.qos, retain=m.retain)
                if q and q[0] is m:  # not evicted meanwhile by a full buffer
                    q.popleft()
                self.sent += 1
            if self._stop.is_set():
                return
            self._wake.clear()
            await self._wake.wait()

    async def _receiver(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            raw = message.payload
            payload = raw if isinstance(raw, bytes) else bytes(raw) if isinstance(raw, bytearray) else str(raw).encode()
            try:
                if topic == self.topics.cmd:
                    ack = self.commands.handle(payload)
                    self._put(Outgoing(self.topics.ack, dumps(ack), 1, False), prio=True)
                    self._wake.set()
                elif self.rack is not None:
                    self.rack.on_message(topic, payload, self.clock())
            except Exception:  # one hostile message must never end the session (a bug: log it)
                self.bad_messages += 1
                log.exception("mqtt message could not be handled", extra=kv(topic=topic, size=len(payload)))

    # --- lifecycle -------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def status(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "broker": f"{self.cfg.host}:{self.cfg.port}",
            "connects": self.connects,
            "sent": self.sent,
            "buffered": len(self._out) + len(self._prio),
            "dropped": self.dropped,
            "commands_accepted": self.commands.accepted,
            "commands_rejected": self.commands.rejected,
            "rack_bad_messages": self.rack.bad_messages if self.rack is not None else 0,
            "unhandled_messages": self.bad_messages,
        }


def _enc(fn: Callable[..., dict[str, Any]], *args: Any) -> bytes:
    return dumps(fn(*args))
