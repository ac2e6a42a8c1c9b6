"""Hostile input against the API: schemathesis over the OpenAPI document (valid and invalid requests,
every role), malformed and oversized bodies, wrong and missing tokens, replays; secrets never leak.

Properties, for every request tried:
- never a server error (5xx other than the documented 503 "not available yet");
- a control request (POST/DELETE /api/control/*) without an operator token is refused (401/403)
  before its body is read, changes nothing and is not recorded as accepted;
- the operator state changes only with a 200 from an operator, and every 200 is one accepted
  audit line; a refused command changes nothing;
- no token (nor its digest) appears in a response, a log line or the audit file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from agent.api.app import MAX_BODY_BYTES, ApiServer
from agent.api.auth import digest

from .test_api import OP, OPERATOR, VIEWER, Env

BAD = "guess-0f1e2d3c4b5a"  # a wrong token: must not leak either
IDENTITIES: dict[str, dict[str, str]] = {
    "none": {},
    "bad_token": {"Authorization": f"Bearer {BAD}"},
    "empty_bearer": {"Authorization": "Bearer"},
    "basic": {"Authorization": f"Basic {OPERATOR}"},
    "no_scheme": {"Authorization": OPERATOR},
    "viewer": {"Authorization": f"Bearer {VIEWER}"},
    "operator": {"Authorization": f"Bearer {OPERATOR}"},
    "operator_lowercase_scheme": {"Authorization": f"bearer {OPERATOR}"},
}
OPERATOR_IDS = {"operator", "operator_lowercase_scheme"}
READER_IDS = OPERATOR_IDS | {"viewer"}
SECRETS = (VIEWER, OPERATOR, BAD, digest(VIEWER), digest(OPERATOR), digest(BAD))
COUNTS: Counter[str] = Counter()  # what was tried, for RELIABILITY.md (printed with -s)


def audit_lines(env: Env) -> list[dict[str, Any]]:
    if not env.audit_path.exists():
        return []
    return [json.loads(x) for x in env.audit_path.read_text().splitlines()]


def no_secret_in(text: str) -> None:
    for s in SECRETS:
        assert s not in text, "a token or its digest leaked"


class Judge:
    """Checks one request's outcome against the properties in the module docstring."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.audit_at = env.audit_path.stat().st_size if env.audit_path.exists() else 0
        self.accepted = 0
        self.requests = 0

    def new_audit_lines(self) -> list[dict[str, Any]]:
        if not self.env.audit_path.exists():
            return []
        with self.env.audit_path.open("rb") as f:
            f.seek(self.audit_at)
            data = f.read()
        self.audit_at += len(data)
        return [json.loads(x) for x in data.decode().splitlines()]

    def check(self, method: str, path: str, identity: str, status: int, body: str) -> None:
        self.requests += 1
        # 503 is the documented "not available yet" (no cycle, no ledger provider); nothing else 5xx
        assert status < 500 or (status == 503 and "detail" in json.loads(body)), (method, path, status, body[:300])
        no_secret_in(body)
        new = self.new_audit_lines()
        control = path.startswith("/api/control")
        if control and identity not in OPERATOR_IDS:
            assert status == (403 if identity == "viewer" else 401), (method, path, identity, status)
            assert new == []  # refused before anything was read or recorded
        elif control:
            assert status in (200, 400, 404, 405, 413, 422), (method, path, status, body[:300])
            if status == 200:
                self.accepted += 1
                assert [(x["accepted"], x["actor"], x["via"]) for x in new] == [(True, "olga", "api")]
            else:
                assert all(not x["accepted"] for x in new)
        else:
            assert new == []  # reads never record (nor change) anything
            if path.startswith("/api/") or path == "/metrics":
                if identity not in READER_IDS:
                    assert status == 401, (path, identity, status)
                else:
                    assert status in (200, 404, 405, 422, 503), (path, status, body[:300])


@contextlib.contextmanager
def serving(env: Env) -> Iterator[httpx.Client]:
    """The app on a real loopback socket, served from a thread (hypothesis drives sync code); its
    channel to the Hub runs in that thread's event loop too."""
    srv = ApiServer(env.app, "127.0.0.1", 0)
    loop = asyncio.new_event_loop()

    async def run() -> None:
        await env.attach()
        try:
            await srv.run()
        finally:
            await env.pair.close()

    th = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    th.start()
    deadline = time.monotonic() + 10
    while not srv.server.started:
        assert time.monotonic() < deadline, "API server did not start"
        time.sleep(0.01)
    try:
        # TCP_NODELAY: without it each request with a body waits for a delayed ACK (~40 ms)
        nodelay = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        with httpx.Client(base_url=srv.url, timeout=10, transport=nodelay) as client:
            yield client
    finally:
        srv.stop()
        th.join(10)
        loop.close()


