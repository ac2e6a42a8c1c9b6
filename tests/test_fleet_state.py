"""The fleet's pure parts: folding the agents' payloads into site states, statuses, and the sums
(per currency), with malformed and foreign payloads degrading only their site; the fleet file."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.economics.ledger import Summary
from agent.fleet.config import load_fleet
from agent.fleet.state import SiteInfo, SiteState, fleet_view, receive, split_topic
from agent.fleet.subscriber import FleetState
from agent.model.alarms import AlarmBook
from agent.mqtt.topics import alarm_active_payload, dumps, savings_payload, status_payload
from common.tomlcheck import ConfigError

TZ = ZoneInfo("Asia/Shanghai")
T = datetime(2026, 7, 1, 14, 0, tzinfo=TZ)


def state(grid: float, load: float, bat: float, pv: float | None, energy: float, cap: float) -> bytes:
    """A state payload with the keys agent/mqtt/topics.py state_payload writes (the ones read here)."""
    return dumps(
        {"v": 1, "seq": 7, "t": T.isoformat(), "grid_w": grid, "load_w": load, "pv_w": pv, "battery_w": bat,
         "soc_pct": 100 * energy / cap, "energy_wh": energy, "capacity_wh": cap, "mode": "auto"}
    )  # fmt: skip


def report(currency: str, energy: float, demand: float, degradation: float) -> dict[str, Any]:
    """The ledger report's shape (Ledger.report) with a real to-date Summary."""
    td = Summary("to_date", energy, demand, degradation, 0.0, 120.0, 130.0, 86400.0, 0.0, 96, 0)
    return {"currency": currency, "tariff": "t", "savings_to_date": td.net_savings, "to_date": td.as_dict()}


def fed(*msgs: tuple[str, str, bytes, float]) -> dict[str, SiteState]:
    sites: dict[str, SiteState] = {}
    for sid, kind, raw, now in msgs:
        sites[sid] = receive(sites.get(sid, SiteState(sid)), kind, raw, now)
    return sites


def test_split_topic() -> None:
    assert split_topic("ems", "ems/hall-a/state") == ("hall-a", "state")
    assert split_topic("ems", "ems/hall-a/alarm/active") == ("hall-a", "alarm/active")
    assert split_topic("a/b", "a/b/x/savings") == ("x", "savings")
    assert split_topic("ems", "ems/hall-a/cluster/c01") is None
    assert split_topic("ems", "ems/hall-a/alarm") is None  # the events, not the summary
    assert split_topic("ems", "other/hall-a/state") is None
    assert split_topic("ems", "ems//state") is None


