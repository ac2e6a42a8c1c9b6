"""The API process's copy of the control process's state, and its way to send commands back.

`Mirror` has the read surface the routes, the observer and /metrics use (`latest`, `operator`,
`alarms`, `stats`, `device_health`, `read()`, `audit.recent()`), fed by Frames from the
control process (agent/api/bridge.py). It fans each new cycle out to its sinks (the Observer)
and to the SSE subscriptions: bounded queues that drop their oldest cycle for a slow client.
`command()` and `refused()` send a request over the channel and wait for the control process
to execute (or audit) it; nothing here changes operator state or writes the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import pickle
import time
from collections.abc import Callable
from typing import Any, Protocol

from agent.live.hub import CycleRecord, CycleStats
from agent.logs import kv
from agent.model.alarms import Alarm
from agent.model.config import SiteConfig
from agent.model.operator import OperatorState

from .channel import (
    FRAME,
    MAX_FRAME_BYTES,
    REPLY,
    STARTED,
    ChannelError,
    Frame,
    Reply,
    encode_request,
    pack,
    read_msg,
)

log = logging.getLogger("ems.api")
REQUEST_TIMEOUT_S = 10.0  # a command the control process has not answered by then: 504


class ControlUnavailable(Exception):
    """The control process could not be asked (channel down) or did not answer in time."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class CycleSink(Protocol):
    def submit(self, rec: CycleRecord) -> None: ...


class Subscription:
    """A bounded queue of cycles for one consumer (an SSE client); full -> drop the oldest."""

    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[CycleRecord] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def offer(self, rec: CycleRecord) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(rec)


class AlarmsView:
    """Active alarms and history as last mirrored (the AlarmBook's read methods)."""

    def __init__(self, active: list[Alarm] | None = None, history: list[Alarm] | None = None) -> None:
        self._active = active or []
        self._history = history or []  # newest first

    def active(self) -> list[Alarm]:
        return list(self._active)

    def history(self, limit: int = 100) -> list[Alarm]:
        return self._history[:limit]


class AuditView:
    def __init__(self, recent: list[dict[str, Any]] | None = None) -> None:
        self._recent = recent or []  # newest first

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._recent[:limit]


class Mirror:
    def __init__(self, site: SiteConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.site = site
        # CLOCK_MONOTONIC is one clock for every process on the machine: cycle ages and override
        # expiry computed here agree with the control process's.
        self.clock = clock
        self.latest: CycleRecord | None = None
        self.operator = OperatorState(maintenance=site.maintenance)
        self.stats = CycleStats()
        self.device_health: dict[str, dict[str, Any]] = {}
        self.alarms = AlarmsView()
        self.audit = AuditView()
        self.sinks: list[CycleSink] = []
        self.frames = 0  # frames applied (on the current channel)
        self._providers: dict[str, dict[str, Any]] = {}
        self._subs: set[Subscription] = set()
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count(1)

    # --- state ---------------------------------------------------------------------------------
    def apply(self, f: Frame) -> None:
        self.frames = f.n
        if f.site is not None:
            self.site = f.site
        self.operator = f.operator
        self.stats = f.stats
        self.device_health = f.device_health
        if f.alarms is not None:
            self.alarms = AlarmsView(*f.alarms)
        if f.audit is not None:
            self.audit = AuditView(f.audit)
        if f.providers is not None:
            self._providers = f.providers
        last = self.latest.snapshot.seq if self.latest is not None else None
        new = [r for r in f.recs if last is None or r.snapshot.seq > last]
        if not new and f.rec is not None and f.rec.snapshot.seq != last:
            new = [f.rec]  # a fresh channel: the latest cycle, without the ones before it
        self.latest = f.rec
        for rec in new:
            for sink in self.sinks:
                sink.submit(rec)
            for sub in self._subs:
                sub.offer(rec)

    def read(self, name: str) -> dict[str, Any] | None:
        return self._providers.get(name)

    def subscribe(self, maxsize: int = 8) -> Subscription:
        sub = Subscription(maxsize)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    # --- the channel ---------------------------------------------------------------------------
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Apply frames and deliver replies until the control process closes the channel."""
        self._writer = writer
        writer.write(pack(STARTED, json.dumps({"pid": os.getpid()}).encode()))
        try:
            while (msg := await read_msg(reader, MAX_FRAME_BYTES)) is not None:
                kind, body = msg
                if kind == FRAME:
                    self.apply(pickle.loads(body))
                elif kind == REPLY:
                    rep: Reply = pickle.loads(body)
                    fut = self._pending.pop(rep.id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(rep)
                else:
                    raise ChannelError(f"unexpected message kind {kind!r}")
        except (ChannelError, ConnectionError) as e:
            log.error("api channel broken", extra=kv(error=str(e)))
        finally:
            self._writer = None
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ControlUnavailable(503, "the control process is not reachable"))
            self._pending.clear()

    async def _ask(self, req: dict[str, Any]) -> Reply:
        if self._writer is None or self._writer.is_closing():
            raise ControlUnavailable(503, "the control process is not reachable")
        rid = next(self._ids)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self._writer.write(encode_request({"id": rid, **req}))
        try:
            return await asyncio.wait_for(fut, REQUEST_TIMEOUT_S)
        except TimeoutError:
            raise ControlUnavailable(504, "the control process did not answer in time") from None
        finally:
            self._pending.pop(rid, None)

    async def command(self, actor: str, payload: dict[str, Any]) -> Reply:
        """Run an operator command in the control process (validated, bounded, audited there)."""
        rep = await self._ask({"op": "command", "actor": actor, "payload": payload})
        self.operator = rep.operator  # read-your-writes, ahead of the next frame
        return rep

    async def refused(self, actor: str, action: dict[str, Any], reason: str) -> None:
        """Have the control process audit an attempt this process refused (a malformed body)."""
        await self._ask({"op": "refused", "actor": actor, "payload": action, "reason": reason})
