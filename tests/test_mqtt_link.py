"""The MQTT link against a real mosquitto: schema of what arrives, the will, signed commands,
reconnect with a bounded buffer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt

from agent.economics.ledger import Summary
from agent.live.hub import Hub
from agent.mqtt import MqttLink, sign, start_mqtt, stop_mqtt
from tests.conftest import Broker
from tests.fakes import DEMO_SITE, ROOT, Cycles

SECRET = b"0123456789abcdef-test-secret"
TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 1, 14, 0, tzinfo=TZ)


def mqtt_table(broker: Broker, tmp: Path, **over: Any) -> dict[str, Any]:
    sf = tmp / "mqtt.secret"
    sf.write_bytes(SECRET + b"\n")
    cfg: dict[str, Any] = {
        "host": broker.host,
        "port": broker.port,
        "client_id": "ems-test",
        "secret_file": str(sf),
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
    }
    cfg.update(over)
    return {"mqtt": cfg}


async def next_msg(client: aiomqtt.Client, topic: str, timeout_s: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        async for m in client.messages:
            if m.topic.value == topic:
                assert isinstance(m.payload, bytes)
                out: dict[str, Any] = json.loads(m.payload)
                return out
    raise AssertionError("subscription ended")  # pragma: no cover


async def collect(
    client: aiomqtt.Client, topics: set[str], timeout_s: float = 5.0
) -> dict[str, dict[str, Any]]:
    got: dict[str, dict[str, Any]] = {}
    async with asyncio.timeout(timeout_s):
        async for m in client.messages:
            if m.topic.value in topics:
                assert isinstance(m.payload, bytes)
                got[m.topic.value] = json.loads(m.payload)
                if set(got) == topics:
                    return got
    raise AssertionError("subscription ended")  # pragma: no cover


async def wait_for(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.01)


def signed(command: dict[str, Any], ts: float | None = None, secret: bytes = SECRET, **extra: Any) -> bytes:
    msg = {
        "id": uuid.uuid4().hex[:8],
        "actor": "ops-anna",
        "ts": time.time() if ts is None else ts,
        "nonce": uuid.uuid4().hex,
        "command": command,
        **extra,
    }
    return json.dumps(sign(secret, msg)).encode()


async def started(hub: Hub) -> MqttLink:
    link = start_mqtt(hub.site, hub)
    assert link is not None
    await wait_for(lambda: link.connected)
    return link


async def test_state_plan_clusters_and_alarms_arrive_with_the_documented_schema(
    mosquitto: Broker, make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    hub = make_hub(mqtt_table(mosquitto, tmp_path))
    link = await started(hub)
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="test-sub") as sub:
        await sub.subscribe("ems/demo/#", qos=1)
        status = await next_msg(sub, "ems/demo/status")
        assert status["status"] == "online" and status["client_id"] == "ems-test"

        hub.alarms.raise_("device_comm", "c03", "no usable data (stale)", T0)
        cyc = Cycles(hub, T0)
        rec = cyc.next(load_w=2_500_000.0)
        topics = {"ems/demo/state", "ems/demo/plan", "ems/demo/alarm"} | {
            f"ems/demo/cluster/{c.id}" for c in hub.site.clusters
        } | {f"ems/demo/pcs/{p.id}" for p in hub.site.pcs}
        got = await collect(sub, topics)
        state = got["ems/demo/state"]
        assert state == {
            "v": 1,
            "seq": 1,
            "t": "2026-07-01T14:00:01+08:00",
            "grid_w": 2_500_000.0,
            "load_w": 2_500_000.0,
            "pv_w": 0.0,
            "battery_w": 0.0,
            "quality": {"grid": "good", "load": "good", "pv": "good"},
            "grid_up": True,
            "soc_pct": 60.0,
            "energy_wh": state["energy_wh"],
            "capacity_wh": 12 * 418_000.0,
            "setpoint_w": rec.plan.site_setpoint_w,
            "mode": rec.plan.mode,
            "cycle_ms": 12.5,
        }
        assert abs(state["energy_wh"] - 12 * 418_000.0 * 0.6) < 1e-6
        c3 = got["ems/demo/cluster/c03"]
        assert c3["id"] == "c03" and c3["pcs"] == "pcs1" and c3["status"] == "online"
        assert c3["soc_pct"] == 60.0 and c3["max_discharge_w"] == 200_000.0 and c3["voltage_v"] == 1331.0
        assert c3["setpoint_w"] == rec.plan.cluster_setpoints_w["c03"]
        assert c3["temp_min_c"] == 27.5 and c3["cycles"] == 120.0  # once dropped by MQTT
        assert got["ems/demo/pcs/pcs1"] == {
            "v": 1,
            "id": "pcs1",
            "clusters": ["c01", "c02", "c03"],
            "t": "2026-07-01T14:00:01+08:00",
            "status": "online",
            "power_w": 0.0,
            "setpoint_w": 0.0,
            "pcc_active": None,
            "pcc_grid_w": None,
            "quality": "good",
            "command_w": rec.plan.pcs_setpoints_w["pcs1"],
            "rated_w": hub.site.pcs[0].rated_w,
        }
        plan = got["ems/demo/plan"]
        assert plan["mode"] == rec.plan.mode and plan["decided_by"] == rec.plan.decided_by
        assert plan["bounds"][0] == {
            "source": "device_limits",
            "lo_w": -2_400_000.0,
            "hi_w": 2_400_000.0,
            "reason": rec.plan.bounds[0].reason,
        }
        alarm = got["ems/demo/alarm"]
        assert alarm["id"] == "device_comm@c03" and alarm["active"] is True and alarm["severity"] == "warning"
        assert alarm["message"] == "no usable data (stale)" and alarm["cleared_at"] is None
        assert alarm["title"] == {"en": "No usable data from the device", "zh": "设备无可用数据"}

        hub.alarms.clear("device_comm", "c03", T0 + timedelta(seconds=5))
        cyc.next()
        cleared = await next_msg(sub, "ems/demo/alarm")
        assert cleared["active"] is False and cleared["cleared_at"] == "2026-07-01T14:00:05+08:00"

        await stop_mqtt(link)  # a clean stop says offline itself (retained)
        assert (await next_msg(sub, "ems/demo/status"))["status"] == "offline"


async def test_alarm_summary_and_savings_are_retained_and_sent_on_change_only(
    mosquitto: Broker, make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    """The fleet view's inputs (issue 16): `alarm/active` on the first cycle and on change, `savings`
    when the ledger's report is replaced with other figures, both retained for a late subscriber."""
    hub = make_hub(mqtt_table(mosquitto, tmp_path))
    td = Summary("to_date", 1000.0, 500.0, 100.0, 0.0, 120.0, 130.0, 86400.0, 0.0, 96, 0)
    report: dict[str, Any] = {"currency": "CNY", "tariff": "shanghai", "to_date": td.as_dict()}
    hub.providers["ledger"] = lambda: report
    link = await started(hub)
    try:
        cyc = Cycles(hub, T0)
        for _ in range(3):  # the same report object: one savings message, one alarm summary
            cyc.next()
        hub.alarms.raise_("pcs_fault", "pcs2", "tripped", T0)
        cyc.next()
        report = {**report}  # recomputed, same figures: not sent again
        cyc.next()
        report = {**report, "to_date": {**td.as_dict(), "net_savings": 1500.5}}
        cyc.next()
        await wait_for(lambda: link.status()["buffered"] == 0)
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="test-late") as sub:
            await sub.subscribe("ems/demo/alarm/active", qos=1)
            await sub.subscribe("ems/demo/savings", qos=1)
            got = await collect(sub, {"ems/demo/alarm/active", "ems/demo/savings"})
        assert got["ems/demo/alarm/active"] == {
            "v": 1, "t": "2026-07-01T14:00:04+08:00", "active": 1, "worst": "critical", "codes": ["pcs_fault"]
        }  # fmt: skip
        assert got["ems/demo/savings"] == {
            "v": 1, "t": "2026-07-01T14:00:06+08:00", "currency": "CNY", "tariff": "shanghai",
            "net_savings": 1500.5, "energy_savings": 1000.0, "demand_savings": 500.0, "degradation_cost": 100.0,
            "outage_value": 0.0, "discharge_kwh": 120.0, "charge_kwh": 130.0, "counted_h": 24.0,
        }  # fmt: skip
        # 6 cycles x 18 + 2 alarm summaries (none, then pcs_fault) + 1 alarm event + 2 savings (not 6)
        assert link.sent == 6 * 18 + 2 + 1 + 2
    finally:
        await stop_mqtt(link)


