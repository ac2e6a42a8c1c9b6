"""The agent's side of the campus (agent/live/campus_link.py) without a broker: which shares it
applies, which it refuses, and the fallback with its alarm; and the share fed to the controllers."""

from __future__ import annotations

import asyncio
import json
import math
import time
import tomllib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import pytest

from agent.campus.allocate import Share
from agent.campus.config import Broker, FeederConfig
from agent.campus.messages import NO_SHARE_S, share_topic, signed_share
from agent.control.campus_share import feeder_state, with_share
from agent.live.campus_link import CampusLink
from agent.live.hub import Hub
from agent.model.config import ControlConfig
from agent.model.operator import OperatorState
from agent.mqtt.auth import sign
from tests.agent_harness import agent_on_simulators, sim_site
from tests.conftest import Broker as Mosquitto
from tests.fakes import Cycles, snapshot_for
from tests.loop_rig import Rig, site_text

KEY = b"unit-test-campus-key-0123456789"
FALLBACK = Share(900_000.0, 80_000.0, 0.0)
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0
        self.epoch = 1_790_000_000.0

    def mono(self) -> float:
        return self.t

    def unix(self) -> float:
        return self.epoch

    def step(self, s: float) -> None:
        self.t += s
        self.epoch += s


@pytest.fixture
def link(make_hub: Callable[..., Hub]) -> tuple[CampusLink, Clock]:
    clock = Clock()
    cfg = FeederConfig("campus_demo", Broker("127.0.0.1", 1883, "ems", "x", KEY), 5.0, FALLBACK)
    hub = make_hub()
    return CampusLink(cfg, hub, clock=clock.mono, epoch=clock.unix), clock


def share(clock: Clock, cap: float, seq: int = 1, key: bytes = KEY, site: str = "demo") -> bytes:
    return signed_share(key, site, Share(cap, 50_000.0, 0.0), seq, clock.epoch)


def caps(link: CampusLink) -> float:
    return link.control(ControlConfig(), NOW).grid_import_limit_w


def test_valid_share_applied_forged_replayed_stale_and_foreign_refused(link: tuple[CampusLink, Clock]) -> None:
    lk, clock = link
    assert caps(lk) == 900_000.0  # no share yet: the fallback (the conservative side) ...
    assert not lk.hub.alarms.active()  # ... without an alarm before stale_after_s has passed
    good = share(clock, 1_200_000.0)
    assert lk.on_share(good)
    assert caps(lk) == 1_200_000.0
    assert not lk.on_share(good)  # replayed
    assert not lk.on_share(share(clock, 1.0, key=b"another-key-0123456789abcdef"))  # forged
    assert not lk.on_share(share(clock, 1.0, site="feeder_x"))  # another site's share
    older = signed_share(KEY, "demo", Share(1.0, 1.0, 0.0), 0, clock.epoch - 1.0)
    assert not lk.on_share(older)  # older than the one applied
    clock.epoch += 60.0
    late = signed_share(KEY, "demo", Share(1.0, 1.0, 0.0), 2, clock.epoch - 30.0)
    assert not lk.on_share(late)  # signed 30 s ago: stale
    body = json.loads(good)
    body.update(import_cap_w=float("1e300"), ts=clock.epoch, nonce="a-fresh-nonce-0001")
    assert not lk.on_share(json.dumps(sign(KEY, {k: v for k, v in body.items() if k != "sig"})).encode())
    assert not lk.on_share(b"\xff not json")
    assert lk.refused == {"replayed": 1, "unauthenticated": 1, "malformed": 3, "stale": 2}
    assert caps(lk) == 1_200_000.0  # none of them changed what is applied
    assert lk.accepted == 1


def test_fallback_after_stale_after_s_with_its_alarm_cleared_when_shares_return(
    link: tuple[CampusLink, Clock],
) -> None:
    lk, clock = link
    assert lk.on_share(share(clock, 1_200_000.0))
    clock.step(4.9)
    assert caps(lk) == 1_200_000.0  # still valid at 4.9 s
    clock.step(0.2)
    assert caps(lk) == 900_000.0  # 5.1 s: the fallback share ...
    (alarm,) = lk.hub.alarms.active()  # ... and the alarm naming it
    assert alarm.code == "campus_fallback" and alarm.source == "campus"
    assert "900000 W" in alarm.message and "campus_demo" in alarm.message
    clock.step(1.0)
    assert lk.on_share(share(clock, 1_100_000.0, seq=2))
    assert caps(lk) == 1_100_000.0
    assert not lk.hub.alarms.active()
    assert [a.code for a in lk.hub.alarms.history()] == ["campus_fallback"]


