"""The fast lane live, over real Modbus TCP against the simulated demo site (tests/loop_rig.py: the
physics advances only when the test says, the agent's clock is injected).

A load step on the simulated meter is answered by the lane's PCS writes within a few 0.2 s ticks,
before any 1 s cycle; with the 1 s loop stopped (its window stale) the lane stops writing."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from agent.live.fast_lane import FastLane
from agent.live.hub import CycleRecord
from agent.model.config import load_site
from simulators.site import SimulatedSite
from tests.agent_harness import agent_on_simulators, sim_site
from tests.loop_rig import Rig, site_text

FAST_S = 0.2


def with_fast_lane(text: str) -> str:
    """The site text with the lane at FAST_S (the demo ships one: replaced, not added twice)."""
    text = re.sub(r"(?m)^fast_lane_s = .*\n", "", text)
    return text.replace("ramp_limit_w_per_s = 200_000", f"ramp_limit_w_per_s = 200_000\nfast_lane_s = {FAST_S}")


async def open_rig(tmp_path: Path) -> Rig:
    full = tmp_path / "sim.toml"
    full.write_text(site_text())
    sim = SimulatedSite(load_site(full), any_port=True, control_port=0)
    await sim.start(ticking=False)
    site_file = tmp_path / "site.toml"
    site_file.write_text(with_fast_lane(site_text({d.port: sim.ports[d.id] for d in sim.site.devices})))
    return Rig(sim, site_file, 50.0, ())


async def cycle(rig: Rig, lane: FastLane) -> CycleRecord:
    """One 1 s cycle, its plan handed to the lane (the running loop's on_cycle does it), then the
    lane's tick at once and four more through the rest of the second."""
    rec = await rig.loop.cycle()
    lane.take(rec)
    for _ in range(5):
        await lane.tick()
        advance(rig, FAST_S)
    return rec


def advance(rig: Rig, s: float) -> None:
    rig.sim.advance(s)
    rig.clock.t += s


def setpoints_w(rig: Rig) -> float:
    return sum(p.setpoint_w for p in rig.sim.model.plant.pcs.values())


async def test_a_load_step_is_followed_within_ticks_and_a_stale_plan_stops_the_writes(tmp_path: Path) -> None:
    rig = await open_rig(tmp_path)
    try:
        assert rig.site.control.fast_lane_s == FAST_S
        lane = FastLane(rig.loop)
        for _ in range(3):
            rec = await cycle(rig, lane)
        assert rec.plan.fast_window is not None and set(rec.plan.fast_window.pcs) == {"pcs1", "pcs2", "pcs3", "pcs4"}
        before = setpoints_w(rig)
        assert abs(before) < 50e3  # a steady 1.1 MW hall at a flat-price hour: the battery idles
        wrote = lane.stats.pcs_writes
        assert wrote > 0 and lane.stats.write_failures == 0

        step_w = 1.0e6
        rig.sim.load_offset(step_w)
        advance(rig, FAST_S)  # the step lands during this tick period
        followed = []
        for _ in range(3):  # three ticks (0.6 s): no 1 s cycle in between
            await lane.tick()
            advance(rig, FAST_S)
            followed.append(setpoints_w(rig) - before)
        # the battery takes the step at the first tick, and half of it again for a tick (the lead: the
        # step went unanswered half a tick on average), and holds the grid where the 1 s plan aims
        # (the load before the step) until the next cycle moves that aim at the ramp
        assert followed[0] == pytest.approx(1.5 * step_w, abs=60e3), followed
        assert followed[1:] == pytest.approx([step_w] * 2, abs=30e3), followed
        assert rig.sim.model.battery_w == pytest.approx(followed[-1] + before, rel=0.1)  # the PCS did it
        rec = await cycle(rig, lane)  # the next cycle: its aim 100 kW above the grid, reached within it
        assert setpoints_w(rig) - before == pytest.approx(step_w - 100e3, abs=30e3)

        # the 1 s loop stops: the window it granted is stale after two cycles, and the lane stops writing
        stopped_at = lane.stats.pcs_writes
        held = setpoints_w(rig)
        rig.sim.load_offset(0.0)  # the load falls back: nothing answers it now but the 1 s loop would
        for _ in range(15):  # 3 s of ticks
            await lane.tick()
            advance(rig, FAST_S)
        stale_after = 2.0 - 3 * FAST_S  # the last window was granted three ticks before the stop
        assert lane.stats.pcs_writes - stopped_at <= 4 * round(stale_after / FAST_S + 1), "kept writing"
        writes_then = lane.stats.pcs_writes
        for _ in range(5):
            assert await lane.tick() is None
            advance(rig, FAST_S)
        assert lane.stats.pcs_writes == writes_then
        assert setpoints_w(rig) != held  # it did follow the fall while the window stood ...
        last = setpoints_w(rig)
        for _ in range(3):
            await lane.tick()
            advance(rig, FAST_S)
        assert setpoints_w(rig) == last  # ... and holds nothing after it: the PCS keep the last setpoint

        # the 1 s loop back: a fresh window, and the lane writes again
        await cycle(rig, lane)
        assert lane.stats.pcs_writes > writes_then
    finally:
        await rig.close()


async def test_the_running_agent_starts_the_lane_and_stops_it_with_the_loop(tmp_path: Path) -> None:
    # the whole Runtime in real time: the lane runs beside the 1 s loop, writes within its windows,
    # and stops before the loop closes the devices (none is left connected afterwards)

    site = sim_site(cycle_s=1.0)
    site = replace(site, control=replace(site.control, fast_lane_s=FAST_S))
    async with agent_on_simulators(tmp_path / "state", site, demo=True) as h:
        assert h.rt.fast_lane is not None
        lane, task = h.rt.fast_lane
        await h.until(lambda: lane.stats.pcs_writes >= 20, 30.0, "20 PCS writes by the fast lane")
        assert lane.stats.write_failures == 0, lane.stats.last_error
        assert not task.done()
        devices = list(h.rt.loop.devs.devices.values())
        # what it did, for the operator: GET /api/fast_lane (the provider reaches the API process)
        # (read-outs reach the API process every few seconds: the first may predate the writes)
        async with httpx.AsyncClient(base_url=h.url, timeout=10) as c:
            deadline = time.monotonic() + 30.0
            while (r := await c.get("/api/fast_lane")).status_code == 503 or r.json()["pcs_writes"] < 20:
                assert time.monotonic() < deadline, f"no fast lane read-out with 20 writes within 30 s: {r.text}"
                await asyncio.sleep(0.2)
        seen = r.json()
        assert (r.status_code, seen["running"], seen["fast_lane_s"]) == (200, True, FAST_S)
        assert seen["pcs_writes"] >= 20 and seen["write_failures"] == 0 and seen["tick_ms_p99"] is not None
    assert task.done() and task.exception() is None
    assert not [d.id for d in devices if d.health.connected]


async def test_never_writes_a_pcs_whose_revert_timer_is_not_armed(tmp_path: Path) -> None:
    # a PCS reopened (or whose last write failed) gets its revert timer from the 1 s loop's next
    # write; until then the lane leaves it alone, so nothing it writes can outlive the agent
    rig = await open_rig(tmp_path)
    try:
        lane = FastLane(rig.loop)
        await cycle(rig, lane)
        rig.loop.writer.revert_ok.discard("pcs2")
        before = rig.sim.model.plant.pcs["pcs2"].last_write_t
        rig.sim.load_offset(500e3)
        advance(rig, FAST_S)
        wrote = await lane.tick()
        assert wrote is not None and set(wrote) == {"pcs1", "pcs3", "pcs4"}
        assert rig.sim.model.plant.pcs["pcs2"].last_write_t == before
    finally:
        await rig.close()
