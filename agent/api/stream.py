"""Server-Sent Events: one `cycle` event per control cycle (the LiveOut JSON).

Each client gets its own bounded Mirror subscription: when a client reads slower than the loop
publishes, its oldest cycles are dropped (counted in ems_sse_dropped_total); the loop never
waits. The subscription is released when the response ends (a request-scoped dependency).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth import Role
from .context import Ctx
from .mirror import Subscription

QUEUE_LEN = 4  # cycles buffered per client: a few seconds of hiccup, then drop oldest
RETRY_MS = 2000  # tells the browser how soon to reconnect


STREAM_PATH = "/api/stream"


class QuietDisconnect:
    """ASGI wrapper: a stream whose client vanished ends, inside FastAPI, in anyio's
    BrokenResourceError (its keep-alive task sends into a stream already closed by the teardown),
    and uvicorn would log a 40-line traceback per dropped client: unbounded log from anyone who
    can open a stream. That is how such a stream ends, not an error; anything else still raises."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except* (anyio.BrokenResourceError, anyio.ClosedResourceError):
            if scope.get("path") != STREAM_PATH:
                raise


def stream_router(ctx: Ctx) -> APIRouter:
    r = APIRouter(prefix="/api", dependencies=[Depends(ctx.require(Role.VIEWER))])
    hub, obs = ctx.hub, ctx.obs

    async def subscription() -> AsyncIterator[Subscription]:
        # A dependency (request scope), not the generator's `finally`: FastAPI ends the response
        # and then unwinds this, however the stream ended. A stream cancelled while it was blocked
        # sending to a client left its generator suspended, and the generator's `finally` ran only
        # when the garbage collector got to it: seconds to minutes later (issue 15, item 8).
        sub = hub.subscribe(QUEUE_LEN)
        obs.sse_clients += 1
        try:
            yield sub
        finally:
            hub.unsubscribe(sub)
            obs.sse_clients -= 1

    subscribed = Depends(subscription)

    @r.get(
        "/stream",
        response_class=EventSourceResponse,
        summary="Live cycles as Server-Sent Events (event 'cycle', data = the /api/live JSON, id = seq)",
    )
    async def stream(sub: Subscription = subscribed) -> AsyncIterator[ServerSentEvent]:
        sent = -1  # the seq of the cycle sent last
        if hub.latest is not None:
            rec = hub.latest
            sent = rec.snapshot.seq
            yield ServerSentEvent(raw_data=obs.live_json(rec), event="cycle", id=str(sent), retry=RETRY_MS)
        else:
            yield ServerSentEvent(comment="waiting for the first cycle", retry=RETRY_MS)
        seen = 0
        while True:
            rec = await sub.queue.get()
            obs.sse_dropped += sub.dropped - seen
            seen = sub.dropped
            if rec.snapshot.seq == sent:
                # published between the subscription and the read of the latest above: sent already
                # (a loaded CI machine streamed ids 3, 3, 4, 5)
                continue
            sent = rec.snapshot.seq
            yield ServerSentEvent(raw_data=obs.live_json(rec), event="cycle", id=str(sent))

    return r
