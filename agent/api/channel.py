"""The pipe between the control process and the API process: what crosses it, and how.

Messages are length-prefixed: a 1-byte kind, a 4-byte big-endian length, the body.

- control -> API: `I` the Init (once), `F` a Frame (the state the read endpoints and the SSE
  stream serve), `R` a Reply to a request. Pickled: the control process is the trusted side,
  and pickling the immutable cycle record is cheaper for the loop than building the views.
- API -> control: `S` started (JSON), `Q` a request (JSON, never pickle: the API process faces
  the network, so nothing it sends may be able to run code in the control process).
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass
from typing import Any

from agent.live.hub import CycleRecord, CycleStats
from agent.model.alarms import Alarm
from agent.model.config import SiteConfig
from agent.model.operator import OperatorState

from .auth import TokenStore

HEADER = struct.Struct("!cI")
MAX_REQUEST_BYTES = 64 * 1024  # API -> control: a command is ~100 bytes
MAX_FRAME_BYTES = 256 * 1024 * 1024  # control -> API: a 128-cluster frame is ~0.5 MB

INIT, FRAME, REPLY, STARTED, REQUEST = b"I", b"F", b"R", b"S", b"Q"


class ChannelError(Exception):
    """The other side broke the framing or sent something it may not send."""


@dataclass(frozen=True, slots=True)
class Init:
    site: SiteConfig
    tokens: TokenStore | None
    open_read: bool
    log_level: str
    speed: float = 1.0  # the site clock's speed (agent.model.clock): cycle ages, override expiry


@dataclass(frozen=True, slots=True)
class Frame:
    """The control process's state as of one moment. Parts that rarely change are None when they
    did not change since the last frame written to this channel (the mirror keeps what it has)."""

    n: int  # frames written on this channel, 1, 2, ...
    rec: CycleRecord | None  # the latest cycle (None before the first)
    recs: list[CycleRecord]  # the cycles since the last frame, oldest first (bounded: see bridge)
    operator: OperatorState
    stats: CycleStats
    device_health: dict[str, dict[str, Any]]
    site: SiteConfig | None = None  # first frame, and after a reload
    alarms: tuple[list[Alarm], list[Alarm]] | None = None  # (active, history newest first)
    audit: list[dict[str, Any]] | None = None  # recent entries, newest first
    providers: dict[str, dict[str, Any]] | None = None  # every registered provider's read-out


@dataclass(frozen=True, slots=True)
class Reply:
    id: int
    status: int  # HTTP status: 200 accepted, 4xx refused (detail says why)
    detail: str
    operator: OperatorState


def pack(kind: bytes, body: bytes) -> bytes:
    return HEADER.pack(kind, len(body)) + body


async def read_msg(reader: asyncio.StreamReader, max_bytes: int) -> tuple[bytes, bytes] | None:
    """The next (kind, body), or None at a clean end of stream. Raises ChannelError."""
    try:
        head = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise ChannelError("stream ended inside a message header") from None
    kind, n = HEADER.unpack(head)
    if n > max_bytes:
        raise ChannelError(f"message of {n} bytes (kind {kind!r}) exceeds {max_bytes}")
    try:
        return kind, await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise ChannelError("stream ended inside a message body") from None


def encode_request(req: dict[str, Any]) -> bytes:
    # NaN and inf pass (as JSON's NaN/Infinity extensions): parse_command refuses them with a reason.
    return pack(REQUEST, json.dumps(req, separators=(",", ":")).encode())


def decode_request(body: bytes) -> tuple[int, str, str, dict[str, Any], str]:
    """(id, op, actor, payload, reason) of a request, checked field by field. Raises ChannelError.

    op "command": run `payload` as an operator command for `actor`; op "refused": audit that
    `actor` tried `payload` and the API refused it for `reason` (a malformed body)."""
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise ChannelError(f"request is not JSON: {e}") from None
    if not isinstance(req, dict):
        raise ChannelError("request is not an object")
    rid, op, actor = req.get("id"), req.get("op"), req.get("actor")
    payload, reason = req.get("payload"), req.get("reason", "")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise ChannelError("request id must be an integer")
    if op not in ("command", "refused"):
        raise ChannelError(f"unknown request op {op!r}")
    if not isinstance(actor, str) or not actor:
        raise ChannelError("request actor must be a non-empty string")
    if not isinstance(payload, dict) or not isinstance(reason, str):
        raise ChannelError("request payload must be an object and reason a string")
    return rid, op, actor, payload, reason
