"""Predictive dispatch in the running agent, against the simulated site on an accelerated clock.

The agent (Runtime: loop, API process, MQTT) polls the Modbus simulators at x60 (a 15 min demand
interval passes in 15 s), with three days of demand intervals preloaded in its state dir so the
forecast is warm from the first cycle. The plan must show in GET /api/plan and on the retained MQTT
topic, decide() must track it, a closed interval must reach the history file (and a new plan be
solved for it), a restarted agent must read that history back, and a solve that cannot succeed
(a time limit of 1 µs) must raise the alarm while the 1 s loop runs on, on the heuristic.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from agent.control.planner import ALARM
from agent.control.replan import R_COLD, R_EVERY, R_FAILED_NONE, R_START
from agent.live.plan_config import parse_planner
from agent.live.plan_history import FILE_NAME
from agent.model.clock import SiteClock
from agent.model.interval import interval_bounds
from agent.offline.replay import plan_battery
from tests.agent_harness import AgentOnSim, agent_on_simulators, sim_site
from tests.conftest import Broker

SPEED = 60.0
STEP_S = 900.0
DAYS = 3
# the shipped Shanghai two-part tariff's energy prices (CNY/kWh): valley, flat, peak
SHANGHAI_PRICES = {0.372036, 0.662376, 1.010784}
# smooth inference-like load, no PV: the plan is the only thing that moves the battery much
SIMULATION = {"load": "inference", "pv_peak_w": 0, "seed": 3, "noise": False, "soc_pct": 60.0}


def preload(state: Path, now_s: float, tz: Any, days: int = DAYS) -> list[float]:
    """`days` of closed intervals before the one holding `now_s`, a daily shape around 4 MW."""
    start = interval_bounds(now_s, tz, STEP_S)[0]
    starts = [start - k * STEP_S for k in range(days * 96, 0, -1)]
    state.mkdir(parents=True, exist_ok=True)
    lines = [f"{t:.0f},{4e6 + 1e6 * math.sin(2 * math.pi * (t % 86400) / 86400):.1f},3900000.0\n" for t in starts]
    (state / FILE_NAME).write_text("".join(lines))
    return starts


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


async def api_plan(h: AgentOnSim, pred: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    """GET /api/plan until `pred(body)` (the API process mirrors the read-out once a second)."""
    deadline = time.monotonic() + timeout_s
    body: dict[str, Any] = {}
    while True:
        try:
            body = await asyncio.to_thread(get_json, f"{h.url}/api/plan")
        except urllib.error.HTTPError as e:  # 503 until the first read-out reaches the API process
            assert e.code == 503, e
        else:
            if pred(body):
                return body
        assert time.monotonic() < deadline, f"GET /api/plan never matched; last: {body.get('reason')!r}"
        await asyncio.sleep(0.2)


def site_with(planner: dict[str, Any], extra: dict[str, Any] | None = None) -> Any:
    return sim_site(cycle_s=1.0, simulation=SIMULATION, sections={"planner": planner, **(extra or {})})


async def test_the_plan_is_shown_published_tracked_and_its_history_kept(mosquitto: Broker, tmp_path: Path) -> None:
    mqtt = {"mqtt": {"host": mosquitto.host, "port": mosquitto.port, "client_id": "ems-plan-test"}}
    site = site_with({"enabled": True, "history_days": 7}, mqtt)
    clock = SiteClock(SPEED, time.time())
    state = tmp_path / "state"
    starts = preload(state, clock.now(), site.timezone)
    async with agent_on_simulators(state, site, clock=clock, demo=True) as h:
        planning = h.rt.planning
        assert planning is not None
        # read back at start; at x60 an interval lasts 15 s, so one may have closed while the agent started
        at_start = planning.history_intervals
        assert at_start in (DAYS * 96, DAYS * 96 + 1)

        # GET /api/plan: the next 24 h (96 slots of 15 min) of the first plan, solved from the history
        # (a plan covers 24 h from its first interval: 95 slots are left once the next one began,
        # until its own plan arrives; wait for a body read while the plan was fresh)
        body = await api_plan(h, lambda b: b["status"] == "plan" and len(b["slots"]) == 96)
        # (at x60 an interval may have closed since: then its plan is the one shown)
        assert body["enabled"] is True and body["reason"] in (R_START, R_EVERY)
        assert body["step_s"] == STEP_S and len(body["slots"]) == 96
        first = body["slots"][0]["t"]
        assert first == interval_bounds(first, site.timezone, STEP_S)[0]  # slots on interval starts
        assert [s["t"] for s in body["slots"]] == [first + k * STEP_S for k in range(96)]
        assert {s["price"] for s in body["slots"]} <= SHANGHAI_PRICES
        floor = plan_battery(site).reserve_pct
        assert all(floor - 1e-6 <= s["soc_pct"] <= 95.0 + 1e-6 for s in body["slots"][1:])
        assert body["solve_ms"] > 0.0 and body["age_s"] >= 0.0 and body["failures"] == 0
        assert body["changes"][-1]["reason"] == R_START  # newest first: the first plan was the start's

        # decide() tracks it: the plan's target (or its grid cap) decides, and the record carries
        # the plan's running SoC target and cap (telemetry's planned_* fields)
        deadline = time.monotonic() + 30.0
        while True:
            rec = await h.cycles(1)
            sources = {rec.plan.decided_by, *(b.source for b in rec.plan.bounds)}
            if rec.planned is not None and sources & {"plan", "plan_cap"}:
                break
            assert time.monotonic() < deadline, f"the plan never decided: {rec.plan.decided_by}"
        p = planning.plan
        assert p is not None
        assert rec.planned == planning.running(rec.snapshot.t_wall.timestamp())

        # the retained MQTT topic: a late subscriber gets the plan
        async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="plan-sub") as sub:
            await sub.subscribe("ems/demo/plan/dispatch", qos=1)
            msg = await asyncio.wait_for(anext(aiter(sub.messages)), 10.0)
        assert msg.retain
        pub = json.loads(msg.payload)  # type: ignore[arg-type]
        assert pub["v"] == 1 and pub["status"] == "plan" and len(pub["slots"]) == 96

        # the next interval closes: its averages go to the history file, and a plan is solved for it
        await h.until(lambda: planning.history_intervals > at_start, 60.0, "an interval to close")
        await h.until(lambda: planning.reason == R_EVERY, 20.0, "the new interval's plan")
        rows = [ln.split(",") for ln in (state / FILE_NAME).read_text().splitlines() if not ln.startswith("#")]
        assert [float(r[0]) for r in rows[: len(starts)]] == starts
        closed = rows[len(starts)]
        # the interval the agent started in, or (seen for less than a quarter of it) the next one
        assert float(closed[0]) in (starts[-1] + STEP_S, starts[-1] + 2 * STEP_S)
        assert 0.0 < float(closed[1]) < 20e6  # the simulated site's net load, W
        assert planning.alarms.active() == [] or all(a.code != ALARM for a in planning.alarms.active())

    # restart: the agent, started again on the same state dir, reads the closed interval back and
    # plans from its first cycle
    kept = len((state / FILE_NAME).read_text().splitlines()) - 1  # less the header
    async with agent_on_simulators(state, site, clock=SiteClock(SPEED, time.time()), api=False) as h:
        again = h.rt.planning
        assert again is not None and again.history_intervals == kept >= len(rows)
        assert float(closed[0]) in again.replanner.hist_ts
        await h.until(lambda: again.plan is not None, 30.0, "the first plan after the restart")
        assert again.reason == R_START


async def test_a_failing_solve_raises_the_alarm_and_the_loop_runs_on(tmp_path: Path) -> None:
    site = site_with({"enabled": True, "time_limit_s": 1e-6})
    clock = SiteClock(SPEED, time.time())
    state = tmp_path / "state"
    preload(state, clock.now(), site.timezone)
    async with agent_on_simulators(state, site, clock=clock, demo=True) as h:
        hub = h.rt.hub
        await h.until(lambda: any(a.code == ALARM for a in hub.alarms.active()), 30.0, "the planner alarm")
        alarm = next(a for a in hub.alarms.active() if a.code == ALARM)
        assert alarm.source == "planner" and R_FAILED_NONE in alarm.message
        body = await api_plan(h, lambda b: b["failures"] >= 1)
        assert body["status"] == "none" and body["reason"] == R_FAILED_NONE and body["slots"] == []
        # the loop runs on, on the heuristic: cycles keep coming and none is decided by a plan
        seq = hub.latest.snapshot.seq if hub.latest else 0
        for _ in range(5):
            rec = await h.cycles(1)
            assert rec.planned is None
            assert rec.plan.decided_by not in ("plan", "plan_cap")
        assert rec.snapshot.seq >= seq + 5


async def test_without_history_the_plan_says_cold_start_and_disabled_says_disabled(tmp_path: Path) -> None:
    site = site_with({"enabled": True})
    async with agent_on_simulators(tmp_path / "on", site, clock=SiteClock(SPEED, time.time()), demo=True) as h:
        body = await api_plan(h, lambda b: b["solves"] == 0 and b["cold_intervals"] >= 1)
        assert body["status"] == "none" and body["reason"] == R_COLD and body["history_intervals"] == 0
    off = site_with({"enabled": False})
    async with agent_on_simulators(tmp_path / "off", off, demo=True) as h:
        assert h.rt.planning is None
        body = await api_plan(h, lambda b: True)
        assert body == {
            "status": "none",
            "enabled": False,
            "reason": "none: disabled ([planner] enabled = false)",
            "slots": [],
            "changes": [],
            "version": 0,
        }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("enabled", "yes", "key 'enabled' must be true or false"),
        ("horizon_h", 0.5, "key 'horizon_h' must be >= 1 and <= 72"),
        ("history_days", 0, "key 'history_days' must be between 1 and 90"),
        ("margin", -1, "key 'margin' must be >= 0 and <= 5"),
        ("time_limit_s", 0, "key 'time_limit_s' must be > 0 and <= 60"),
        ("departure_soc_pct", 0, "key 'departure_soc_pct' must be > 0 and <= 100"),
        ("horizon", 24, "unknown key(s) 'horizon'"),
    ],
)
def test_planner_keys_are_checked_by_name(key: str, value: Any, message: str) -> None:
    from common.tomlcheck import ConfigError

    with pytest.raises(ConfigError, match=r"\[planner\]") as e:
        parse_planner(sim_site(sections={"planner": {key: value}}))
    assert message in str(e.value)


def test_analyze_plans_with_the_site_files_planner_settings(tmp_path: Path) -> None:
    """One implementation: a site whose [planner] is enabled plans in `ems-agent analyze` too (no
    --planner flag), with that table's settings: here a 12 h horizon and a time limit no solve meets."""
    import subprocess
    import sys

    from tests.agent_harness import DEMO, ROOT

    site_file = tmp_path / "site.toml"
    site_file.write_text(DEMO.read_text() + "\n[planner]\nenabled = true\nhorizon_h = 12\ntime_limit_s = 1e-6\n")
    midnight = 1_764_518_400  # 2025-12-01 00:00 in Shanghai
    csv = tmp_path / "load.csv"
    csv.write_text("".join(f"{midnight + 300 * k},{3e6 + 1e6 * ((k % 288) > 150):.1f}\n" for k in range(2 * 288)))
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "analyze", str(csv), "--site", str(site_file), "--json", "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    pl = json.loads(r.stdout)["planner"]
    assert pl["horizon_h"] == 12.0
    # day one has no history; every solve of day two fails on the time limit
    assert (pl["solves"], pl["failures"], pl["intervals_without_forecast"]) == (96, 96, 96)
    # the text report says what could not be computed instead of failing on it
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "analyze", str(csv), "--site", str(site_file), "--quiet"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "planner: 96 solves (96 failed, 96 intervals before a day of history)" in r.stdout
    assert "error at the daily peak n/a" in r.stdout


def test_planning_needs_a_tariff() -> None:
    from dataclasses import replace

    from common.tomlcheck import ConfigError

    site = replace(sim_site(sections={"planner": {"enabled": True}}), tariff_path=None)
    with pytest.raises(ConfigError) as e:
        parse_planner(site)
    assert str(e.value) == (
        f"{site.path} [planner]: key 'enabled' needs a tariff ([site] tariff): the plan prices energy and demand"
    )
    assert parse_planner(replace(site, sections={})).enabled is False  # no table: off
