"""The fleet view against a real mosquitto: four sites publishing (two through the agent's own MQTT
link, one agent process SIGKILLed so its will says offline, one sending garbage), GET /api/fleet
with every site and the sums, a site going stale, and the API's authentication."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from agent.fleet.config import load_fleet
from agent.fleet.serve import Fleet
from agent.live.audit import AuditLog
from agent.live.hub import Hub
from agent.mqtt import start_mqtt, stop_mqtt
from tests.agent_harness import agent_on_simulators, sim_site
from tests.conftest import Broker
from tests.fakes import Cycles, demo_site
from tests.fleet_rig import CAPACITY_WH, LOAD_W, PERIOD_S, T0, fleet_file, fleet_rig
from tests.test_api import VIEWER, write_tokens

pytestmark = pytest.mark.services


def get(url: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            return r.status, json.loads(body) if r.headers.get_content_type() == "application/json" else body
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


async def until(url: str, cond: Callable[[dict[str, Any]], bool], timeout_s: float = 20.0) -> dict[str, Any]:
    """GET /api/fleet until `cond` holds on its body (the last body in the failure)."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, body = await asyncio.to_thread(get, url + "/api/fleet")
        assert status == 200, body
        if cond(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"fleet never reached the state; last: {json.dumps(body)[:3000]}")


def statuses(body: dict[str, Any]) -> dict[str, str]:
    return {v["id"]: v["status"] for v in body["sites"]}


async def test_fleet_sums_online_sites_and_names_offline_stale_and_broken_ones(
    mosquitto: Broker, tmp_path: Path
) -> None:
    async with fleet_rig(mosquitto, tmp_path) as rig:
        url = rig.fleet.url
        rig.kill()  # hall-c's agent dies: the broker publishes its will
        want = {"hall-a": "online", "hall-b": "online", "hall-e": "missing", "hall-c": "offline", "hall-d": "degraded"}
        # every retained message read: both sums' currencies, and both of hall-d's broken topics (its
        # state alone makes it degraded; waiting on the status alone lost the race with its savings
        # message on a busy machine)
        body = await until(
            url,
            lambda b: (
                statuses(b) == want
                and b["sum"]["savings_to_date"].keys() == {"CNY", "USD"}
                and len(next(v for v in b["sites"] if v["id"] == "hall-d")["errors"]) == 2
            ),
        )
        assert [v["id"] for v in body["sites"]] == ["hall-a", "hall-b", "hall-e", "hall-c", "hall-d"]
        by = {v["id"]: v for v in body["sites"]}
        a = by["hall-a"]
        assert (a["name"], a["url"], a["in_sum"]) == ("Hall A", "http://127.0.0.1:9/a/", True)
        assert (a["grid_w"], a["load_w"], a["battery_w"], a["pv_w"]) == (2_500_000.0, 2_500_000.0, 0.0, 0.0)
        assert a["capacity_wh"] == CAPACITY_WH and a["soc_pct"] == pytest.approx(60.0, abs=1e-9)
        assert (a["alarms_active"], a["alarms_worst"], a["alarm_codes"]) == (1, "critical", ["pcs_fault"])
        assert a["savings"] == {
            "currency": "CNY", "tariff": "t", "net_savings": 1400.0, "energy_savings": 1000.0,
            "demand_savings": 500.0, "degradation_cost": 100.0, "discharge_kwh": 120.0, "charge_kwh": 130.0,
        }  # fmt: skip
        assert a["errors"] == [] and 0.0 <= a["age_s"] < 3.0
        b = by["hall-b"]
        assert (b["grid_w"], b["alarms_active"], b["alarms_worst"]) == (1_500_000.0, 0, None)
        assert b["savings"]["currency"] == "USD" and b["savings"]["net_savings"] == 90.25
        c = by["hall-c"]  # offline: its last state shown, not summed
        assert (c["grid_w"], c["in_sum"], c["name"], c["url"]) == (900_000.0, False, "hall-c", None)
        d = by["hall-d"]
        assert d["errors"] == [  # json.loads guessed UTF-16 from the NUL byte
            "savings: v: schema version 2, this fleet reads 1",
            "state: not JSON ('utf-16-le' codec can't decode byte 0x6e in position 10: truncated data)",
        ]
        assert d["grid_w"] is None and not d["in_sum"]
        assert by["hall-e"]["age_s"] is None and by["hall-e"]["name"] == "Hall E (not built yet)"
        s = body["sum"]
        assert (s["grid_w"], s["load_w"], s["battery_w"], s["pv_w"]) == (4_000_000.0, 4_000_000.0, 0.0, 0.0)
        assert s["capacity_wh"] == 2 * CAPACITY_WH and s["soc_pct"] == pytest.approx(60.0, abs=1e-9)
        assert s["savings_to_date"] == {"CNY": 1400.0, "USD": 90.25}  # never CNY + USD
        assert (s["alarms_active"], s["alarms_worst"], s["sites"], s["in_sum"]) == (1, "critical", 5, 2)
        assert body["broker"]["connected"] is True

        # hall-b's agent hangs (connected, silent): stale after stale_after_s, out of the power sums,
        # its savings to date still counted
        rig.silence("hall-b")
        body = await until(url, lambda b: statuses(b)["hall-b"] == "stale")
        assert statuses(body)["hall-a"] == "online"
        s = body["sum"]
        assert (s["grid_w"], s["capacity_wh"], s["in_sum"]) == (2_500_000.0, CAPACITY_WH, 1)
        assert s["savings_to_date"] == {"CNY": 1400.0, "USD": 90.25}
        assert by["hall-a"]["errors"] == []


