"""Hostile input on the MQTT side: the signed command channel and the (unauthenticated) rack-load
topic, first through the handlers directly (hypothesis, fast), then through a real mosquitto.

Properties: a handler never raises (one message must never end the MQTT session); only a message
signed with the secret, fresh, with a new nonce and a valid command changes operator state; every
other one is refused with a reason and audited; a replay is refused; neither the secret nor any
signature appears in a log line, an audit line or an ack.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.live.hub import Hub
from agent.model.operator import OperatorState
from agent.mqtt import sign, stop_mqtt
from agent.mqtt.auth import Verifier
from agent.mqtt.commands import MAX_COMMAND_BYTES, CommandHandler
from agent.mqtt.rackload import RackLoad
from agent.mqtt.topics import dumps
from tests.conftest import Broker

from .test_mqtt_link import SECRET, mqtt_table, next_msg, started, wait_for

TZ = ZoneInfo("Asia/Shanghai")
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def message(command: Any, ts: Any, **over: Any) -> dict[str, Any]:
    msg = {"id": uuid.uuid4().hex[:8], "actor": "ops-anna", "ts": ts, "nonce": uuid.uuid4().hex, "command": command}
    msg.update(over)
    return msg


class Wall:
    def __init__(self) -> None:
        self.t = datetime(2026, 7, 1, 14, 0, tzinfo=TZ)

    def __call__(self) -> datetime:
        return self.t


def handler(make_hub: Callable[..., Hub]) -> tuple[CommandHandler, Hub, Wall]:
    hub = make_hub()
    wall = Wall()
    return CommandHandler(hub, Verifier(SECRET, 30.0), wall), hub, wall


def secret_free(*texts: str, sigs: list[str]) -> None:
    for text in texts:
        assert SECRET.decode() not in text
        for s in sigs:
            assert s not in text, "a signature leaked"


def check_ack(ack: dict[str, Any]) -> None:
    dumps(ack)  # publishable: JSON without NaN
    assert set(ack) >= {"v", "id", "accepted", "reason", "field", "t"}
    assert isinstance(ack["accepted"], bool) and isinstance(ack["reason"], str) and ack["reason"]


# --- handlers, no broker ------------------------------------------------------------------------
@SETTINGS
@given(payload=st.binary(max_size=MAX_COMMAND_BYTES + 64))
def test_random_bytes_are_refused_and_never_raise(make_hub: Callable[..., Hub], payload: bytes) -> None:
    h, hub, _ = handler(make_hub)
    ack = h.handle(payload)
    check_ack(ack)
    assert ack["accepted"] is False and hub.operator == OperatorState(maintenance=hub.site.maintenance)


@SETTINGS
@given(
    field=st.sampled_from(["id", "actor", "ts", "nonce", "command", "sig", "extra"]),
    value=json_values,
    resign=st.booleans(),
)
def test_any_field_tampered_after_signing_is_refused(
    make_hub: Callable[..., Hub], field: str, value: Any, resign: bool
) -> None:
    """Change one field of a validly signed message. Without the secret (resign=False) it is
    never accepted; re-signed with the secret it is accepted only if the message is still valid."""
    h, hub, wall = handler(make_hub)
    msg = sign(SECRET, message({"command": "set_mode", "mode": "idle"}, wall().timestamp()))
    msg[field] = value
    try:  # a value JSON cannot carry (NaN, inf) cannot be signed or sent either
        if resign:
            msg = sign(SECRET, {k: v for k, v in msg.items() if k != "sig"})
        payload = json.dumps(msg).encode()
    except (TypeError, ValueError):
        return
    ack = h.handle(payload)
    check_ack(ack)
    if not resign:
        assert ack["accepted"] is False, (field, value)
    assert hub.operator.mode == ("idle" if ack["accepted"] else "auto")


@SETTINGS
@given(command=json_values)
def test_any_signed_command_body_never_raises(make_hub: Callable[..., Hub], command: Any) -> None:
    """Validly signed (an operator's client gone wrong): any command value is validated, never a crash."""
    h, hub, wall = handler(make_hub)
    try:
        payload = json.dumps(sign(SECRET, message(command, wall().timestamp()))).encode()
    except ValueError:
        return
    ack = h.handle(payload)
    check_ack(ack)
    if not ack["accepted"]:
        assert hub.operator == OperatorState(maintenance=hub.site.maintenance)


def hostile_payloads(wall: Wall) -> dict[str, bytes]:
    now = wall().timestamp()
    ok = {"command": "set_mode", "mode": "idle"}

    def signed(msg: dict[str, Any]) -> bytes:
        return json.dumps(sign(SECRET, msg)).encode()

    deep = b'{"command": ' + b"[" * 1500 + b"]" * 1500 + b"}"
    s = sign(SECRET, message(ok, now))
    return {
        "deep nesting (unsigned)": deep,
        "deep nesting in a field": signed(message({"command": "set_mode", "mode": [[[[[[[[[[]]]]]]]]]] * 40}, now)),
        "huge int in a signed command": signed(
            message({"command": "override", "setpoint_w": 10**400, "duration_s": 5}, now)
        ),
        "huge int ts (signed)": signed(message(ok, 10**400)),
        "non-ASCII signature": json.dumps({**s, "sig": "é" * 64}).encode(),
        "NaN ts": json.dumps(sign(SECRET, message(ok, now)) | {"ts": math.nan}).encode(),
        "signed with NaN": json.dumps({**message(ok, now), "ts": math.nan, "sig": "00" * 32}).encode(),
        "ts as string": signed(message(ok, str(now))),
        "stale ts": signed(message(ok, now - 31)),
        "future ts": signed(message(ok, now + 31)),
        "short nonce": signed(message(ok, now, nonce="abc")),
        "long nonce": signed(message(ok, now, nonce="n" * 65)),
        "wrong secret": json.dumps(sign(b"not-the-secret-at-all-000", message(ok, now))).encode(),
        "no signature": json.dumps(message(ok, now)).encode(),
        "empty signature": json.dumps({**message(ok, now), "sig": ""}).encode(),
        "oversized": signed(message(ok, now, pad="x" * MAX_COMMAND_BYTES)),
        "invalid utf-8": b'{"command": "\xff\xfe"}',
        "json array": b"[1, 2, 3]",
        "json null": b"null",
        "bad command, signed": signed(message({"command": "self_destruct"}, now)),
        "over rating, signed": signed(message({"command": "override", "setpoint_w": 9e9, "duration_s": 5}, now)),
        "unknown cluster, signed": signed(message({"command": "maintenance", "cluster_id": "c99", "on": True}, now)),
    }


def test_hostile_commands_are_refused_with_a_reason_and_leak_nothing(
    make_hub: Callable[..., Hub], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h, hub, wall = handler(make_hub)
    payloads = hostile_payloads(wall)
    acks = {}
    for name, p in payloads.items():
        acks[name] = h.handle(p)
        check_ack(acks[name])
        assert acks[name]["accepted"] is False, name
    assert hub.operator == OperatorState(maintenance=hub.site.maintenance)
    reasons = {k: a["reason"].split(":")[0] for k, a in acks.items()}
    assert reasons["deep nesting (unsigned)"] == "malformed"
    assert reasons["non-ASCII signature"] == "unauthenticated"
    # 300+ digit integers parse as inf, which cannot be canonicalised: malformed, no OverflowError
    assert reasons["huge int ts (signed)"] == reasons["huge int in a signed command"] == "malformed"
    assert reasons["deep nesting in a field"] == "mode"
    assert reasons["stale ts"] == reasons["future ts"] == "stale"
    assert reasons["wrong secret"] == reasons["no signature"] == reasons["empty signature"] == "unauthenticated"
    assert reasons["oversized"] == reasons["json array"] == reasons["json null"] == "malformed"
    assert reasons["over rating, signed"] == "setpoint_w" and reasons["unknown cluster, signed"] == "cluster_id"
    # replay: the first is applied, the same bytes again are refused
    good = json.dumps(sign(SECRET, message({"command": "set_mode", "mode": "conservative"}, wall().timestamp())))
    assert h.handle(good.encode())["accepted"] is True and hub.operator.mode == "conservative"
    hub.operator = OperatorState()
    for _ in range(3):
        again = h.handle(good.encode())
        assert again["accepted"] is False and again["reason"].startswith("replayed")
    assert hub.operator.mode == "auto"
    audit = (tmp_path / "audit.jsonl").read_text()
    assert audit.count('"accepted":true') == 1 and audit.count('"accepted":false') == len(payloads) + 3
    sigs = [m["sig"] for m in map(_loads, payloads.values()) if isinstance(m, dict) and len(str(m.get("sig"))) >= 16]
    secret_free(caplog.text, audit, json.dumps(acks), sigs=[*sigs, json.loads(good)["sig"]])


def _loads(p: bytes) -> Any:
    try:
        return json.loads(p)
    except (ValueError, RecursionError):
        return None


@SETTINGS
@given(payload=st.one_of(st.binary(max_size=256), json_values.map(lambda v: json.dumps(v).encode())))
def test_rack_load_any_payload_never_raises_and_never_counts(payload: bytes) -> None:
    rack = RackLoad("dc/rack/+/power", 5.0)
    ok = rack.on_message("dc/rack/r1/power", payload, 10.0)
    r = rack.reading(10.0)
    if ok:
        assert math.isfinite(r.value) and r.value >= 0
    else:
        assert rack.bad_messages == 1 and not r.ok


def test_rack_load_hostile_payloads_are_counted_not_raised() -> None:
    rack = RackLoad("dc/rack/+/power", 5.0)
    for p in (b"1" * 400, b'{"power_w": 1' + b"0" * 400 + b"}", b"[" * 5000, b"-5", b"NaN", b"Infinity", b"1e400",
              b'{"w": "12"}', b"\xff", b"true"):
        assert rack.on_message("dc/rack/r1/power", p, 1.0) is False, p
    assert rack.bad_messages == 10
    assert rack.on_message("dc/rack/r1/power", b'{"power_w": 4500.5}', 1.0)
    assert rack.reading(1.0).value == 4500.5


# --- through a real broker ----------------------------------------------------------------------
async def test_hostile_traffic_through_mosquitto_never_ends_the_session(
    mosquitto: Broker, make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    hub = make_hub(mqtt_table(mosquitto, tmp_path, rack_load_topic="dc/rack/+/power"))
    link = await started(hub)
    try:
        wall = Wall()

        def stamped_now(name: str) -> bytes:
            # Stamped as it is sent: "future ts" is 31 s ahead of a clock that keeps running, so a
            # stamp taken once before the loop comes within the 30 s window on a slow machine.
            wall.t = datetime.now(TZ)
            return hostile_payloads(wall)[name]

        names = list(hostile_payloads(wall))
        payloads = [*[lambda n=n: stamped_now(n) for n in names], lambda: b"\x00" * 100000, lambda: b"[" * 100000]
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="hostile") as ops:
            await ops.subscribe("ems/demo/cmd/ack", qos=1)
            for make in payloads:
                p = make()
                await ops.publish("ems/demo/cmd", p, qos=1)
                await ops.publish("dc/rack/r1/power", p, qos=0)
                ack = await next_msg(ops, "ems/demo/cmd/ack")
                assert ack["accepted"] is False
            # the same session still takes a good command
            good = json.dumps(sign(SECRET, message({"command": "set_mode", "mode": "idle"}, time.time())))
            await ops.publish("ems/demo/cmd", good, qos=1)
            ack = await next_msg(ops, "ems/demo/cmd/ack")
            assert ack["accepted"] is True and hub.operator.mode == "idle"
            await ops.publish("ems/demo/cmd", good, qos=1)  # replayed through the broker
            ack = await next_msg(ops, "ems/demo/cmd/ack")
            assert ack["accepted"] is False and ack["reason"].startswith("replayed")
            await ops.publish("dc/rack/r1/power", b"250000", qos=1)
            await wait_for(lambda: link.rack is not None and link.rack.reading(link.clock()).ok)
        st_ = link.status()
        assert link.connected and link.connects == 1  # never dropped
        assert st_["unhandled_messages"] == 0
        assert st_["commands_rejected"] == len(payloads) + 1 and st_["commands_accepted"] == 1
        assert st_["rack_bad_messages"] == len(payloads)
    finally:
        await stop_mqtt(link)
    await asyncio.sleep(0)