def test_no_share_ever_raises_the_alarm_once_stale_after_s_has_passed(link: tuple[CampusLink, Clock]) -> None:
    lk, clock = link
    clock.step(5.5)
    assert caps(lk) == 900_000.0
    assert [a.code for a in lk.hub.alarms.active()] == ["campus_fallback"]


def test_share_narrows_the_site_limits_and_never_widens_them() -> None:
    own = ControlConfig(grid_import_limit_w=1_000_000.0, ramp_limit_w_per_s=0.0, demand_target_w=0.0)
    c = with_share(own, Share(1_200_000.0, 40_000.0, 700_000.0))
    assert (c.grid_import_limit_w, c.ramp_limit_w_per_s, c.demand_target_w) == (1_000_000.0, 40_000.0, 700_000.0)
    c = with_share(own, Share(800_000.0, 0.0, 0.0))  # 0 = that campus limit is off: the site's stays
    assert (c.grid_import_limit_w, c.ramp_limit_w_per_s, c.demand_target_w) == (800_000.0, 0.0, 0.0)


def test_report_counts_battery_above_the_reserve_only(make_hub: Callable[..., Hub], tmp_path: Path) -> None:
    site = make_hub().site
    snap = snapshot_for(site, 1, 10.0, NOW, load_w=2_000_000.0)  # 12 clusters at 60 %, 200 kW limits
    cfg = replace(site.control, reserve_load_w=0.0, reserve_minutes=0.0, soc_min_pct=20.0)
    f = feeder_state("demo", snap, cfg, OperatorState())
    assert f.net_load_w == 2_000_000.0 - snap.pv_w.value
    assert f.fresh
    assert f.discharge_w == pytest.approx(12 * 200_000.0)
    # (60 - 20) % of 418 kWh, times the discharge efficiency, per cluster
    assert f.energy_wh == pytest.approx(12 * 0.40 * 418_000.0 * cfg.discharge_efficiency)
    held = feeder_state("demo", snap, cfg, OperatorState(maintenance=frozenset({"c01", "c02"})))
    assert held.energy_wh == pytest.approx(10 * 0.40 * 418_000.0 * cfg.discharge_efficiency)
    # what an economic campus sizes its levels on (agent/campus/levels.py), as the site sizes its own:
    # the usable window from full, (95 - 20) % of 418 kWh per cluster, and the power with no window
    assert f.budget_wh == pytest.approx(12 * 0.75 * 418_000.0 * cfg.discharge_efficiency)
    assert f.power_w == pytest.approx(12 * 200_000.0)
    assert math.isnan(f.spread)  # not given: not known
    assert feeder_state("demo", snap, cfg, OperatorState(), spread=-0.086).spread == -0.086


def test_report_says_how_long_since_the_last_share(link: tuple[CampusLink, Clock]) -> None:
    lk, clock = link
    rec = Cycles(lk.hub, NOW).next(publish=False)
    lk.submit(rec)
    assert lk._report is not None
    first = json.loads(lk._report)
    assert first["site"] == "demo" and first["good"] is True
    assert first["share_age_s"] == NO_SHARE_S  # none yet: the coordinator holds it on its fallback
    assert lk.on_share(share(clock, 1_200_000.0))
    clock.step(2.5)
    lk.submit(rec)
    assert json.loads(lk._report)["share_age_s"] == 2.5


