"""Authenticated commands: HMAC-SHA256 over a canonical payload, a timestamp and a nonce.

A signed command message is a JSON object:

    {"id": "any string", "actor": "ops-anna", "ts": 1790000000.25, "nonce": "8-64 chars",
     "command": {"command": "set_mode", "mode": "idle"}, "sig": "<hex HMAC-SHA256>"}

`sig` = HMAC-SHA256(secret, canonical(message without "sig")), where canonical = JSON with keys
sorted, no whitespace, ASCII only (Python `json.dumps(sort_keys=True, separators=(",", ":"))`;
JavaScript's JSON.stringify of a key-sorted object gives the same bytes). `ts` is Unix time in
seconds; a message more than `max_skew_s` away from the agent's clock is stale. Every nonce is
remembered for twice that window, so a captured message cannot be replayed. Signatures and the
secret never appear in errors or logs.

The wall clock can step (NTP), forwards and back. A nonce is forgotten by its message's `ts`, and
forgetting it raises a floor: a message with `ts` at or below the newest forgotten one is refused
as stale. Forgotten by the time it was seen instead, a clock stepped forwards dropped every nonce
and, stepped back again, let a message captured just before be replayed (the freshness check
passed again). A fresh command after a forward step is above the floor and accepted; after a back
step of more than twice the window, fresh commands are refused until the clock passes the floor
again (the safe direction: a replay cannot be told from them).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import math
from typing import Any

NONCE_MIN, NONCE_MAX = 8, 64
MAX_NONCES = 100_000


class AuthError(ValueError):
    """A command message failed authentication. `kind` is unauthenticated | stale | replayed | malformed."""

    def __init__(self, kind: str, problem: str) -> None:
        super().__init__(f"{kind}: {problem}")
        self.kind = kind


def canonical(msg: dict[str, Any]) -> bytes:
    body = {k: v for k, v in msg.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sign(secret: bytes, msg: dict[str, Any]) -> dict[str, Any]:
    """`msg` with its `sig` (for clients and tests)."""
    return {**msg, "sig": hmac.new(secret, canonical(msg), hashlib.sha256).hexdigest()}


class Verifier:
    def __init__(self, secret: bytes, max_skew_s: float, not_before: float = -math.inf) -> None:
        """`not_before`: refuse messages whose `ts` is earlier (Unix s). The agent passes its start
        time: the nonces an earlier process saw are gone, so an older message may be a replay."""
        self._secret = secret
        self.max_skew_s = max_skew_s
        self.not_before = not_before
        self._nonces: set[str] = set()
        self._by_ts: list[tuple[float, str]] = []  # heap of (message ts, nonce): the oldest first
        self.floor = -math.inf  # the newest ts whose nonce was forgotten: at or below it is refused

    def __repr__(self) -> str:  # never show the secret
        return f"Verifier(max_skew_s={self.max_skew_s})"

    def verify(self, msg: dict[str, Any], now_epoch: float) -> None:
        """Raise AuthError unless `msg` is signed, fresh and new. Records its nonce on success."""
        sig = msg.get("sig")
        if not isinstance(sig, str) or not sig:
            raise AuthError("unauthenticated", "no signature ('sig')")
        if not sig.isascii():  # hmac.compare_digest raises TypeError on non-ASCII str
            raise AuthError("unauthenticated", "signature does not match")
        try:
            body = canonical(msg)
        except (TypeError, ValueError, RecursionError):
            raise AuthError("malformed", "message cannot be canonicalised (non-finite number?)") from None
        want = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(want, sig.lower()):
            raise AuthError("unauthenticated", "signature does not match")
        ts = msg.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts):
            raise AuthError("malformed", f"'ts' must be Unix time in seconds, got {ts!r}")
        skew = float(ts) - now_epoch
        if abs(skew) > self.max_skew_s:
            raise AuthError("stale", f"timestamp is {skew:+.1f} s from the agent's clock (limit {self.max_skew_s:g} s)")
        if ts < self.not_before:
            raise AuthError("stale", "signed before the agent started (its replay memory is new); sign it again")
        nonce = msg.get("nonce")
        if not isinstance(nonce, str) or not NONCE_MIN <= len(nonce) <= NONCE_MAX:
            raise AuthError("malformed", f"'nonce' must be a string of {NONCE_MIN}-{NONCE_MAX} characters")
        self._expire(now_epoch)
        if ts <= self.floor:
            raise AuthError("stale", "older than the agent's replay memory (its clock stepped?); sign it again")
        if nonce in self._nonces:
            raise AuthError("replayed", "this nonce was already used")
        if len(self._nonces) >= MAX_NONCES:
            raise AuthError("stale", "too many commands in the replay window; try again shortly")
        self._nonces.add(nonce)
        heapq.heappush(self._by_ts, (float(ts), nonce))

    def _expire(self, now_epoch: float) -> None:
        keep = 2.0 * self.max_skew_s  # beyond this, the timestamp check refuses the message anyway
        while self._by_ts and self._by_ts[0][0] < now_epoch - keep:
            ts, nonce = heapq.heappop(self._by_ts)
            self._nonces.discard(nonce)
            self.floor = max(self.floor, ts)