async def test_will_fires_when_the_agent_process_is_killed(mosquitto: Broker, tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        DEMO_SITE.read_text()
        + f'\n[mqtt]\nhost = "127.0.0.1"\nport = {mosquitto.port}\nclient_id = "ems-kill"\nkeepalive_s = 60\n'
    )
    proc = subprocess.Popen([sys.executable, "-m", "agent.mqtt", "--site", str(site)], cwd=ROOT)
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="test-will") as sub:
            await sub.subscribe("ems/demo/status", qos=1)
            assert (await next_msg(sub, "ems/demo/status", 15.0))["status"] == "online"
            os.kill(proc.pid, signal.SIGKILL)
            t = time.monotonic()
            will = await next_msg(sub, "ems/demo/status", 10.0)
            assert will == {"v": 1, "status": "offline", "client_id": "ems-kill", "t": None}
            assert time.monotonic() - t < 5.0  # well before the 60 s keepalive would notice
        # Retained: a late subscriber sees the agent is offline.
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="test-late") as late:
            await late.subscribe("ems/demo/status", qos=1)
            assert (await next_msg(late, "ems/demo/status"))["status"] == "offline"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


async def test_signed_command_changes_operator_state_and_the_next_plan(
    mosquitto: Broker, make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    hub = make_hub(mqtt_table(mosquitto, tmp_path))
    # Without ramp support, an override is the whole decision (the synthetic grid meter does not
    # follow the battery, which the ramp controller would read as a load swing).
    hub.site = replace(hub.site, control=replace(hub.site.control, ramp_limit_w_per_s=0.0))
    link = await started(hub)
    cyc = Cycles(hub, T0)
    assert cyc.next().plan.mode == "auto"
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="test-ops") as ops:
            await ops.subscribe("ems/demo/cmd/ack", qos=1)
            msg = signed({"command": "override", "setpoint_w": 150_000.0, "duration_s": 600})
            await ops.publish("ems/demo/cmd", msg, qos=1)
            ack = await next_msg(ops, "ems/demo/cmd/ack")
            assert ack["id"] == json.loads(msg)["id"]
            assert ack["accepted"] is True and ack["reason"] == "applied"
            assert ack["operator"]["override_w"] == 150_000.0
            assert hub.operator.override_w == 150_000.0
            plan = cyc.next().plan  # the very next cycle obeys it
            assert (plan.mode, plan.decided_by, plan.site_setpoint_w) == ("manual", "override", 150_000.0)

            await ops.publish(
                "ems/demo/cmd", signed({"command": "maintenance", "cluster_id": "c05", "on": True})
            )
            assert (await next_msg(ops, "ems/demo/cmd/ack"))["accepted"] is True
            plan = cyc.next().plan
            assert hub.operator.maintenance == frozenset({"c05"}) and plan.cluster_setpoints_w["c05"] == 0.0

            await ops.publish("ems/demo/cmd", signed({"command": "set_mode", "mode": "idle"}))
            assert (await next_msg(ops, "ems/demo/cmd/ack"))["accepted"] is True
            await ops.publish("ems/demo/cmd", signed({"command": "clear_override"}))
            assert (await next_msg(ops, "ems/demo/cmd/ack"))["accepted"] is True
            plan = cyc.next().plan
            assert (plan.mode, plan.site_setpoint_w) == ("idle", 0.0)
    finally:
        await stop_mqtt(link)
    entries = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [(e["via"], e["actor"], e["accepted"]) for e in entries] == [("mqtt", "mqtt:ops-anna", True)] * 4