def test_report_carries_the_interval_import_the_loop_counted(link: tuple[CampusLink, Clock]) -> None:
    """The coordinator splits the campus's interval energy from each feeder's own count of its import
    so far this interval (CycleRecord.interval_grid_wh, the demand controller's)."""
    lk, _ = link
    rec = replace(Cycles(lk.hub, NOW).next(publish=False), interval_grid_wh=123_456.789)
    lk.submit(rec)
    assert lk._report is not None
    assert json.loads(lk._report)["interval_wh"] == 123_456.789
    # and its demand forecast and priced raise (the campus's demand bound is split on the forecasts)
    lk.submit(replace(rec, campus_forecast_w=2_345_678.9, campus_raise_w=50_000.0))
    assert lk._report is not None
    body = json.loads(lk._report)
    assert (body["forecast_w"], body["raise_w"]) == (2_345_678.9, 50_000.0)
    lk.submit(rec)  # none known: none sent (the coordinator then sends no bound)
    assert lk._report is not None and "forecast_w" not in json.loads(lk._report)
    # the round trip's value its price plan priced, for the campus's economic levels (None known: none)
    assert "spread" not in json.loads(lk._report) and json.loads(lk._report)["budget_wh"] > 0.0
    lk.submit(replace(rec, campus_spread=-0.0862))
    assert lk._report is not None and json.loads(lk._report)["spread"] == -0.0862


async def test_the_loop_records_its_interval_import(tmp_path: Path) -> None:
    """A real loop over Modbus (tests/loop_rig.py): each CycleRecord carries the import its demand
    controller counted so far this interval, which the campus report sends."""

    rig = await Rig.open(tmp_path)
    try:
        alone = await rig.run(1)  # a site without [campus] makes no report: nothing computed for one
        assert alone[0].interval_grid_wh == 0.0 and math.isnan(alone[0].campus_forecast_w)
        # a feeder (its fallback share "off": 0 narrows nothing, so the loop decides as before)
        cfg = FeederConfig("campus_demo", Broker("127.0.0.1", 1883, "ems", "x", KEY), 5.0, Share(0.0, 0.0, 0.0))
        rig.loop.control_source = CampusLink(cfg, rig.hub)
        recs = await rig.run(3)
        assert recs[-1].interval_grid_wh == rig.loop.cstate.interval.grid_ws / 3600.0
        assert recs[-1].interval_grid_wh > recs[0].interval_grid_wh >= 0.0  # it grows as the site imports
        # and the demand forecast for its next cycle (campus_share.report_forecast_w): its load, the
        # interval's so far (no last day's profile here: NaN priors are not counted)
        assert all(r.campus_forecast_w == pytest.approx(r.snapshot.load_w.value, rel=0.01) for r in recs)
    finally:
        await rig.close()


def test_status_shows_the_share_in_force_its_age_and_the_refusals(link: tuple[CampusLink, Clock]) -> None:
    """GET /api/campus's read-out (the link's provider): before any share, on the fallback with no
    age; then the coordinator's share and how old it is; the fallback again once it is stale."""
    lk, clock = link
    assert lk.hub.read("campus") is None  # registered by start_campus, not by the constructor
    st = lk.status()
    assert (st["on_fallback"], st["share_age_s"], st["share"]) == (
        True,
        None,
        {
            "import_cap_w": 900_000.0,
            "ramp_w_per_s": 80_000.0,
            "demand_target_w": 0.0,
            "keep_wh": -1.0,
            "recharge": -1,
            "demand_w": None,
            "at_net_w": None,
            "room_w": None,
        },
    )
    assert lk.on_share(share(clock, 1_200_000.0))
    assert not lk.on_share(share(clock, 1.0, key=b"another-key-0123456789abcdef"))  # forged
    clock.step(2.0)
    st = lk.status()
    assert (st["on_fallback"], st["share_age_s"], st["share_seq"]) == (False, 2.0, 1)
    assert st["share"] == {
        "import_cap_w": 1_200_000.0,
        "ramp_w_per_s": 50_000.0,
        "demand_target_w": 0.0,
        "keep_wh": -1.0,
        "recharge": -1,
        "demand_w": None,
        "at_net_w": None,
        "room_w": None,
    }
    assert (st["accepted"], st["refused"], st["stale_after_s"]) == (1, {"unauthenticated": 1}, 5.0)
    clock.step(3.5)  # 5.5 s old: past stale_after_s
    st = lk.status()
    assert (st["on_fallback"], st["share_age_s"], st["share"]["import_cap_w"]) == (True, 5.5, 900_000.0)


