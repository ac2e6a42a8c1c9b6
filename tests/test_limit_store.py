"""The grid connection limit's energy bookkeeping survives a restart (agent/live/limit_store.py).

Before, every restart reset it and the agent kept all its energy for the limit for a day (the safe
start, limit_reserve.reserve_wh), giving up a day of arbitrage and shaving after each update.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from agent.control.limit_reserve import WINDOW_DAYS, reserve_wh
from agent.control.state import LimitState
from agent.live.limit_store import FILE_NAME, LimitStore, LimitStoreError, dump, parse
from agent.live.runtime import Runtime
from agent.model.clock import SiteClock
from agent.model.interval import DAY_S
from simulators.site import SimulatedSite
from tests.agent_harness import sim_site, wired

IV = 900.0
N = 96 * WINDOW_DAYS
NOW = 1_790_000_000.0
PAST = tuple(float(i % 97) for i in range(N))
STATE = LimitState(
    deficit_wh=1234.5, key=7_000_000, slot_max_wh=1300.0, past_wh=PAST, past_max_wh=96.0, ahead_wh=80.0, seen_s=DAY_S
)


def test_a_state_written_is_the_state_read_back() -> None:
    assert parse(dump(STATE, NOW - 3600.0, IV), NOW, IV, "f") == STATE
    fresh = LimitState(deficit_wh=10.0, key=5, slot_max_wh=10.0, seen_s=120.0)  # before the first ring
    assert parse(dump(fresh, NOW, IV), NOW, IV, "f") == fresh


def test_a_restored_state_keeps_what_a_day_of_readings_taught() -> None:
    usable = 50_000.0
    assert reserve_wh(LimitState(), usable) == usable  # a fresh start keeps everything
    restored = parse(dump(STATE, NOW - 600.0, IV), NOW, IV, "f")
    assert reserve_wh(restored, usable) == 1300.0  # the running interval's maximum, not the whole fleet


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"saved_at_s": NOW - (WINDOW_DAYS + 1) * DAY_S}, "older than the 7-day window"),
        ({"interval_s": 300.0}, "field 'interval_s' is 300.0, [control] demand_interval_s is 900"),
        ({"version": 2}, "field 'version' is 2"),
        ({"deficit_wh": float("nan")}, "field 'deficit_wh' must be a finite number >= 0, got nan"),
        ({"seen_s": -1}, "field 'seen_s' must be a finite number >= 0, got -1"),
        ({"key": "7"}, "field 'key' must be an integer >= -1, got '7'"),
        ({"past_wh": [1.0, 2.0]}, f"field 'past_wh' must be a list of {N} values"),
        ({"past_wh": [-1.0] * N}, "field 'past_wh' must be a finite number >= 0, got -1.0"),
    ],
)
def test_a_file_that_cannot_be_used_is_named_with_its_field(edit: dict[str, object], named: str) -> None:
    d = json.loads(dump(STATE, NOW - 60.0, IV))
    d.update(edit)
    with pytest.raises(LimitStoreError, match=r"^state/limit_state\.json: ") as e:
        parse(json.dumps(d), NOW, IV, "state/limit_state.json")
    assert named in str(e.value)


def test_the_store_writes_once_per_interval_and_reports_a_bad_file(tmp_path: Path) -> None:
    store = LimitStore(tmp_path)
    assert store.load(NOW, IV) == (None, None)  # no file: the safe start, nothing to say
    assert not store.save(LimitState(), NOW, IV)  # nothing counted yet (no limit): nothing written
    assert store.save(STATE, NOW, IV)
    assert not store.save(replace(STATE, deficit_wh=1.0), NOW + 1.0, IV)  # the same interval
    assert store.save(replace(STATE, deficit_wh=1.0), NOW + 1.0, IV, force=True)  # shutdown
    assert LimitStore(tmp_path).load(NOW + 2.0, IV) == (replace(STATE, deficit_wh=1.0), None)
    (tmp_path / FILE_NAME).write_text("{torn", encoding="utf-8")
    ls, why = LimitStore(tmp_path).load(NOW, IV)
    assert ls is None and why is not None and why.startswith(f"{tmp_path / FILE_NAME}: not JSON")


async def test_a_restarted_agent_resumes_the_limit_bookkeeping(tmp_path: Path) -> None:
    """The real runtime on a simulated site at x60 with a connection limit under its load: an
    interval closes, the agent stops, and the next run starts from what it had counted."""
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
        while len(keys) < 2:  # an interval closed (15 site minutes: ~15 s)
            assert time.monotonic() < deadline, "no interval closed within 90 s"
            await asyncio.sleep(0.2)
            if (state / FILE_NAME).exists():
                keys.add(json.loads((state / FILE_NAME).read_text(encoding="utf-8"))["key"])
        rt.stop()
        await task  # aclose writes the state as it stands at shutdown
        kept = rt.loop.cstate.limit
        assert kept.seen_s > 0.0 and kept.key >= 0
        again = Runtime(wired(site, sim.ports), state, api_port=0, clock=clock)
        assert again.loop.cstate.limit == kept
        await again.aclose()
    finally:
        await sim.stop()