def test_sums_per_currency_and_only_online_power() -> None:
    book = AlarmBook()
    book.raise_("device_comm", "pcs1", "no data", T)
    book.raise_("pcs_fault", "pcs2", "tripped", T)
    sav_a = savings_payload(report("CNY", 1000.0, 500.0, 100.0), T)
    sav_b = savings_payload(report("CNY", 200.5, 0.0, 0.25), T)
    sav_c = savings_payload(report("USD", 80.0, 20.0, 10.0), T)
    assert sav_a is not None and sav_b is not None and sav_c is not None
    sites = fed(
        ("a", "status", dumps(status_payload("online", "x", T)), 0.0),
        ("a", "state", state(1_000_000.0, 1_500_000.0, 500_000.0, 0.0, 2_000_000.0, 5_000_000.0), 0.0),
        ("a", "savings", dumps(sav_a), 0.0),
        ("a", "alarm/active", dumps(alarm_active_payload(book.active(), T)), 0.0),
        ("b", "state", state(2_000_000.0, 1_800_000.0, -300_000.0, 100_000.0, 1_000_000.0, 5_000_000.0), 9.0),
        ("b", "savings", dumps(sav_b), 9.0),
        ("b", "alarm/active", dumps(alarm_active_payload([], T)), 9.0),
        ("c", "state", state(5.0, 5.0, 0.0, None, 1.0, 2.0), 9.0),
        ("c", "savings", dumps(sav_c), 9.0),
        ("d", "state", state(7.0, 7.0, 0.0, 0.0, 1.0, 2.0), 0.0),  # silent since: stale at 10
        ("d", "savings", dumps(sav_a), 0.0),
    )
    view = fleet_view(sites, (SiteInfo("b", "Hall B", "http://b/"), SiteInfo("z", "Zed", None)), 10.0, 5.0)
    by = {v["id"]: v for v in view["sites"]}
    assert [v["id"] for v in view["sites"]] == ["b", "z", "a", "c", "d"]  # listed first, then by id
    assert {k: v["status"] for k, v in by.items()} == {
        "a": "stale", "b": "online", "c": "online", "d": "stale", "z": "missing"
    }  # fmt: skip
    assert by["b"]["name"] == "Hall B" and by["b"]["url"] == "http://b/" and by["a"]["url"] is None
    assert by["b"]["age_s"] == 1.0 and by["z"]["age_s"] is None
    assert by["a"]["alarms_active"] == 2 and by["a"]["alarms_worst"] == "critical"
    assert by["a"]["alarm_codes"] == ["device_comm", "pcs_fault"]
    assert by["b"]["alarms_active"] == 0 and by["b"]["alarms_worst"] is None
    assert by["a"]["savings"] == {
        "currency": "CNY", "tariff": "t", "net_savings": 1400.0, "energy_savings": 1000.0,
        "demand_savings": 500.0, "degradation_cost": 100.0, "discharge_kwh": 120.0, "charge_kwh": 130.0,
    }  # fmt: skip
    s = view["sum"]
    # power and energy: the online sites b and c only; pv not measured at c
    assert (s["grid_w"], s["load_w"], s["battery_w"], s["pv_w"]) == (2_000_005.0, 1_800_005.0, -300_000.0, 100_000.0)
    assert s["unmeasured"] == {"pv_w": ["c"]}
    assert (s["energy_wh"], s["capacity_wh"]) == (1_000_001.0, 5_000_002.0)
    assert s["soc_pct"] == pytest.approx(100 * 1_000_001.0 / 5_000_002.0, rel=1e-12)
    # savings to date: every site's last figures, per currency (a, b, d in CNY; c in USD)
    assert s["savings_to_date"] == {"CNY": 1400.0 + 200.25 + 1400.0, "USD": 90.0}
    assert (s["alarms_active"], s["alarms_worst"]) == (2, "critical")
    assert (s["sites"], s["in_sum"]) == (5, 2)
    assert s["by_status"] == {"online": 2, "stale": 2, "missing": 1}


@pytest.mark.parametrize(
    ("kind", "raw", "error"),
    [
        ("state", b"\xff\xfe garbage", "state: not JSON"),
        ("state", b"[1, 2]", "state: not a JSON object (a list)"),
        ("state", b'{"v": 2, "grid_w": 1}', "state: v: schema version 2, this fleet reads 1"),
        ("state", b'{"v": 1, "grid_w": 1}', "state: load_w: missing"),
        (
            "state",
            b'{"v":1,"grid_w":"1e9","load_w":0,"pv_w":0,"battery_w":0,"soc_pct":0,"energy_wh":0,"capacity_wh":0}',
            "state: grid_w: '1e9' is not a finite number",
        ),
        ("state", b'{"v":1,"grid_w":1e999,"load_w":0}', "state: grid_w: inf is not a finite number"),
        ("state", b"[" * 60_000, "state: not JSON (nested too deep)"),
        ("state", b" " * (64 * 1024 + 1), "state: 65537 bytes, more than 65536 (not read)"),
        ("status", b'{"v": 1, "status": "asleep"}', "status: status: 'asleep' is not one of online, offline"),
        ("alarm/active", b'{"v": 1, "active": -1, "worst": null}', "alarm/active: active: -1.0 is not a count"),
        ("alarm/active", b'{"v": 1, "active": 1, "worst": "doom"}', "alarm/active: worst: 'doom' is not a severity"),
        ("savings", b'{"v": 1, "currency": "yuan"}', "savings: currency: 'yuan' is not an ISO 4217 code"),
        ("savings", b'{"v": 1, "currency": "CNY", "net_savings": true}', "savings: net_savings: True is not"),
    ],
)
def test_a_bad_payload_degrades_its_site_naming_the_field(kind: str, raw: bytes, error: str) -> None:
    good = state(1.0, 2.0, 1.0, 0.0, 5.0, 10.0)
    s = receive(receive(SiteState("a"), "state", good, 0.0), kind, raw, 1.0)
    view = fleet_view({"a": s}, (), 1.0, 5.0)
    v = view["sites"][0]
    assert v["status"] == "degraded" and not v["in_sum"]
    assert len(v["errors"]) == 1 and v["errors"][0].startswith(error), v["errors"]
    assert v["grid_w"] == 1.0  # the last good state is kept (shown, not summed)
    assert view["sum"]["grid_w"] is None
    # the next good message of that kind clears it
    fixes = {
        "state": good,
        "status": dumps(status_payload("online", "x", T)),
        "alarm/active": dumps(alarm_active_payload([], T)),
        "savings": json.dumps(savings_payload(report("CNY", 1.0, 0.0, 0.0), T)).encode(),
    }
    s = receive(s, kind, fixes[kind], 2.0)
    assert fleet_view({"a": s}, (), 2.0, 5.0)["sites"][0]["status"] == "online"


