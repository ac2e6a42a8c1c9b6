"""The channel between the control process and the API process, piece by piece: request checking,
framing, the fast pickling of cycle records, the mirror's bookkeeping and the bridge's bounds."""

from __future__ import annotations

import asyncio
import pickle
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.api.bridge import BACKLOG_CYCLES, ApiBridge, execute
from agent.api.channel import (
    FRAME,
    MAX_REQUEST_BYTES,
    REQUEST,
    ChannelError,
    decode_request,
    encode_request,
    pack,
    read_msg,
)
from agent.api.mirror import Mirror
from agent.live.audit import AuditLog
from agent.live.hub import Hub
from agent.model.config import load_site
from agent.model.operator import OperatorState
from agent.model.pickling import fast_pickle

from .fakes import DEMO_SITE, FakeClock, SiteFeed
from .test_api_feed import ApiPair

START = datetime(2026, 11, 24, 10, 0, 0)


def make(tmp: Path) -> tuple[Hub, SiteFeed, FakeClock]:
    site = load_site(DEMO_SITE)
    clock = FakeClock()
    hub = Hub(site, AuditLog(tmp / "audit.jsonl"), clock=clock)
    return hub, SiteFeed(hub, START.replace(tzinfo=site.timezone)), clock


# --- requests: what the API process may send ----------------------------------------------------
OK = {"id": 7, "op": "command", "actor": "olga", "payload": {"command": "set_mode", "mode": "idle"}}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({}, None),
        ({"op": "refused", "reason": "mode: wrong type"}, None),
        ({"id": "7"}, "request id must be an integer"),
        ({"id": True}, "request id must be an integer"),
        ({"op": "exec"}, "unknown request op 'exec'"),
        ({"actor": ""}, "request actor must be a non-empty string"),
        ({"actor": None}, "request actor must be a non-empty string"),
        ({"payload": ["set_mode"]}, "request payload must be an object"),
        ({"reason": 5}, "request payload must be an object and reason a string"),
    ],
)
def test_requests_are_checked_field_by_field(change: dict[str, Any], error: str | None) -> None:
    body = encode_request({**OK, **change})[5:]
    if error is None:
        rid, op, actor, payload, _ = decode_request(body)
        assert (rid, op, actor, payload) == (7, change.get("op", "command"), "olga", OK["payload"])
    else:
        with pytest.raises(ChannelError, match=error):
            decode_request(body)


@pytest.mark.parametrize("body", [b"", b"\xff", b"[1]", b"null", b"\x80\x05K\x01."])  # the last: a pickle
def test_a_request_that_is_not_a_json_object_is_refused(body: bytes) -> None:
    with pytest.raises(ChannelError):
        decode_request(body)


def test_nan_in_a_command_crosses_so_the_command_parser_can_refuse_it_with_a_reason() -> None:
    body = encode_request({**OK, "payload": {"command": "override", "setpoint_w": float("nan"), "duration_s": 5}})
    assert decode_request(body[5:])[3]["setpoint_w"] != decode_request(body[5:])[3]["setpoint_w"]  # NaN


# --- framing -------------------------------------------------------------------------------------
async def _reader_with(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader()
    r.feed_data(data)
    r.feed_eof()
    return r


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", []),
        (pack(FRAME, b"abc"), [(FRAME, b"abc")]),
        (pack(FRAME, b"") + pack(REQUEST, b"{}"), [(FRAME, b""), (REQUEST, b"{}")]),
    ],
)
async def test_messages_round_trip(data: bytes, expected: list[tuple[bytes, bytes]]) -> None:
    r = await _reader_with(data)
    got = []
    while (m := await read_msg(r, 1024)) is not None:
        got.append(m)
    assert got == expected


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (pack(REQUEST, b"x" * 10)[:3], "inside a message header"),
        (pack(REQUEST, b"x" * 10)[:-1], "inside a message body"),
        (pack(REQUEST, b"x" * (MAX_REQUEST_BYTES + 1)), "exceeds"),
    ],
)
async def test_torn_or_oversized_messages_are_refused(data: bytes, error: str) -> None:
    with pytest.raises(ChannelError, match=error):
        await read_msg(await _reader_with(data), MAX_REQUEST_BYTES)


# --- fast pickling -------------------------------------------------------------------------------
def test_a_cycle_record_pickles_to_an_equal_record(tmp_path: Path) -> None:
    _, feed, _ = make(tmp_path)
    feed.faulted.add("c03")
    rec = feed.publish()
    data = pickle.dumps(rec, pickle.HIGHEST_PROTOCOL)
    back = pickle.loads(data)
    # Equal field by field; compared as bytes, since a missing value is NaN and NaN != NaN.
    assert back is not rec and pickle.dumps(back, pickle.HIGHEST_PROTOCOL) == data
    assert type(back.snapshot.clusters[0].soc_pct) is type(rec.snapshot.clusters[0].soc_pct)
    assert back.snapshot.clusters[2] == rec.snapshot.clusters[2] and back.snapshot.t_wall == rec.snapshot.t_wall


def test_fast_pickle_refuses_a_class_it_cannot_rebuild() -> None:
    from dataclasses import field

    @dataclass(frozen=True, slots=True)
    class Hidden:
        a: int
        b: int = field(init=False, default=0)

    with pytest.raises(TypeError, match="every field to be an __init__ parameter"):
        fast_pickle(Hidden)


# --- the mirror ----------------------------------------------------------------------------------
class Seen:
    def __init__(self) -> None:
        self.seqs: list[int] = []

    def submit(self, rec: Any) -> None:
        self.seqs.append(rec.snapshot.seq)