async def test_fleet_api_needs_a_viewer_token_and_serves_the_page(mosquitto: Broker, tmp_path: Path) -> None:
    write_tokens(tmp_path / "tokens.toml")
    fleet = Fleet(load_fleet(fleet_file(tmp_path, mosquitto, 'tokens_file = "tokens.toml"')))
    await fleet.start()
    try:
        url = fleet.url
        assert url.startswith("http://127.0.0.1:")
        assert (await asyncio.to_thread(get, url + "/api/fleet"))[0] == 401
        status, body = await asyncio.to_thread(get, url + "/api/fleet", "not-a-token")
        assert (status, body) == (401, {"detail": "unknown token"})
        status, body = await asyncio.to_thread(get, url + "/api/fleet", VIEWER)
        assert status == 200
        assert [(v["id"], v["status"]) for v in body["sites"]] == [
            ("hall-a", "missing"), ("hall-b", "missing"), ("hall-e", "missing")
        ]  # fmt: skip
        assert body["sum"]["grid_w"] is None and body["sum"]["savings_to_date"] == {}
        status, page = await asyncio.to_thread(get, url + "/")
        assert status == 200 and b'<script type="module" src="fleet.js">' in page
        status, health = await asyncio.to_thread(get, url + "/healthz")
        assert (status, health) == (200, {"status": "ok"})
    finally:
        await fleet.stop()


async def test_fleet_rides_out_a_broker_restart(mosquitto: Broker, tmp_path: Path) -> None:
    """Broker down: /healthz says so and the site leaves the sums (stale by itself after
    stale_after_s, or offline at once: mosquitto publishes its clients' wills as it shuts down);
    broker back: the fleet reconnects and the agent's next cycles bring the site back online."""
    mqtt = {"host": mosquitto.host, "port": mosquitto.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2}
    hub = Hub(replace(demo_site({"mqtt": mqtt}), id="hall-a"), AuditLog(tmp_path / "audit.jsonl"), clock=time.monotonic)
    link = start_mqtt(hub.site, hub)
    assert link is not None
    fleet = Fleet(load_fleet(fleet_file(tmp_path, mosquitto, "open_read = true")))
    await fleet.start()
    cyc = Cycles(hub, T0)

    async def feed() -> None:
        while True:
            cyc.next(load_w=LOAD_W["hall-a"])
            await asyncio.sleep(PERIOD_S)

    feeding = asyncio.create_task(feed())
    try:
        url = fleet.url
        await until(url, lambda b: statuses(b)["hall-a"] == "online")
        mosquitto.stop()
        await until(url, lambda b: b["broker"]["connected"] is False)
        assert await asyncio.to_thread(get, url + "/healthz") == (503, {"status": "broker_down"})
        body = await until(url, lambda b: statuses(b)["hall-a"] in ("stale", "offline"))
        assert body["sum"]["grid_w"] is None and body["sum"]["in_sum"] == 0
        mosquitto.start()
        body = await until(url, lambda b: statuses(b)["hall-a"] == "online" and b["broker"]["connected"])
        assert fleet.sub.connects == 2 and body["sum"]["grid_w"] == LOAD_W["hall-a"]
        assert await asyncio.to_thread(get, url + "/healthz") == (200, {"status": "ok"})
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        await fleet.stop()
        await stop_mqtt(link)


async def test_a_real_agent_on_its_simulated_site_appears_in_the_fleet(mosquitto: Broker, tmp_path: Path) -> None:
    """The whole agent (Runtime: Modbus polling of the simulated site, control loop, ledger, MQTT
    link) publishing; the fleet shows it online with its real ledger's savings in the tariff's currency."""
    mqtt = {"host": mosquitto.host, "port": mosquitto.port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.2}
    site = sim_site(cycle_s=0.25, sections={"mqtt": mqtt})
    f = tmp_path / "fleet.toml"
    f.write_text(
        f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n[http]\nport = 0\nopen_read = true\n'
        '[[site]]\nid = "demo"\nname = "Demo"\nurl = "http://127.0.0.1:8080/"\n'
    )
    async with agent_on_simulators(tmp_path / "state", site, api=False) as h:
        fleet = Fleet(load_fleet(f))
        await fleet.start()
        try:
            body = await until(
                fleet.url,
                # Savings, SoC and load arrive on separate topics: wait for all three, not the first.
                lambda b: b["sites"][0]["status"] == "online"
                and all(b["sites"][0][k] is not None for k in ("savings", "soc_pct", "load_w")),
            )
            v = body["sites"][0]
            report = h.rt.hub.read("ledger")
            assert report is not None and h.rt.tariff is not None
            assert v["savings"]["currency"] == report["currency"] == h.rt.tariff.currency == "CNY"
            assert v["savings"]["tariff"] == h.rt.tariff.name
            assert v["capacity_wh"] == sum(c.capacity_wh for c in h.site.clusters)
            assert v["alarms_active"] == len(h.rt.hub.alarms.active()) and v["errors"] == []
            assert 0.0 < v["soc_pct"] < 100.0 and v["load_w"] > 0.0
            assert body["sum"]["savings_to_date"] == {"CNY": v["savings"]["net_savings"]}
        finally:
            await fleet.stop()


async def test_a_fleet_stopped_before_it_started_releases_its_port(mosquitto: Broker, tmp_path: Path) -> None:
    """(A test set-up that fails half-way stops what it built: nothing may raise or hold the port.)"""
    fleet = Fleet(load_fleet(fleet_file(tmp_path, mosquitto, "open_read = true")))
    port = fleet.server.port
    await fleet.stop()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free again