@pytest.fixture
def env_sync(tmp_path: Path) -> Iterator[Env]:
    """Not yet joined to the Hub: `serving()` does that in its own event loop."""
    e = Env(tmp_path)
    e.publish(2)
    e.hub.alarms.raise_("device_comm", "c03", "no usable data (stale)", e.start)
    yield e


@pytest.fixture
async def env(env_sync: Env) -> AsyncIterator[Env]:
    await env_sync.attach()
    yield env_sync
    await env_sync.close()


# --- schemathesis over the OpenAPI document ----------------------------------------------------
def test_schemathesis_every_operation_every_role(env_sync: Env, caplog: pytest.LogCaptureFixture) -> None:
    env = env_sync
    caplog.set_level(logging.DEBUG)
    schema = schemathesis.openapi.from_asgi("/openapi.json", env.app)
    ops = [r.ok() for r in schema.get_all_operations()]
    ops = [op for op in ops if op.path != "/api/stream"]  # an endless SSE stream: test_api_feed covers it
    assert len(ops) >= 24
    judge = Judge(env)
    before_each: dict[str, Any] = {}
    unsatisfiable = 0
    with serving(env) as client:
        for op in ops:
            raw = op.definition.raw
            # negative cases need something to get wrong: a body or a parameter
            # (a path parameter of type string accepts every string: nothing to get wrong there)
            wrongable = raw.get("requestBody") or any(x["in"] != "path" for x in raw.get("parameters", ()))
            modes = list(schemathesis.GenerationMode) if wrongable else [schemathesis.GenerationMode.POSITIVE]
            for mode in modes:

                @settings(max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck))
                @given(case=op.as_strategy(generation_mode=mode), identity=st.sampled_from(sorted(IDENTITIES)))
                def run(case: Any, identity: str) -> None:
                    kw = case.as_transport_kwargs(base_url=str(client.base_url).rstrip("/"))
                    headers = {k: v for k, v in kw["headers"].items() if k.lower() != "authorization"}
                    headers.update(IDENTITIES[identity])
                    content = kw.get("data")
                    if "json" in kw:
                        content = json.dumps(kw["json"]).encode()
                    before_each["op"] = env.hub.operator
                    resp = client.request(
                        kw["method"], kw["url"], headers=headers, params=kw.get("params"), content=content
                    )
                    COUNTS["schemathesis"] += 1
                    method = case.operation.method.upper()
                    judge.check(method, case.formatted_path, identity, resp.status_code, resp.text)
                    if not (resp.status_code == 200 and identity in OPERATOR_IDS):
                        assert env.hub.operator == before_each["op"], (case.formatted_path, identity, resp.status_code)

                try:
                    run()
                except Unsatisfiable:
                    unsatisfiable += 1
    assert judge.requests >= 150 and unsatisfiable == 0
    no_secret_in(caplog.text)
    no_secret_in(env.audit_path.read_text() if env.audit_path.exists() else "")
    accepted = [x for x in audit_lines(env) if x["accepted"]]
    assert len(accepted) == judge.accepted and all(x["actor"] == "olga" for x in accepted)
    print(f"\nschemathesis: {judge.requests} requests over {len(ops)} operations, {judge.accepted} accepted")


# --- hand-made hostile bodies -------------------------------------------------------------------
CONTROL = [
    ("POST", "/api/control/mode"),
    ("POST", "/api/control/override"),
    ("DELETE", "/api/control/override"),
    ("POST", "/api/control/reserve"),
    ("POST", "/api/control/clusters/c02/maintenance"),
    ("POST", "/api/control/clusters/..%2F..%2Fetc/maintenance"),
    ("POST", "/api/control/alarms/device_comm@c03/ack"),
]
BODIES: dict[str, bytes] = {
    "truncated json": b'{"mode": "idle"',
    "invalid utf-8": b'{"mode": "\xff\xfe"}',
    "empty": b"",
    "null": b"null",
    "array": b'["idle"]',
    "deep nesting": b"[" * 10_000 + b"]" * 10_000,
    "nan": b'{"setpoint_w": NaN, "duration_s": 5, "reserve_load_w": NaN, "reserve_minutes": 1}',
    "infinity": b'{"setpoint_w": Infinity, "duration_s": 5, "reserve_load_w": -Infinity, "reserve_minutes": 1}',
    "1e400": b'{"setpoint_w": 1e400, "duration_s": 5, "reserve_load_w": 1e400, "reserve_minutes": 1}',
    "huge int": b'{"setpoint_w": 1' + b"0" * 400 + b', "duration_s": 5}',
    "bool as number": b'{"setpoint_w": true, "duration_s": 5, "reserve_load_w": false, "reserve_minutes": 1}',
    "string numbers": b'{"setpoint_w": "1000", "duration_s": "5", "reserve_load_w": "1", "reserve_minutes": "1"}',
    "extra field": b'{"mode": "idle", "sudo": true, "on": true}',
    "duplicate keys": b'{"mode": "auto", "mode": "idle", "on": false, "on": true}',
    "unicode mode": '{"mode": "idle\u202e\u0000"}'.encode(),
    "long string": b'{"mode": "' + b"i" * (MAX_BODY_BYTES - 20) + b'"}',
    "over the limit": b'{"mode": "' + b"i" * MAX_BODY_BYTES + b'"}',
    "1 MiB": b'{"mode": "' + b"x" * (1 << 20) + b'"}',
    "over rating": b'{"setpoint_w": 9e9, "duration_s": 5}',
    "negative duration": b'{"setpoint_w": 1000, "duration_s": -5}',
    "valid-looking": b'{"mode": "idle", "setpoint_w": 1000, "duration_s": 60, "on": true}',
}


