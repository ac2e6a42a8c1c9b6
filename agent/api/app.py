"""The API application: `create_app(mirror, tokens, ...)` -> FastAPI, and `ApiServer` to run it.

It runs in the API process (agent/api/front.py), reading a Mirror of the control process's
state and sending commands over the channel (agent/api/bridge.py executes them).

Routes: /api/* reads (viewer), /api/control/* commands (operator), /api/stream (SSE),
/metrics (viewer, like every read), /healthz (no auth: liveness only, no site data),
and the dashboard at / (static files; it calls the API like any other client).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Generator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import Role, TokenStore
from .context import Ctx
from .guard import GuardedH11Protocol
from .metrics import render
from .mirror import ControlUnavailable, Mirror
from .observer import Observer
from .process import listen_socket
from .routes_control import CONTROL_PREFIX, control_router
from .routes_read import read_router
from .stream import QuietDisconnect, stream_router

log = logging.getLogger("ems.api")
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
STALE_CYCLES = 5.0  # /healthz fails when the last cycle is older than this many periods
SHUTDOWN_GRACE_S = 2  # open SSE streams would otherwise hold uvicorn's shutdown forever
MAX_BODY_BYTES = 16 * 1024  # the largest command is ~100 bytes; larger bodies answer 413 unread
MAX_HEAD_BYTES = 16 * 1024  # request line + headers (h11's own default, made explicit)
ACCEPT_BATCH = 128  # as listen_socket's backlog
BODY_TIMEOUT_S = 10.0  # a body must arrive within this (a stalled body would hold a request forever)


def _finite(x: Any) -> Any:
    """`x` with non-finite floats as strings ("nan", "inf") and bytes as text: JSON responses
    refuse NaN, and jsonable_encoder raises on bytes that are not UTF-8 (both were a 500)."""
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


class _Guard:
    """Pure ASGI, in front of every route: a control request is authenticated (401/403) before
    its body is read, and no request body may exceed MAX_BODY_BYTES (413), announced or streamed.
    The routes still check the role themselves; this only refuses earlier and cheaper."""

    def __init__(self, app: ASGIApp, ctx: Ctx) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(CONTROL_PREFIX):
            try:
                self.ctx.require(Role.OPERATOR)(Request(scope))
            except HTTPException as e:
                await JSONResponse({"detail": e.detail}, e.status_code, headers=e.headers)(scope, receive, send)
                return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        too_large = JSONResponse({"detail": f"request body larger than {MAX_BODY_BYTES} bytes"}, 413)
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            await too_large(scope, receive, send)
            return
        if length is None and b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body
            return
        # Read the body here, bounded, then hand it to the app in one message.
        body = b""
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                while True:
                    msg = await receive()
                    if msg["type"] != "http.request":
                        return  # the client went away
                    body += msg.get("body", b"")
                    if len(body) > MAX_BODY_BYTES:
                        await too_large(scope, receive, send)
                        return
                    if not msg.get("more_body", False):
                        break
        except TimeoutError:
            detail = f"request body not received within {BODY_TIMEOUT_S:g} s"
            await JSONResponse({"detail": detail}, 408, headers={"Connection": "close"})(scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def create_app(hub: Mirror, tokens: TokenStore | None, *, open_read: bool = False) -> FastAPI:
    """The API over one Mirror. `tokens=None` leaves control impossible (every command answers 401)."""
    ctx = Ctx(hub=hub, obs=Observer(hub), tokens=tokens, open_read=open_read)
    hub.sinks.append(ctx.obs)
    app = FastAPI(
        title="ems-agent API",
        version="1",
        description=(
            "Energy management agent: live site state, operator control, alarms, savings. "
            "SI units (W, Wh, V, A, s, %); battery power positive = discharge; grid positive = import. "
            "Send `Authorization: Bearer <token>`; viewers read, operators also control."
        ),
    )
    app.state.ctx = ctx
    app.add_middleware(_Guard, ctx=ctx)
    app.add_middleware(QuietDisconnect)  # outermost: SSE teardown noise never reaches uvicorn
    app.include_router(read_router(ctx), tags=["read"])
    app.include_router(stream_router(ctx), tags=["live"])
    app.include_router(control_router(ctx))

    @app.exception_handler(RequestValidationError)
    async def refused(request: Request, exc: RequestValidationError) -> Response:
        # A malformed command is an action someone tried: audit it (the body, never a token).
        actor = getattr(request.state, "actor", None)
        errs = jsonable_encoder(_finite(exc.errors()))  # a NaN or non-UTF-8 body must not become a 500
        if request.url.path.startswith(CONTROL_PREFIX) and actor is not None:
            reason = "; ".join(f"{'.'.join(str(x) for x in e['loc'][1:])}: {e['msg']}" for e in errs)
            action = {"path": request.url.path, "body": errs[0].get("input") if errs else None}
            with contextlib.suppress(ControlUnavailable):  # the 422 stands; the log says why no audit
                await hub.refused(actor, action, reason)
        return JSONResponse({"detail": errs}, status_code=422)

    @app.exception_handler(ControlUnavailable)
    async def unavailable(request: Request, exc: ControlUnavailable) -> Response:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.get("/healthz", tags=["ops"], summary="Liveness: 200 while cycles are fresh, 503 otherwise")
    def healthz() -> JSONResponse:
        rec = hub.latest
        if rec is None:
            return JSONResponse({"status": "starting", "detail": "no control cycle yet"}, status_code=503)
        age = max(0.0, hub.clock() - rec.snapshot.t_mono)
        limit = STALE_CYCLES * hub.site.cycle_s
        if age > limit:
            return JSONResponse(
                {
                    "status": "stale",
                    "detail": f"last cycle {age:.1f} s ago (limit {limit:g} s)",
                    "age_s": age,
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok", "seq": rec.snapshot.seq, "age_s": age})

    @app.get(
        "/metrics",
        tags=["ops"],
        response_class=PlainTextResponse,
        summary="Prometheus exposition (viewer token as for any read; open with open_read)",
        dependencies=[Depends(ctx.require(Role.VIEWER))],
    )
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(render(hub, ctx.obs, hub.clock()), media_type="text/plain; version=0.0.4")

    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")
    return app


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the agent owns SIGINT/SIGTERM/SIGHUP; uvicorn must not take them over


class ApiServer:
    """uvicorn on a listening socket: given (the API process gets it from the control process), or
    bound at construction (port 0 = a free port, see `.port`).

    `run()` serves until `stop()`; open SSE streams get SHUTDOWN_GRACE_S to finish.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, sock: socket.socket | None = None) -> None:
        self.sock = sock if sock is not None else listen_socket(host, port)
        self.sock.setblocking(False)
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,  # nothing to learn per request; and it keeps URLs out of the logs
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            lifespan="off",
            http=GuardedH11Protocol,  # bounded connections and a request-head timeout (guard.py)
            # asyncio's accept queue (listen()) and the most connections accepted per event-loop
            # turn: uvicorn's 2048 let a flood open thousands of descriptors before the guard ran.
            backlog=ACCEPT_BATCH,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        )
        self.server = _QuietServer(config)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def run(self) -> None:
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            self.sock.close()

    def stop(self) -> None:
        self.server.should_exit = True

    async def started(self, timeout_s: float = 10.0) -> None:
        """Wait until the server accepts connections."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.server.started:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"API server on {self.url} did not start within {timeout_s:g} s")
            await asyncio.sleep(0.01)