def test_a_reloaded_fallback_holds_from_the_next_cycle(link: tuple[CampusLink, Clock]) -> None:
    lk, clock = link
    narrower = replace(lk.cfg, stale_after_s=8.0, fallback=Share(600_000.0, 80_000.0, 0.0))
    lk.reconfigure(narrower)
    assert caps(lk) == 600_000.0
    assert lk.on_share(share(clock, 1_200_000.0))
    clock.step(7.0)  # within the new stale_after_s (8 s), past the old (5 s)
    assert caps(lk) == 1_200_000.0
    clock.step(1.5)
    assert caps(lk) == 600_000.0
    assert lk.status()["stale_after_s"] == 8.0


CAMPUS_TABLE = """
[campus]
id = "campus_demo"
host = "127.0.0.1"
port = {port}
key_file = "campus.key"
stale_after_s = 6
fallback_import_cap_w = {cap}
fallback_ramp_w_per_s = 80_000
"""


async def test_the_api_serves_the_link_and_a_sighup_narrows_the_fallback(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """A real agent on its simulators with a [campus] table, a real broker and no coordinator:
    GET /api/campus shows it on its fallback, with no share yet and a forged share refused; a SIGHUP
    with a lower fallback applies it; one that would widen it is refused and the lower one stays."""
    (tmp_path / "campus.key").write_text("api-test-campus-key-0123456789\n")
    site_file = tmp_path / "site.toml"
    table = tomllib.loads(CAMPUS_TABLE.format(port=mosquitto.port, cap=900_000))["campus"]
    site = replace(sim_site(cycle_s=0.25, sections={"campus": table}), path=site_file)
    async with agent_on_simulators(tmp_path / "state", site, demo=True) as h:
        assert h.rt.campus is not None
        lk = h.rt.campus[0]
        await h.until(lambda: lk.connected, 15.0, "the campus link to connect")
        forged = signed_share(b"another-key-0123456789abcdef", site.id, Share(1e9, 1e9, 0.0), 1, time.time())
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="campus-api-test") as c:
            await c.publish(share_topic("ems", "campus_demo", site.id), forged, qos=1)
        await h.until(lambda: lk.refused.get("unauthenticated") == 1, 15.0, "the forged share refused")

        async def read(cond: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
            # read-outs reach the API process every PROVIDERS_EVERY_S: poll until it shows `cond`
            async with httpx.AsyncClient(base_url=h.url, timeout=10) as http:
                deadline = time.monotonic() + 20.0
                while (r := await http.get("/api/campus")).status_code != 200 or not cond(r.json()):
                    assert time.monotonic() < deadline, f"GET /api/campus: {r.status_code} {r.text}"
                    await asyncio.sleep(0.2)
                return dict(r.json())

        seen = await read(lambda j: j["refused"] == {"unauthenticated": 1})
        assert (seen["campus"], seen["connected"], seen["on_fallback"], seen["share_age_s"]) == (
            "campus_demo",
            True,
            True,
            None,
        )
        assert seen["share"]["import_cap_w"] == 900_000.0 and seen["accepted"] == 0

        ports = {d.port: h.sim.ports[d.id] for d in sim_site().devices}
        site_file.write_text(site_text(ports, cycle_s=0.25) + CAMPUS_TABLE.format(port=mosquitto.port, cap=600_000))
        h.rt.reload()  # what SIGHUP does
        seen = await read(lambda j: j["share"]["import_cap_w"] == 600_000.0)
        assert seen["on_fallback"]
        rec = await h.cycles(1)  # the limit the loop's next cycle gets from the link
        assert lk.control(h.rt.loop.site.control, rec.snapshot.t_wall).grid_import_limit_w == 600_000.0

        site_file.write_text(site_text(ports, cycle_s=0.25) + CAMPUS_TABLE.format(port=mosquitto.port, cap=1_000_000))
        h.rt.reload()
        reloading = h.rt._reloading
        assert reloading is not None
        await h.until(reloading.done, 15.0, "the refused reload to finish")
        await h.cycles(2)
        assert lk.cfg.fallback.import_cap_w == 600_000.0
