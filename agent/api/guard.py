"""Connection guards of the API server: anyone who can reach the port can open connections, so
they are bounded (issue 15, item 2: ~20,000 idle connections took every file descriptor of the
API process, /healthz stopped answering and asyncio logged ~12,000 tracebacks a second).

- `GuardedH11Protocol` (uvicorn's h11 protocol plus three rules):
  * a connection must complete a request head within HEAD_TIMEOUT_S of opening, and of the end
    of its previous response (slow or never-ending headers; uvicorn has no such timeout, and its
    keep-alive timer is reset by every byte received);
  * at most `connection_limit()` connections are open (MAX_CONNECTIONS, and never more than the
    file descriptor limit leaves after RESERVED_FDS): a new connection over the limit closes the
    oldest connections that have no request in progress (idle or still sending headers: that is
    what a flood is made of, while a real client sends its request at once), or is closed itself
    when every connection is busy with a request (e.g. SSE streams);
  * each of these closes is counted and logged at most once per LOG_EVERY_S.
- `RateLimit`: a logging filter for the API process's `asyncio` and `uvicorn.error` loggers, so a
  flood of the same event ("socket.accept() out of system resource", "Invalid HTTP request
  received.") is one line per LOG_EVERY_S with the count, and the accept error has no traceback.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from agent.logs import kv

log = logging.getLogger("ems.api")
MAX_CONNECTIONS = 1000
RESERVED_FDS = 64  # channel, listening socket, stdio, static files, the interpreter's own
HEAD_TIMEOUT_S = 10.0
EVICT_SHARE = 0.1  # over the limit: close this share of the limit at once (one scan per many connects)
LOG_EVERY_S = 10.0
QUIET_TRACEBACKS = ("socket.accept() out of system resource",)


def connection_limit(max_connections: int = MAX_CONNECTIONS) -> int:
    """The most connections this process may hold: bounded by its open-file limit (read now)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return max_connections
    return max(8, min(max_connections, soft - RESERVED_FDS))


class _Counter:
    """Counts an event and logs it at most once per LOG_EVERY_S (with how many since)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.total = 0
        self._unlogged = 0
        self._logged_at = -float("inf")

    def add(self, n: int = 1, **fields: Any) -> None:
        self.total += n
        self._unlogged += n
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            log.warning(self.message, extra=kv(count=self._unlogged, total=self.total, **fields))
            self._unlogged = 0
            self._logged_at = now


EVICTED = _Counter("api: connection limit reached; idle connections closed")
REFUSED = _Counter("api: connection limit reached and every connection busy; new connections closed")
TIMED_OUT = _Counter("api: connections closed for not sending a request head in time")


class GuardedH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)  # type: ignore[arg-type]
        # Open connections, oldest first, without the ones already closed here but not yet gone
        # (abort() frees them on the next turn of the loop): one per server.
        registry: dict[GuardedH11Protocol, None] = self.server_state.__dict__.setdefault("ems_open", {})
        self._registry = registry
        registry[self] = None
        limit = connection_limit()
        if len(registry) > limit:
            self._make_room(limit)
            if self.transport.is_closing():
                return
        self._arm_head_timer()

    def _make_room(self, limit: int) -> None:
        """Close the oldest idle connections: enough to be EVICT_SHARE under the limit, so a
        flood costs one scan per many connections; or this one, if every other one is busy."""
        want = len(self._registry) - limit + int(limit * EVICT_SHARE)
        victims: list[GuardedH11Protocol] = []
        for c in self._registry:
            if len(victims) >= want:
                break
            if c is not self and _idle(c):
                victims.append(c)
        for c in victims:
            c._close_now()
        if victims:
            EVICTED.add(len(victims), limit=limit)
        if len(self._registry) > limit:
            REFUSED.add(limit=limit)
            self._close_now()

    def _close_now(self) -> None:
        self._registry.pop(self, None)
        self._disarm_head_timer()
        self.transport.abort()  # the descriptor is freed on the next turn, not after a FIN handshake

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if _idle(self) and not self.transport.is_closing():
            TIMED_OUT.add(timeout_s=HEAD_TIMEOUT_S)
            self._close_now()

    def handle_events(self) -> None:
        super().handle_events()
        if not _idle(self):
            self._disarm_head_timer()  # a request head arrived: the app's own timeouts apply now

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_timer()  # the next request's head, on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        self._registry.pop(self, None)
        self._disarm_head_timer()
        super().connection_lost(exc)


def _idle(c: object) -> bool:
    """No request in progress: nothing received yet, a partial head, or between two requests.
    (Only HTTP/1.1 connections; anything else, e.g. a WebSocket, counts as busy.)"""
    if not isinstance(c, H11Protocol):
        return False
    return c.cycle is None or c.cycle.response_complete


class RateLimit(logging.Filter):
    """At most one record per distinct message per LOG_EVERY_S; the next one says how many were
    held back. Records in QUIET_TRACEBACKS lose their traceback (it says nothing more)."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        if key.startswith(QUIET_TRACEBACKS):
            record.exc_info = None
            record.exc_text = None
        now = time.monotonic()
        if now - self._last.get(key, -float("inf")) < LOG_EVERY_S:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        if len(self._last) > 1000:  # messages that embed an object's repr: keep the memory bounded
            self._last.clear()
            self._held.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this not logged)"
        return True


def quiet_floods() -> None:
    """Install RateLimit on the loggers a connection flood writes to (once per process)."""
    for name in ("asyncio", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimit) for f in logger.filters):
            logger.addFilter(RateLimit())