async def test_the_mirror_feeds_each_cycle_once_in_order_and_a_fresh_one_from_the_latest(tmp_path: Path) -> None:
    hub, feed, _ = make(tmp_path)
    pair = ApiPair(hub, wall=lambda: START)
    seen = Seen()
    pair.mirror.sinks.append(seen)
    for _ in range(3):
        feed.publish()  # before the channel exists: the backlog keeps them
    await pair.attach()
    assert seen.seqs == [1, 2, 3]
    for _ in range(5):
        feed.publish()  # one frame carries the five
    await pair.sync()
    await pair.sync()  # a state frame (no new cycle) feeds nothing again
    assert seen.seqs == [1, 2, 3, 4, 5, 6, 7, 8]
    assert pair.mirror.latest is not None and pair.mirror.latest.snapshot.seq == 8
    await pair.close()

    # A new API process (a new mirror on a new channel) starts from the latest cycle.
    pair2 = ApiPair(hub, wall=lambda: START)
    hub.sinks.remove(pair.bridge)
    seen2 = Seen()
    pair2.mirror.sinks.append(seen2)
    await pair2.attach()
    assert seen2.seqs == [8]
    await pair2.close()


async def test_the_bridge_backlog_is_bounded_while_nobody_reads(tmp_path: Path) -> None:
    hub, feed, _ = make(tmp_path)
    bridge = ApiBridge(hub, wall=lambda: START)
    for _ in range(BACKLOG_CYCLES + 40):
        feed.publish()
    assert bridge.queued_cycles == BACKLOG_CYCLES and bridge.cycles_dropped == 40 and bridge.pending


async def test_a_reply_follows_the_state_it_produced(tmp_path: Path) -> None:
    """A command's reply is written after a frame with its effect: a read after it sees it."""
    hub, feed, _ = make(tmp_path)
    pair = ApiPair(hub, wall=lambda: START)
    feed.publish()
    await pair.attach()
    rep = await pair.mirror.command("olga", {"command": "maintenance", "cluster_id": "c02", "on": True})
    assert (rep.status, rep.operator.maintenance) == (200, frozenset({"c02"}))
    assert pair.mirror.operator.maintenance == frozenset({"c02"})
    assert pair.mirror.audit.recent(1)[0]["action"]["command"] == "SetMaintenance"
    rep = await pair.mirror.command("olga", {"command": "maintenance", "cluster_id": "c99", "on": True})
    assert (rep.status, rep.detail) == (404, "cluster_id: unknown cluster 'c99'")
    await pair.mirror.refused("olga", {"path": "/api/control/mode", "body": 5}, "mode: wrong type")
    assert [(a["accepted"], a["reason"]) for a in pair.mirror.audit.recent(2)] == [
        (False, "mode: wrong type"),
        (False, "cluster_id: unknown cluster 'c99'"),
    ]
    await pair.close()


@pytest.mark.parametrize(
    ("payload", "status", "detail"),
    [
        ({"command": "set_mode", "mode": "idle"}, 200, ""),
        ({"command": "set_mode", "mode": "turbo"}, 400, "mode: must be one of auto, idle, conservative, got 'turbo'"),
        ({"command": "launch"}, 400, None),
        ({"command": "ack_alarm", "alarm": "nope@x"}, 404, "alarm: no active alarm 'nope@x'"),
        ({"command": "derate", "cluster_id": "c42", "max_power_pct": 50}, 404, None),
    ],
)
def test_execute_maps_refusals_to_http_statuses_and_audits_everything(
    tmp_path: Path, payload: dict[str, Any], status: int, detail: str | None
) -> None:
    hub, _, _ = make(tmp_path)
    got_status, got_detail, state = execute(hub, "olga", payload, START)
    assert got_status == status
    if detail is not None:
        assert got_detail == detail
    assert (state.mode == "idle") == (status == 200)
    assert state == hub.operator and (status != 200) == (hub.operator == OperatorState())
    (entry,) = hub.audit.recent(5)
    assert (entry["actor"], entry["via"], entry["accepted"]) == ("olga", "api", status == 200)


async def test_a_request_that_breaks_the_rules_closes_the_channel(tmp_path: Path) -> None:
    """The control process hangs up on an API process that sends what it may not (here: a frame)."""
    hub, _, _ = make(tmp_path)
    bridge = ApiBridge(hub, wall=lambda: START)
    a, b = socket.socketpair()
    ra, wa = await asyncio.open_unix_connection(sock=a)
    rb, wb = await asyncio.open_unix_connection(sock=b)
    serving = asyncio.create_task(bridge.serve(ra, wa))
    wb.write(pack(FRAME, pickle.dumps("anything")))
    await asyncio.wait_for(serving, 5)
    assert await asyncio.wait_for(rb.read(), 5) is not None  # the bridge closed its end
    wb.close()


def test_the_mirror_starts_empty_with_the_site_maintenance() -> None:
    site = load_site(DEMO_SITE)
    m = Mirror(site)
    assert m.latest is None and m.read("ledger") is None and m.alarms.active() == [] and m.audit.recent() == []
    assert m.operator == OperatorState(maintenance=site.maintenance)


def test_the_control_process_does_not_load_the_web_stack() -> None:
    """FastAPI, uvicorn and pydantic live in the API process only (memory, import time, GC work)."""
    import subprocess
    import sys

    code = (
        "import sys, agent.cli, agent.live.runtime; "
        "print(sorted({'fastapi', 'uvicorn', 'pydantic'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