def test_offline_will_wins_and_nothing_is_summed() -> None:
    s = fed(
        ("a", "state", state(1.0, 2.0, 1.0, 0.0, 5.0, 10.0), 0.0),
        ("a", "status", dumps(status_payload("offline", "x", None)), 0.5),
    )
    view = fleet_view(s, (), 1.0, 5.0)
    assert view["sites"][0]["status"] == "offline" and view["sum"]["grid_w"] is None
    assert view["sum"]["soc_pct"] is None and view["sum"]["savings_to_date"] == {}


def test_fleet_state_bounds_and_ignores_foreign_topics(tmp_path: Path) -> None:
    f = tmp_path / "fleet.toml"
    f.write_text('[mqtt]\ntopic_prefix = "dc"\n[[site]]\nid = "a"\n')
    clock = iter([1.0, 2.0, 3.0, 4.0])
    fs = FleetState(load_fleet(f), clock=lambda: next(clock))
    fs.on_message("dc/a/state", state(1.0, 2.0, 1.0, 0.0, 5.0, 10.0))
    fs.on_message("dc/a/cluster/c1", b"{}")
    fs.on_message("ems/b/state", b"{}")
    assert fs.ignored == 2 and set(fs.sites) == {"a"}
    assert fs.view()["sites"][0]["age_s"] == 1.0


def test_new_sites_beyond_the_bound_are_refused_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood of invented site ids (anyone who may publish on the broker) cannot grow the fleet
    without bound; the sites already known keep updating."""
    monkeypatch.setattr("agent.fleet.subscriber.MAX_SITES", 3)
    f = tmp_path / "fleet.toml"
    f.write_text('[[site]]\nid = "a"\n')
    fs = FleetState(load_fleet(f), clock=lambda: 1.0)
    for i in range(10):
        fs.on_message(f"ems/x{i}/state", state(1.0, 2.0, 1.0, 0.0, 5.0, 10.0))
    fs.on_message("ems/a/state", state(7.0, 7.0, 0.0, 0.0, 5.0, 10.0))
    assert list(fs.sites) == ["a", "x0", "x1"] and fs.refused_sites == 8
    assert fs.view()["sites"][0]["grid_w"] == 7.0


def test_fleet_file_errors_name_the_key(tmp_path: Path) -> None:
    f = tmp_path / "fleet.toml"
    cases = {
        '[mqtt]\ntopic_prefix = "ems/#"\n': "[mqtt]: key 'topic_prefix' must be a plain topic path",
        '[http]\ntokens_file = "nope.toml"\n': "[http]: key 'tokens_file' names a file that does not exist",
        '[[site]]\nid = "a/b"\n': "[[site]] #1: key 'id' must be a site id",
        '[[site]]\nid = "a"\n[[site]]\nid = "a"\n': "[[site]] #2: key 'id' 'a' is listed twice",
        '[[site]]\nid = "a"\nurl = "javascript:alert(1)"\n': "[[site]] #1: key 'url' must be an http(s) URL",
        "[fleet]\nstale_after_s = 0\n": "[fleet]: key 'stale_after_s' must be >= 0.5",
        '[fleet]\ncolour = "red"\n': "[fleet]: unknown key(s) 'colour'",
    }
    for text, msg in cases.items():
        f.write_text(text)
        with pytest.raises(ConfigError) as e:
            load_fleet(f)
        assert msg in str(e.value), (text, str(e.value))
    f.write_text('[[site]]\nid = "hall-a"\nname = "Hall A"\nurl = "http://10.0.0.5:8080/"\n')
    cfg = load_fleet(f)
    assert cfg.sites == (SiteInfo("hall-a", "Hall A", "http://10.0.0.5:8080/"),)
    assert (cfg.host, cfg.port, cfg.topic_prefix, cfg.http_host, cfg.http_port) == (
        "127.0.0.1",
        1883,
        "ems",
        "127.0.0.1",
        8090,
    )