async def test_hostile_bodies_on_every_control_path_every_role(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    judge = Judge(env)
    c = env.client
    statuses: Counter[tuple[str, int]] = Counter()
    for method, path in CONTROL:
        for name, body in BODIES.items():
            for identity, hdr in IDENTITIES.items():
                before = env.hub.operator
                for ctype in ("application/json", "text/plain") if identity in OPERATOR_IDS else ("application/json",):
                    r = await c.request(method, path, content=body, headers={**hdr, "Content-Type": ctype})
                    COUNTS["hostile body"] += 1
                    statuses[(identity, r.status_code)] += 1
                    judge.check(method, path, identity, r.status_code, r.text)
                    if identity in OPERATOR_IDS and len(body) > MAX_BODY_BYTES:
                        assert r.status_code == 413
                    if r.status_code != 200:
                        assert env.hub.operator == before, (method, path, name, identity)
                    before = env.hub.operator
    # only operators ever got past the door
    assert {i for (i, s) in statuses if s == 200} <= OPERATOR_IDS
    no_secret_in(caplog.text)
    no_secret_in(env.audit_path.read_text())
    # what did change was asked for with a body that was valid for that endpoint
    assert judge.accepted > 0
    print(f"\nhostile bodies: {judge.requests} requests, {judge.accepted} accepted, {sorted(statuses.items())}")


async def test_a_chunked_body_past_the_limit_is_refused_without_reading_it_all(env: Env) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1000):  # 1000 x 4 KiB = 4 MiB if it were all read
            sent += 1
            yield b" " * 4096

    r = await env.client.post("/api/control/mode", content=chunks(), headers={**OP, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.json()["detail"] == f"request body larger than {MAX_BODY_BYTES} bytes"
    assert env.hub.operator.mode == "auto"
    COUNTS["chunked oversize"] += 1


async def test_replayed_api_command_is_idempotent_and_audited_each_time(env: Env) -> None:
    """HTTP commands carry no nonce (bearer token over loopback/TLS): a replayed request is a new
    request by the same operator. Commands are absolute (set X), so a replay changes nothing more."""
    c = env.client
    body = {"reserve_load_w": 450_000, "reserve_minutes": 20}
    states = []
    for _ in range(5):
        r = await c.post("/api/control/reserve", json=body, headers=OP)
        assert r.status_code == 200
        states.append(env.hub.operator)
        COUNTS["api replay"] += 1
    assert len(set(states)) == 1 and states[0].reserve_load_w == 450_000.0
    assert [x["accepted"] for x in audit_lines(env)] == [True] * 5


# --- over a real socket -------------------------------------------------------------------------
async def test_real_server_refuses_oversized_and_unauthenticated_at_the_door(env: Env) -> None:
    srv = ApiServer(env.app, "127.0.0.1", 0)
    task = asyncio.create_task(srv.run())
    try:
        await srv.started()

        def raw(request: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(request)
                s.shutdown(socket.SHUT_WR)
                out = b""
                while chunk := s.recv(65536):
                    out += chunk
                return out

        # Announces 1 GB and sends none of it: answered at once, nothing waits for the body.
        head = (
            b"POST /api/control/mode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + OPERATOR.encode() + b"\r\nContent-Length: 1000000000\r\n\r\n"
        )
        out = await asyncio.to_thread(raw, head)
        assert out.startswith(b"HTTP/1.1 413"), out[:200]
        # No token, valid body: 401 (and nothing audited).
        body = b'{"mode": "idle"}'
        req = (
            b"POST /api/control/mode HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        out = await asyncio.to_thread(raw, req)
        assert out.startswith(b"HTTP/1.1 401"), out[:200]
        # Garbage instead of HTTP: the server answers 400 or hangs up, and keeps serving.
        out = await asyncio.to_thread(raw, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 300)
        assert out == b"" or out.startswith(b"HTTP/1.1 400")
        async with httpx.AsyncClient(base_url=srv.url) as c:
            r = await c.post("/api/control/mode", json={"mode": "idle"}, headers=OP)
            assert r.status_code == 200
        assert env.hub.operator.mode == "idle"
        COUNTS["raw socket"] += 3
    finally:
        srv.stop()
        await task

