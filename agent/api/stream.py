"""Server-Sent Events: one `cycle` event per control cycle (the LiveOut JSON).

Each client gets its own bounded Mirror subscription: when a client reads slower than the loop
publishes, its oldest cycles are dropped (counted in ems_sse_dropped_total); the loop never
waits. The subscription is released when the client disconnects (the generator is closed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent

from .auth import Role
from .context import Ctx

QUEUE_LEN = 4  # cycles buffered per client: a few seconds of hiccup, then drop oldest
RETRY_MS = 2000  # tells the browser how soon to reconnect


def stream_router(ctx: Ctx) -> APIRouter:
    r = APIRouter(prefix="/api", dependencies=[Depends(ctx.require(Role.VIEWER))])
    hub, obs = ctx.hub, ctx.obs

    @r.get(
        "/stream",
        response_class=EventSourceResponse,
        summary="Live cycles as Server-Sent Events (event 'cycle', data = the /api/live JSON, id = seq)",
    )
    async def stream() -> AsyncIterator[ServerSentEvent]:
        sub = hub.subscribe(QUEUE_LEN)
        obs.sse_clients += 1
        try:
            if hub.latest is not None:
                rec = hub.latest
                yield ServerSentEvent(
                    raw_data=obs.live_json(rec), event="cycle", id=str(rec.snapshot.seq), retry=RETRY_MS
                )
            else:
                yield ServerSentEvent(comment="waiting for the first cycle", retry=RETRY_MS)
            seen = 0
            while True:
                rec = await sub.queue.get()
                obs.sse_dropped += sub.dropped - seen
                seen = sub.dropped
                yield ServerSentEvent(raw_data=obs.live_json(rec), event="cycle", id=str(rec.snapshot.seq))
        finally:
            hub.unsubscribe(sub)
            obs.sse_clients -= 1

    return r
