"""Half-open TCP (issue 15): the MQTT broker or the telemetry database vanishes without a FIN
(a frozen loopback proxy between the agent and the real mosquitto / VictoriaMetrics). The agent
must notice within a bounded time, reconnect when the peer is reachable again, and lose nothing:
telemetry is spooled and replayed exactly once, MQTT alarm events (QoS 1) are resent, and the
retained state is the newest cycle."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt

from agent.live.hub import Hub
from agent.mqtt import stop_mqtt
from tests.conftest import Broker, VictoriaMetrics
from tests.fakes import Cycles

from .freeze_proxy import FreezableProxy
from .test_mqtt_link import T0, mqtt_table, next_msg, started, wait_for
from .test_telemetry_influx import publish_each, seqs, start, start_time, tcfg, wait_until

KEEPALIVE_S = 1  # [mqtt] keepalive_s (default 10: noticed within about 2 x 10 s)
TIMEOUT_S = 1.0  # [telemetry] timeout_s (default 5 s)


async def test_a_broker_that_vanishes_without_fin_is_noticed_and_nothing_that_matters_is_lost(
    mosquitto: Broker, make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    with FreezableProxy(mosquitto.port) as proxy:
        table = mqtt_table(mosquitto, tmp_path, keepalive_s=KEEPALIVE_S)
        table["mqtt"]["port"] = proxy.port
        hub = make_hub(table)
        link = await started(hub)
        try:
            async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="test-watch") as sub:
                await sub.subscribe("ems/demo/alarm", qos=1)
                await sub.subscribe("ems/demo/state", qos=1)
                cyc = Cycles(hub, T0)
                cyc.next()
                await wait_for(lambda: link.status()["buffered"] == 0)
                proxy.freeze()
                frozen_at = time.monotonic()
                hub.alarms.raise_("grid_outage", "site", "grid lost", T0)
                while link.connected:  # cycles keep coming while the link has not noticed
                    cyc.next()
                    await asyncio.sleep(0.1)
                    assert time.monotonic() - frozen_at < 30, "the dead broker was never noticed"
                assert link.connects == 1
                proxy.thaw()
                await wait_for(lambda: link.connected and link.connects == 2, 30.0)
                cyc.next()
                # The alarm raised while the broker was unreachable arrives (QoS 1, resent), and the
                # state reaches the newest cycle.
                alarm: dict[str, Any] | None = None
                state: dict[str, Any] = {}
                async with asyncio.timeout(20):
                    async for m in sub.messages:
                        assert isinstance(m.payload, bytes)
                        if m.topic.value == "ems/demo/alarm":
                            alarm = json.loads(m.payload)
                        else:
                            state = json.loads(m.payload)
                        if alarm is not None and state.get("seq") == cyc.seq:
                            break
                assert alarm is not None and (alarm["id"], alarm["active"]) == ("grid_outage@site", True)
            async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="test-late") as late:
                await late.subscribe("ems/demo/state", qos=1)
                assert (await next_msg(late, "ems/demo/state"))["seq"] == cyc.seq  # the newest, retained
        finally:
            await stop_mqtt(link)


def test_a_database_that_vanishes_without_fin_is_noticed_spooled_and_replayed_once(
    victoria_metrics: VictoriaMetrics, make_hub: Callable[..., Hub], tmp_path: Path
) -> None:
    vm = victoria_metrics
    with FreezableProxy(int(vm.url.rsplit(":", 1)[1])) as proxy:
        hub = make_hub(tcfg(f"http://127.0.0.1:{proxy.port}", tmp_path, timeout_s=TIMEOUT_S))
        sink = start(hub, tmp_path)
        try:
            cyc = Cycles(hub, start_time())
            publish_each(cyc, sink, 10)
            assert sink.spool.empty and sink.sent_points > 0
            proxy.freeze()  # the pooled keep-alive connection is now half-open
            publish_each(cyc, sink, 10)  # each flush returns: it times out (timeout_s) and spools
            assert sink.spooled_points > 0
            assert any(a.code == "telemetry_down" for a in hub.alarms.active())
            proxy.thaw()
            publish_each(cyc, sink, 10)
            wait_until(lambda: sink.spool.empty, 30.0)
            publish_each(cyc, sink, 2)
        finally:
            sink.close()
    assert not any(a.code == "telemetry_down" for a in hub.alarms.active())
    values, _ = seqs(vm)
    assert values == [float(i) for i in range(1, 33)]  # every cycle once, in order
