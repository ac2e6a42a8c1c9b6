"""Connection exhaustion (issue 15, item 2): idle and slow-header connections from anyone who can
reach the port must not take the API down nor flood the log.

The flood runs against the real API process of the agent (on the simulators), with that
process's open-file limit lowered to 256 (resource.prlimit), so a few hundred connections
do what ~20,000 did to a process with the usual limit. Then: the head and body timeouts, on an
in-process server with short timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from agent.api import app as app_mod
from agent.api import guard
from agent.api.app import ApiServer

from .agent_harness import agent_on_simulators
from .test_api import OP, Env

API_NOFILE = 256
IDLE, SLOW = 600, 100  # both far over what 256 descriptors can hold


def _connect(port: int, partial_head: bytes = b"") -> socket.socket:
    s = socket.socket()
    s.setblocking(False)
    rc = s.connect_ex(("127.0.0.1", port))
    assert rc in (0, errno.EINPROGRESS), os.strerror(rc)
    if partial_head:
        s.setblocking(True)
        s.settimeout(30)
        s.sendall(partial_head)  # waits for the handshake (the kernel's backlog answers it)
        s.setblocking(False)
    return s


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_a_connection_flood_never_stops_healthz_and_logs_a_few_lines(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < IDLE + SLOW + 256:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    flood: list[socket.socket] = []
    try:
        async with agent_on_simulators(tmp_path / "state", demo=True) as h:
            assert h.rt.api is not None and h.rt.api.pid is not None
            pid = h.rt.api.pid
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (API_NOFILE, API_NOFILE))
            port = h.rt.api.port
            async with httpx.AsyncClient(base_url=h.url, timeout=15) as c:
                assert (await c.get("/healthz")).status_code == 200
                for i in range(IDLE + SLOW):
                    head = b"GET /api/site HTTP/1.1\r\nHost: ems\r\nX-Slow: " if i % 7 == 0 and i // 7 < SLOW else b""
                    flood.append(_connect(port, head))
                    if i % 50 == 49:
                        await asyncio.sleep(0.05)  # let the API process accept them
                # During the flood (every socket still open): health and reads answer.
                worst_fds = 0
                for _ in range(5):
                    r = await c.get("/healthz", headers={"Connection": "close"})
                    assert r.status_code == 200, r.text
                    assert (await c.get("/api/site", headers={"Connection": "close"})).status_code == 200
                    worst_fds = max(worst_fds, _fds(pid))
                    await asyncio.sleep(0.2)
                assert worst_fds <= API_NOFILE
                assert h.rt.api.pid == pid and h.rt.api.restarts == 0
                # A command still goes through (operators are not locked out by the flood).
                r = await c.post(
                    "/api/control/mode",
                    json={"mode": "conservative"},
                    headers={"Authorization": f"Bearer {h.rt.demo_token}", "Connection": "close"},
                )
                assert r.status_code == 200
                for s in flood:
                    s.close()
                flood.clear()
                assert (await c.get("/healthz")).status_code == 200  # and after it
    finally:
        for s in flood:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    err = capfd.readouterr().err
    assert "Traceback" not in err
    accept_errors = err.count("accept() out of system resource")
    assert accept_errors <= 3, accept_errors  # at most one line per 10 s, if any
    evicted = [line for line in err.splitlines() if "connection limit reached" in line]
    assert 1 <= len(evicted) <= 6, evicted  # rate-limited: one line per 10 s per kind
    assert len(err.splitlines()) < 40, err[-3000:]


@pytest.fixture
async def env(tmp_path: Path) -> Env:
    e = Env(tmp_path)
    await e.attach()
    await e.cycles(1)
    return e


async def _closed_by_server(s: socket.socket, drip: bool, timeout_s: float = 20.0) -> bool:
    """True once the server closed `s` (EOF or reset); drips a header byte every 0.2 s if asked."""
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + timeout_s  # generous: a busy machine
    while time.monotonic() < deadline:
        if drip:
            try:
                await loop.sock_sendall(s, b"a")
            except OSError:
                return True
        try:
            data = await asyncio.wait_for(loop.sock_recv(s, 4096), 0.2)
        except TimeoutError:
            continue
        except OSError:
            return True
        if data == b"":
            return True
    return False


@contextlib.asynccontextmanager
async def _serving(env: Env) -> AsyncIterator[ApiServer]:
    srv = ApiServer(env.app, "127.0.0.1", 0)
    task = asyncio.create_task(srv.run())
    await srv.started()
    try:
        yield srv
    finally:
        srv.stop()
        await asyncio.wait_for(task, 10)
        await env.close()


async def test_a_request_head_that_never_ends_is_cut_off(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard, "HEAD_TIMEOUT_S", 0.5)
    loop = asyncio.get_running_loop()
    async with _serving(env) as srv, contextlib.AsyncExitStack() as socks:
        silent = socks.enter_context(contextlib.closing(_connect(srv.port)))  # connects, says nothing
        slow = socks.enter_context(
            contextlib.closing(_connect(srv.port, b"GET /healthz HTTP/1.1\r\nHost: ems\r\nX-Drip: "))
        )
        assert await _closed_by_server(silent, drip=False)
        assert await _closed_by_server(slow, drip=True)  # every byte received did not keep it open
        # A kept-alive connection must send its next head in time too.
        kept = socks.enter_context(contextlib.closing(_connect(srv.port)))
        await loop.sock_sendall(kept, b"GET /healthz HTTP/1.1\r\nHost: ems\r\n\r\n")
        first = await asyncio.wait_for(loop.sock_recv(kept, 4096), 10)
        assert first.startswith(b"HTTP/1.1 200")
        await loop.sock_sendall(kept, b"GET /healthz HTTP/1.1\r\nX-Drip: ")
        assert await _closed_by_server(kept, drip=True)
        # A client that sends its request at once is served as before.
        async with httpx.AsyncClient(base_url=srv.url, timeout=10) as c:
            assert (await c.get("/healthz")).status_code == 200


async def test_a_stalled_request_body_answers_408(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_mod, "BODY_TIMEOUT_S", 0.5)
    loop = asyncio.get_running_loop()
    async with _serving(env) as srv:
        s = _connect(srv.port)
        auth = OP["Authorization"]
        head = (
            "POST /api/control/mode HTTP/1.1\r\nHost: ems\r\nContent-Type: application/json\r\n"
            f"Authorization: {auth}\r\nContent-Length: 40\r\n\r\n"
        )
        await loop.sock_sendall(s, head.encode() + b'{"mode": ')  # and the rest never comes
        reply = await asyncio.wait_for(loop.sock_recv(s, 4096), 20)
        assert reply.startswith(b"HTTP/1.1 408")
        assert b'"detail":"request body not received within 0.5 s"' in reply
        s.close()
        assert env.hub.operator.mode == "auto"
