"""Operator commands arriving over MQTT: authenticate, validate, apply through the Hub, answer.

Order of checks: JSON object -> signature -> timestamp -> nonce -> command fields
(agent.model.operator.parse_command) -> bounds and audit (Hub.submit). The first failure answers
`accepted: false` with its reason and changes nothing. Refusals before Hub.submit are audited
here (Hub.submit audits its own); unauthenticated ones within a per-minute budget, the rest as
one summary line a minute (agent/mqtt/refusals.py). No signature or secret is ever logged or audited.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from agent.live.audit import AuditUnavailable
from agent.live.hub import Hub
from agent.logs import kv
from agent.model.operator import CommandError, parse_command
from agent.mqtt.auth import AuthError, Verifier
from agent.mqtt.refusals import RefusalBudget

log = logging.getLogger("ems.mqtt")

MAX_COMMAND_BYTES = 4096
VIA = "mqtt"


def json_int(s: str) -> int | float:
    """JSON integers past any float (300+ digits) parse as float (inf), so every later finite-number
    check refuses them instead of raising OverflowError (math.isfinite(10**400) raises)."""
    return int(s) if len(s.lstrip("-")) <= 300 else float(s)


class CommandHandler:
    def __init__(
        self,
        hub: Hub,
        verifier: Verifier | None,
        wall: Callable[[], datetime],
    ) -> None:
        """`verifier` None: no secret configured, so every command is refused."""
        self.hub = hub
        self.verifier = verifier
        self.wall = wall  # aware datetime; its timestamp() checks the command's `ts`
        self.accepted = 0
        self.rejected = 0
        self.budget = RefusalBudget()

    def summarise(self, now: datetime | None = None) -> None:
        """Write the summary line of a minute of unauthenticated refusals once it is over (called
        per cycle by the link and before each refusal)."""
        now = now if now is not None else self.wall()
        counted = self.budget.ended(now.timestamp())
        if counted is None:
            return
        n = sum(counted.values())
        reason = f"{n} more unauthenticated messages refused within {self.budget.window_s:g} s (summarised)"
        self.hub.audit.record(now, f"{VIA}:unknown", VIA, {"command": None, "refused": counted}, False, reason)
        log.warning("commands refused (summary)", extra=kv(via=VIA, refused=n, kinds=counted))

    def handle(self, payload: bytes) -> dict[str, Any]:
        """One command message -> the acknowledgement to publish."""
        now = self.wall()
        msg: Any = None
        try:
            if len(payload) > MAX_COMMAND_BYTES:
                raise AuthError("malformed", f"message larger than {MAX_COMMAND_BYTES} bytes")
            try:
                msg = json.loads(payload, parse_int=json_int)
            except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
                raise AuthError("malformed", "not valid JSON") from None
            if not isinstance(msg, dict):
                raise AuthError("malformed", "message must be a JSON object")
            if self.verifier is None:
                raise AuthError("unauthenticated", "commands are disabled: [mqtt] secret_file is not set")
            self.verifier.verify(msg, now.timestamp())
        except AuthError as e:
            self.summarise(now)
            if self.budget.admit(now.timestamp(), e.kind):
                return self._refuse(msg, now, str(e), None)
            self.rejected += 1  # counted into the minute's summary line, not audited one by one
            return self._ack(msg, now, False, str(e), None)
        actor = msg.get("actor")
        actor = actor if isinstance(actor, str) and 0 < len(actor) <= 64 else "unknown"
        try:
            cmd = parse_command(msg.get("command"))
        except CommandError as e:
            return self._refuse(msg, now, str(e), e.field, actor)
        try:
            state = self.hub.submit(cmd, f"{VIA}:{actor}", VIA, now)
        except CommandError as e:  # out of bounds: Hub.submit audited it
            self.rejected += 1
            return self._ack(msg, now, False, str(e), e.field)
        except AuditUnavailable as e:  # not audited, so not applied (the hub raised the alarm)
            self.rejected += 1
            return self._ack(msg, now, False, f"{e}; the command was not applied", None)
        self.accepted += 1
        log.info("command accepted", extra=kv(via=VIA, actor=actor, command=type(cmd).__name__))
        ack = self._ack(msg, now, True, "applied", None)
        ack["operator"] = {
            "mode": state.mode,
            "override_w": state.override_w,
            "reserve_load_w": state.reserve_load_w,
            "reserve_minutes": state.reserve_minutes,
            "maintenance": sorted(state.maintenance),
        }
        ack["command"] = {"command": type(cmd).__name__, **asdict(cmd)}
        return ack

    def _refuse(
        self, msg: Any, now: datetime, reason: str, field: str | None, actor: str = "unknown"
    ) -> dict[str, Any]:
        self.rejected += 1
        name = None
        if isinstance(msg, dict) and isinstance(msg.get("command"), dict):
            c = msg["command"].get("command")
            name = c if isinstance(c, str) else None
        with contextlib.suppress(AuditUnavailable):  # refused either way; the alarm says why unaudited
            self.hub.audit.record(now, f"{VIA}:{actor}", VIA, {"command": name}, False, reason)
        log.warning("command refused", extra=kv(via=VIA, actor=actor, reason=reason))
        return self._ack(msg, now, False, reason, field)

    @staticmethod
    def _ack(msg: Any, now: datetime, accepted: bool, reason: str, field: str | None) -> dict[str, Any]:
        mid = msg.get("id") if isinstance(msg, dict) else None
        return {
            "v": 1,
            "id": mid if isinstance(mid, (str, int)) and not isinstance(mid, bool) else None,
            "accepted": accepted,
            "reason": reason,
            "field": field,
            "t": now.isoformat(),
        }