async def test_bad_commands_are_refused_with_a_reason_and_change_nothing(
    mosquitto: Broker, make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    hub = make_hub(mqtt_table(mosquitto, tmp_path, max_skew_s=30))
    link = await started(hub)
    try:
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="test-bad") as ops:
            await ops.subscribe("ems/demo/cmd/ack", qos=1)
            good = signed({"command": "set_mode", "mode": "conservative"})
            await ops.publish("ems/demo/cmd", good, qos=1)
            assert (await next_msg(ops, "ems/demo/cmd/ack"))["accepted"] is True
            before = hub.operator
            unsigned = json.loads(signed({"command": "set_mode", "mode": "idle"}))
            del unsigned["sig"]
            tampered = json.loads(signed({"command": "set_mode", "mode": "auto"}))
            tampered["command"]["mode"] = "idle"
            cases: list[tuple[bytes, str, str | None]] = [
                (json.dumps(unsigned).encode(), "unauthenticated: no signature ('sig')", None),
                (
                    signed({"command": "set_mode", "mode": "idle"}, secret=b"x" * 24),
                    "unauthenticated: signature",
                    None,
                ),
                (json.dumps(tampered).encode(), "unauthenticated: signature does not match", None),
                (good, "replayed: this nonce was already used", None),
                (
                    signed({"command": "set_mode", "mode": "idle"}, ts=time.time() - 120),
                    "stale: timestamp is -12",
                    None,
                ),
                (b"{not json", "malformed: not valid JSON", None),
                (b"[1, 2]", "malformed: message must be a JSON object", None),
                (
                    signed({"command": "set_mode", "mode": "turbo"}),
                    "mode: must be one of auto, idle, conservative",
                    "mode",
                ),
                (
                    signed({"command": "override", "setpoint_w": 9e9, "duration_s": 60}),
                    "setpoint_w: |9e+09| W exceeds",
                    "setpoint_w",
                ),
                (
                    signed({"command": "override", "setpoint_w": 1e5, "duration_s": 0}),
                    "duration_s: must be > 0",
                    "duration_s",
                ),
                (
                    signed({"command": "maintenance", "cluster_id": "c99", "on": True}),
                    "cluster_id: unknown cluster 'c99'",
                    "cluster_id",
                ),
                (
                    signed({"command": "set_reserve", "reserve_load_w": -1, "reserve_minutes": 10}),
                    "reserve_load_w: must be between",
                    "reserve_load_w",
                ),
                (signed({"command": "reboot"}), "command: must be one of", "command"),
            ]
            for payload, reason, field in cases:
                await ops.publish("ems/demo/cmd", payload, qos=1)
                ack = await next_msg(ops, "ems/demo/cmd/ack")
                assert ack["accepted"] is False, reason
                assert ack["reason"].startswith(reason), (ack["reason"], reason)
                assert ack["field"] == field
                assert hub.operator == before
    finally:
        await stop_mqtt(link)
    assert link.commands.accepted == 1 and link.commands.rejected == len(cases)
    audit = (tmp_path / "audit.jsonl").read_text()
    assert len(audit.splitlines()) == 1 + len(cases)
    assert '"sig"' not in audit and SECRET.decode() not in audit


async def test_reconnects_and_buffers_with_a_bounded_drop_oldest_queue(
    mosquitto: Broker, make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    hub = make_hub(mqtt_table(mosquitto, tmp_path, buffer_messages=20))
    link = await started(hub)
    try:
        mosquitto.stop()
        await wait_for(lambda: not link.connected)
        cyc = Cycles(hub, T0)
        for _ in range(5):  # 5 cycles x 18 messages (state, 12 clusters, 4 PCS, plan) into a buffer of 20
            cyc.next()
        # + the first cycle's alarm/active summary, in the small priority queue with acks and alarms
        assert link.status()["buffered"] == 20 + 1 and link.dropped == 70
        mosquitto.start()
        await wait_for(lambda: link.connected and link.status()["buffered"] == 0, 10.0)
        assert link.connects == 2
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="test-late") as sub:
            await sub.subscribe("ems/demo/state", qos=1)
            assert (await next_msg(sub, "ems/demo/state"))["seq"] == 5  # the newest survived (retained)
    finally:
        await stop_mqtt(link)
