"""What a restarted agent resumes from its state directory instead of learning it again: the grid
limit's energy bookkeeping (agent/live/limit_store.py) and the demand profile of the last day (the
ledger's intervals, Ledger.day_profile). Before, a restart kept all the fleet's energy for the limit
for a day and sized demand shaving from nothing for a day."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from agent.live.limit_store import FILE_NAME
from agent.live.runtime import Runtime
from agent.model.clock import SiteClock
from simulators.site import SimulatedSite
from tests.agent_harness import sim_site, wired


async def test_a_restarted_agent_resumes_what_it_had_counted(tmp_path: Path) -> None:
    """The real runtime on a simulated site at x60 with a connection limit under its load: two
    intervals close, the agent stops, and the next run starts from what it had counted."""
    speed = 60.0
    base = sim_site(cycle_s=0.5, simulation={"load": "inference", "pv_peak_w": 0, "seed": 3, "start_hour": 14.0})
    site = replace(base, control=replace(base.control, grid_import_limit_w=1_000_000.0))
    clock = SiteClock(speed, time.time())
    sim = SimulatedSite(site, speed=speed, any_port=True, control_port=0, epoch=clock.epoch)
    await sim.start()
    state = tmp_path / "state"
    try:
        rt = Runtime(wired(site, sim.ports), state, api_port=0, clock=clock)
        task = asyncio.create_task(rt.run())
        deadline = time.monotonic() + 90.0
        keys: set[int] = set()  # written at the first cycle, then at each interval's close
        while len(keys) < 3:  # a whole interval counted (15 site minutes: ~15 s each)
            assert time.monotonic() < deadline, "no whole interval within 90 s"
            await asyncio.sleep(0.2)
            if (state / FILE_NAME).exists():
                keys.add(json.loads((state / FILE_NAME).read_text(encoding="utf-8"))["key"])
        rt.stop()
        await task  # aclose writes the state as it stands at shutdown
        kept = rt.loop.cstate.limit
        assert kept.seen_s > 0.0 and kept.key >= 0
        again = Runtime(wired(site, sim.ports), state, api_port=0, clock=clock)
        assert again.loop.cstate.limit == kept
        # the demand profile from the ledger's last day: the whole interval's baseline, where the
        # first run had learned it (before, a restart learned it again over a day)
        learned = rt.loop.cstate.interval.profile
        seeded = again.loop.cstate.interval.profile
        assert len(seeded) == 96 and any(v == v for v in seeded)
        for a, b in zip(learned, seeded, strict=True):
            if b == b:
                assert b == pytest.approx(a, rel=0.02)
        await again.aclose()
    finally:
        await sim.stop()
