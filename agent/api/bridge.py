"""The control process's end of the API channel (the API itself runs in another process).

`ApiBridge` is a Hub sink. Publishing a cycle only marks the mirror dirty and wakes the pump
(O(1) in the loop); the pump, a task on the same event loop, pickles the state once and writes
it when the channel can take it. At most one frame is ever in flight: while the API process is
slow (or stopped), the cycles it has not had wait in a bounded backlog (BACKLOG_CYCLES, the
oldest dropped first, counted in `cycles_dropped`) and the next frame carries them with the
latest state; nothing waits and nothing grows.

Requests from the API process are executed here by the same code as every other channel
(`Hub.submit`: validate, bound, audit, apply), in a worker thread (the audit log fsyncs) one at
a time, and answered with the HTTP status and reason. A state frame is written before each
reply, so a read after a command sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import pickle
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from agent.live.audit import RECENT, AuditUnavailable
from agent.live.hub import CycleRecord, Hub
from agent.logs import kv
from agent.model.config import SiteConfig
from agent.model.operator import CommandError, OperatorState, parse_command

from .channel import (
    FRAME,
    MAX_REQUEST_BYTES,
    REPLY,
    REQUEST,
    STARTED,
    ChannelError,
    Frame,
    Reply,
    decode_request,
    pack,
    read_msg,
)

log = logging.getLogger("ems.api")
BACKLOG_CYCLES = 64  # cycles kept for a busy API process (its chart and demand window), then drop oldest
PROVIDERS_EVERY_S = 1.0  # provider read-outs (ledger, ROI, health, telemetry) at most this often
ALARM_HISTORY = 1000  # cleared alarms mirrored (GET /api/alarms?limit= allows up to this)
MAX_QUEUED_REPLIES = 64  # an API process that sends and never reads gets no more than this queued
# Fields that name a path resource: refusing them is "not found", not "bad request".
_PATH_FIELDS = ("cluster_id", "alarm")


def execute(hub: Hub, actor: str, payload: dict[str, Any], wall: datetime) -> tuple[int, str, OperatorState]:
    """Run one operator command from the API: (HTTP status, reason, operator state after).

    Refused commands change nothing and are audited, like accepted ones. A command that cannot
    be audited (the log cannot be written) is not applied: 503, the reason names the file."""
    try:
        try:
            cmd = parse_command(payload)
        except CommandError as e:
            # Refused before it became a command: still an action someone tried, so audit it.
            hub.audit.record(wall, actor, "api", payload, False, str(e))
            return 400, str(e), hub.operator
        try:
            state = hub.submit(cmd, actor, "api", wall)
        except CommandError as e:
            return (404 if e.field in _PATH_FIELDS else 400), str(e), hub.operator
    except AuditUnavailable as e:
        return 503, f"{e}; the command was not applied", hub.operator
    return 200, "", state


def refuse(
    hub: Hub, actor: str, payload: dict[str, Any], reason: str, wall: datetime
) -> tuple[int, str, OperatorState]:
    """Audit a request the API process refused (a malformed body): 422 with its reason, audited or not."""
    with contextlib.suppress(AuditUnavailable):  # the 422 stands; the alarm says the log is not written
        hub.audit.record(wall, actor, "api", payload, False, reason)
    return 422, reason, hub.operator


class ApiBridge:
    def __init__(self, hub: Hub, wall: Callable[[], datetime] | None = None) -> None:
        self.hub = hub
        tz = hub.site.timezone
        self.wall = wall or (lambda: datetime.now(tz))  # site-local: audit timestamps
        self.cycles_dropped = 0  # cycles the mirror never saw because the channel was busy
        self.started = asyncio.Event()  # the API process said it serves (set per channel)
        self._wake = asyncio.Event()
        self._dirty = False
        self._replies: deque[Reply] = deque()
        self._backlog: deque[CycleRecord] = deque()
        self._reset()
        hub.sinks.append(self)

    def _reset(self) -> None:
        """A new channel: the next frame carries everything."""
        self._n = 0
        self._sent_site: SiteConfig | None = None
        self._sent_alarms = -1
        self._sent_audit = -1
        self._providers_t = -float("inf")
        self._replies.clear()
        self._dirty = True

    @property
    def frames_sent(self) -> int:
        """Frames written on the current channel (the mirror's `frames` catches up to this)."""
        return self._n

    @property
    def queued_cycles(self) -> int:
        """Cycles waiting for the channel (at most BACKLOG_CYCLES)."""
        return len(self._backlog)

    @property
    def pending(self) -> bool:
        """A state change not yet written to the channel."""
        return self._dirty

    # --- Sink ----------------------------------------------------------------------------------
    def submit(self, rec: CycleRecord) -> None:
        if len(self._backlog) >= BACKLOG_CYCLES:
            self._backlog.popleft()
            self.cycles_dropped += 1
        self._backlog.append(rec)
        self._dirty = True
        self._wake.set()

    def push(self) -> None:
        """Mirror the current state now (e.g. after a change that is not a cycle)."""
        self._dirty = True
        self._providers_t = -float("inf")
        self._wake.set()

    # --- frames --------------------------------------------------------------------------------
    def _frame(self) -> bytes:
        """The next frame, pickled. What it carries counts as sent only once it pickled."""
        hub = self.hub
        alarms_v, audit_v = hub.alarms.version, hub.audit.version
        alarms = None
        if alarms_v != self._sent_alarms:
            alarms = (hub.alarms.active(), hub.alarms.history(ALARM_HISTORY))
        audit = hub.audit.recent(RECENT) if audit_v != self._sent_audit else None
        providers = None
        now = time.monotonic()
        if now - self._providers_t >= PROVIDERS_EVERY_S:
            providers = {}
            for name, fn in list(hub.providers.items()):
                try:
                    providers[name] = fn()
                except Exception:  # one broken read-out must not take the API's others with it
                    log.exception("api: provider %r failed", name)
        f = Frame(
            n=self._n + 1,
            rec=hub.latest,
            recs=list(self._backlog),
            operator=hub.operator,
            stats=hub.stats,
            device_health=hub.device_health,
            site=hub.site if hub.site is not self._sent_site else None,
            alarms=alarms,
            audit=audit,
            providers=providers,
        )
        data = pickle.dumps(f, pickle.HIGHEST_PROTOCOL)
        self._n = f.n
        self._backlog.clear()
        self._sent_alarms, self._sent_audit, self._sent_site = alarms_v, audit_v, hub.site
        if providers is not None:
            self._providers_t = now
        return data

    # --- the channel ---------------------------------------------------------------------------
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Feed one API process and answer its requests until either side closes the channel."""
        self._reset()
        self.started.clear()
        writer.transport.set_write_buffer_limits(high=0)  # drain() waits until the kernel took it all
        pump = asyncio.create_task(self._pump(writer), name="api-pump")
        try:
            while (msg := await read_msg(reader, MAX_REQUEST_BYTES)) is not None:
                kind, body = msg
                if kind == REQUEST:
                    await self._request(body)
                elif kind == STARTED:
                    self.started.set()
                else:
                    raise ChannelError(f"unexpected message kind {kind!r}")
        except (ChannelError, ConnectionError) as e:
            log.error("api channel refused", extra=kv(error=str(e)))
        finally:
            writer.close()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await pump

    async def _pump(self, writer: asyncio.StreamWriter) -> None:
        failing = False
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._dirty:
                self._dirty = False
                try:
                    data = self._frame()
                except Exception:  # e.g. a provider's read-out that does not pickle: log once, keep on
                    if not failing:
                        log.exception("api: state not mirrored")
                    failing = True
                else:
                    failing = False
                    writer.write(pack(FRAME, data))
            while self._replies:
                rep = self._replies.popleft()
                writer.write(pack(REPLY, pickle.dumps(rep, pickle.HIGHEST_PROTOCOL)))
            await writer.drain()

    async def _request(self, body: bytes) -> None:
        try:
            rid, op, actor, payload, reason = decode_request(body)
        except ChannelError as e:
            log.warning("api request refused", extra=kv(error=str(e)))
            return
        # One at a time: the next request is read only after this one is done.
        wall = self.wall()
        run = execute if op == "command" else functools.partial(refuse, reason=reason)
        try:
            status, detail, state = await asyncio.to_thread(run, self.hub, actor, payload, wall=wall)
        except Exception:  # a bug in one command must not end the channel (and with it the API)
            log.exception("api request failed", extra=kv(op=op))
            status, detail, state = 500, "internal error in the control process", self.hub.operator
        if len(self._replies) >= MAX_QUEUED_REPLIES:
            log.warning("api replies not read; dropping the oldest", extra=kv(queued=len(self._replies)))
            self._replies.popleft()
        self._replies.append(Reply(rid, status, detail, state))
        self._dirty = True  # operator state and audit changed: the frame goes before the reply
        self._wake.set()
