"""Inputs that were accepted and should not be (issue 15, item 6).

Before: keys in [health] and [ledger] were accepted and ignored; a PCS given a BMS profile (any
device given another kind's register map) loaded; a site id with `#`, `+` or `/` (then MQTT loops
on "connection lost") or of 50 MB was taken; every unauthenticated MQTT message was an audit line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import aiomqtt
import pytest

from agent.live.hub import Hub
from agent.model.config import load_site
from agent.mqtt import stop_mqtt
from agent.mqtt.auth import Verifier
from agent.mqtt.commands import CommandHandler
from agent.mqtt.refusals import BURST
from common.tomlcheck import ConfigError
from tests.conftest import Broker
from tests.test_config import MINIMAL
from tests.test_mqtt_hostile import Wall
from tests.test_mqtt_link import SECRET, mqtt_table, signed, started, wait_for


def _site(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("table", ["health", "ledger"])
def test_a_key_in_health_or_ledger_is_refused_naming_it(tmp_path: Path, table: str) -> None:
    p = _site(tmp_path, MINIMAL + f"\n[{table}]\nretention_days = 30\n")
    with pytest.raises(ConfigError) as e:
        load_site(p)
    assert str(e.value) == f"{p} [{table}]: unknown key(s) 'retention_days'"
    load_site(_site(tmp_path, MINIMAL + f"\n[{table}]\n"))  # the (empty) table itself is still allowed


KIND_SWAPS = [  # (device table, its profile in MINIMAL, another kind's profile, that kind)
    ("pcs", "pcs_sunspec_70x", "bms_sunspec_802", "cluster"),
    ("pcs", "pcs_sunspec_70x", "meter_sunspec_203", "meter"),
    ("cluster", "bms_sunspec_802", "pcs_sunspec_70x", "pcs"),
    ("cluster", "bms_sunspec_802", "meter_sunspec_203", "meter"),
    ("meter", "meter_sunspec_203", "bms_sunspec_802", "cluster"),
    ("meter", "meter_sunspec_203", "pcs_sunspec_70x", "pcs"),
]


@pytest.mark.parametrize(("table", "mine", "other", "kind"), KIND_SWAPS)
def test_a_device_given_another_kinds_profile_is_refused(
    tmp_path: Path, table: str, mine: str, other: str, kind: str
) -> None:
    p = _site(tmp_path, MINIMAL.replace(f'profile = "{mine}"', f'profile = "{other}"'))
    with pytest.raises(ConfigError) as e:
        load_site(p)
    assert str(e.value) == (
        f"{p} [[{table}]] #1: key 'profile' '{other}' is a {kind} profile; a [[{table}]] needs a {table} profile"
    )


RULE = "must be 1-64 characters from A-Z a-z 0-9 _ . - starting with a letter or digit"


@pytest.mark.parametrize("bad", ["dc#1", "dc+1", "dc/east", "../x", "-x", "dc east", "é", "x" * 65])
def test_a_site_id_outside_the_safe_alphabet_or_length_is_refused(tmp_path: Path, bad: str) -> None:
    p = _site(tmp_path, MINIMAL.replace('id = "t"', f"id = {json.dumps(bad)}"))
    with pytest.raises(ConfigError) as e:
        load_site(p)
    assert str(e.value) == f"{p} [site]: key 'id' {RULE}, got {bad!r}"


def test_a_huge_id_is_refused_without_echoing_it(tmp_path: Path) -> None:
    big = "x" * 200_000
    p = _site(tmp_path, MINIMAL.replace('id = "c1"', f'id = "{big}"'))
    with pytest.raises(ConfigError) as e:
        load_site(p)
    assert str(e.value) == f"{p} [[cluster]] #1: key 'id' {RULE}, got {big[:60]!r}... (200000 characters)"


@pytest.mark.parametrize("good", ["dc-east-1", "demo", "Site_2.b", "x" * 64])
def test_a_site_id_in_the_safe_alphabet_is_accepted(tmp_path: Path, good: str) -> None:
    assert load_site(_site(tmp_path, MINIMAL.replace('id = "t"', f'id = "{good}"'))).id == good


def test_unauthenticated_garbage_is_audited_within_a_budget_then_summarised(
    make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    hub = make_hub()
    wall = Wall()
    h = CommandHandler(hub, Verifier(SECRET, 30.0), wall)
    audit = tmp_path / "audit.jsonl"
    t0 = wall.t
    for i in range(20_000):  # 20,000 messages over 40 s: the flood
        wall.t = t0 + timedelta(milliseconds=2 * i)
        ack = h.handle(b"\xff garbage" if i % 2 else b'{"no": "signature"}')
        assert ack["accepted"] is False
    lines = audit.read_text().splitlines()
    assert len(lines) == BURST  # the first minute's budget, one by one
    assert h.rejected == 20_000
    # a signed, valid command in the same minute is audited as always
    wall.t = t0 + timedelta(seconds=50)
    ok = h.handle(signed({"command": "set_mode", "mode": "auto"}, ts=wall.t.timestamp()))
    assert ok["accepted"] is True
    assert len(audit.read_text().splitlines()) == BURST + 1
    wall.t = t0 + timedelta(seconds=61)  # the minute is over: the next cycle writes one summary line
    h.summarise()
    entries = [json.loads(x) for x in audit.read_text().splitlines()]
    assert len(entries) == BURST + 2
    summary = entries[-1]
    counted = 20_000 - BURST
    half = counted // 2
    assert summary["action"] == {"command": None, "refused": {"malformed": half, "unauthenticated": half}}
    assert summary["reason"] == f"{counted} more unauthenticated messages refused within 60 s (summarised)"
    assert (summary["accepted"], summary["actor"], summary["via"]) == (False, "mqtt:unknown", "mqtt")
    h.summarise()  # nothing counted since: no line
    assert len(audit.read_text().splitlines()) == BURST + 2
    h.handle(b"more garbage")  # a new minute has its own budget
    assert len(audit.read_text().splitlines()) == BURST + 3


async def test_a_garbage_flood_through_mosquitto_leaves_a_bounded_audit_log(
    mosquitto: Broker, make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    hub = make_hub(mqtt_table(mosquitto, tmp_path))
    link = await started(hub)
    n = 2_000
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="flood") as c:
            for i in range(n):
                await c.publish("ems/demo/cmd", b"garbage %d" % i, qos=0)
            await c.publish("ems/demo/cmd", signed({"command": "set_mode", "mode": "idle"}, ts=time.time()), qos=1)
            await wait_for(lambda: link.commands.accepted == 1, 60.0)
        await wait_for(lambda: link.commands.rejected == n, 60.0)  # every one handled (qos 0 keeps order)
        lines = (tmp_path / "audit.jsonl").read_text().splitlines()
        # one minute's budget and the accepted command; two budgets and a summary if the run crossed
        # the window's end on a busy machine: bounded either way, where it was one line per message
        assert BURST + 1 <= len(lines) <= 2 * BURST + 2
        assert link.connected and link.connects == 1
    finally:
        await stop_mqtt(link)
