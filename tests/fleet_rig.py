"""Four sites publishing to one real mosquitto, and the fleet view reading them (tests of agent/fleet).

- hall-a, hall-b: the agent's own MQTT link (agent/mqtt/link.py) fed real cycles (tests.fakes.Cycles:
  the control policy on synthetic snapshots), with a savings ledger read-out (CNY, USD) and, at
  hall-a, a critical alarm. They publish a cycle every PERIOD_S until `silence()`.
- hall-c: the agent's MQTT link in its own process (`python -m agent.mqtt`), plus its retained
  state; `kill()` SIGKILLs it so the broker publishes its "offline" will.
- hall-d: retained garbage on its state topic and a foreign (v 2) savings payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiomqtt

from agent.economics.ledger import Summary
from agent.fleet.config import load_fleet
from agent.fleet.serve import Fleet
from agent.live.audit import AuditLog
from agent.live.hub import Hub
from agent.mqtt import MqttLink, start_mqtt, stop_mqtt
from agent.mqtt.topics import Topics, dumps, state_payload
from tests.conftest import Broker
from tests.fakes import DEMO_SITE, ROOT, Cycles, demo_site

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 7, 1, 14, 0, tzinfo=TZ)
PERIOD_S = 0.2
STALE_AFTER_S = 3.0
LOAD_W = {"hall-a": 2_500_000.0, "hall-b": 1_500_000.0, "hall-c": 900_000.0}
CAPACITY_WH = 12 * 418_000.0  # the demo site's clusters, at 60 % in the synthetic snapshots


def ledger_report(currency: str, energy: float, demand: float, degradation: float) -> dict[str, Any]:
    """Ledger.report's shape with a real to-date Summary (the part the savings topic reads)."""
    td = Summary("to_date", energy, demand, degradation, 0.0, 120.0, 130.0, 86400.0, 0.0, 96, 0)
    return {"currency": currency, "tariff": "t", "savings_to_date": td.net_savings, "to_date": td.as_dict()}


REPORTS = {"hall-a": ledger_report("CNY", 1000.0, 500.0, 100.0), "hall-b": ledger_report("USD", 80.0, 20.5, 10.25)}


@dataclass
class Rig:
    broker: Broker
    fleet: Fleet
    proc: subprocess.Popen[bytes]
    links: dict[str, MqttLink]
    hubs: dict[str, Hub]
    feeding: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def _feed(self, sid: str) -> None:
        cyc = Cycles(self.hubs[sid], T0)
        while True:
            cyc.next(load_w=LOAD_W[sid])
            await asyncio.sleep(PERIOD_S)

    def silence(self, sid: str) -> None:
        """The site stops publishing (a hung agent): its link stays connected, no will."""
        self.feeding.pop(sid).cancel()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


def _hub(sid: str, broker: Broker, tmp: Path) -> Hub:
    mqtt = {"host": broker.host, "port": broker.port, "client_id": f"ems-{sid}", "reconnect_min_s": 0.05}
    site = replace(demo_site({"mqtt": mqtt}), id=sid)
    hub = Hub(site, AuditLog(tmp / f"{sid}-audit.jsonl"), clock=time.monotonic)
    report = REPORTS[sid]
    hub.providers["ledger"] = lambda: report
    return hub


def fleet_file(tmp: Path, broker: Broker, extra: str = "") -> Path:
    f = tmp / "fleet.toml"
    f.write_text(
        f"[fleet]\nstale_after_s = {STALE_AFTER_S}\n"
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nreconnect_min_s = 0.05\nreconnect_max_s = 0.2\n'
        f'[http]\nport = 0\n{extra}\n'
        '[[site]]\nid = "hall-a"\nname = "Hall A"\nurl = "http://127.0.0.1:9/a/"\n'
        '[[site]]\nid = "hall-b"\nname = "Hall B"\nurl = "http://127.0.0.1:9/b/"\n'
        '[[site]]\nid = "hall-e"\nname = "Hall E (not built yet)"\n'
    )
    return f


@contextlib.asynccontextmanager
async def fleet_rig(broker: Broker, tmp: Path, http_extra: str = 'open_read = true') -> AsyncIterator[Rig]:
    site_c = tmp / "hall-c.toml"
    site_c.write_text(
        DEMO_SITE.read_text().replace('id = "demo"', 'id = "hall-c"', 1)
        + f'\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "ems-hall-c"\nkeepalive_s = 60\n'
    )
    hubs = {sid: _hub(sid, broker, tmp) for sid in ("hall-a", "hall-b")}
    hubs["hall-a"].alarms.raise_("pcs_fault", "pcs2", "tripped", T0)
    links: dict[str, MqttLink] = {}
    fleet = Fleet(load_fleet(fleet_file(tmp, broker, http_extra)))
    proc = subprocess.Popen([sys.executable, "-m", "agent.mqtt", "--site", str(site_c)], cwd=ROOT)
    rig = Rig(broker, fleet, proc, links, hubs)
    try:  # from here on, the finally stops whatever was started
        for sid, hub in hubs.items():
            link = start_mqtt(hub.site, hub)
            assert link is not None
            links[sid] = link
            rig.feeding[sid] = asyncio.create_task(rig._feed(sid))
        async with aiomqtt.Client(broker.host, broker.port, identifier="test-publisher") as pub:
            # hall-c's own process is connected (its will armed) before anything else goes on
            await pub.subscribe("ems/hall-c/status", qos=1)
            async with asyncio.timeout(20.0):
                async for m in pub.messages:
                    if isinstance(m.payload, bytes) and b'"online"' in m.payload:
                        break
            c_hub = Hub(replace(demo_site(), id="hall-c"), AuditLog(None), clock=time.monotonic)
            rec = Cycles(c_hub, T0).next(load_w=LOAD_W["hall-c"])
            await pub.publish(Topics("ems", "hall-c").state, dumps(state_payload(rec)), qos=1, retain=True)
            await pub.publish("ems/hall-d/state", b"\xff\x00 not json", qos=1, retain=True)
            await pub.publish("ems/hall-d/savings", b'{"v": 2, "currency": "CNY"}', qos=1, retain=True)
        await fleet.start()
        yield rig
    finally:
        for t in rig.feeding.values():
            t.cancel()
        await asyncio.gather(*rig.feeding.values(), return_exceptions=True)
        await fleet.stop()
        for link in links.values():
            await stop_mqtt(link)
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
