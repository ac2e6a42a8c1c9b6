"""Wall-clock steps while the agent runs (NTP forwards and back; issue 15).

The process cannot step the system clock, so the wall clock is injected: into the real loop (real
Modbus, stepped monotonic clock) feeding the real ledger, and into the MQTT command handler.

Before: the replay memory forgot nonces by the wall time they were seen, so a clock stepped
forward forgot them all and, stepped back, let a command captured just before be replayed.
The demand interval and the ledger already held (no negative time, no interval twice); their test
here is a guard.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from agent.economics.ledger import Ledger, LedgerSink
from agent.economics.roi import economics_config
from agent.economics.tariff import load_tariff
from agent.live.hub import Hub
from agent.mqtt.auth import Verifier
from agent.mqtt.commands import CommandHandler
from tests.loop_rig import NOON, Rig
from tests.test_mqtt_hostile import Wall
from tests.test_mqtt_link import SECRET, signed

MODE = {"command": "set_mode", "mode": "idle"}


def test_a_replay_is_refused_after_the_clock_steps_forward_then_back(make_hub: Callable[..., Hub]) -> None:
    wall = Wall()
    h = CommandHandler(make_hub(), Verifier(SECRET, 30.0), wall)
    t = wall.t
    captured = signed(MODE, ts=t.timestamp())
    assert h.handle(captured)["accepted"] is True
    wall.t = t + timedelta(hours=1)  # NTP steps forward: a command signed on the new time is valid
    assert h.handle(signed(MODE, ts=wall.t.timestamp()))["accepted"] is True
    wall.t = t + timedelta(seconds=10)  # ... and back again: 10 s after the capture
    ack = h.handle(captured)
    assert (ack["accepted"], ack["reason"]) == (
        False, "stale: older than the agent's replay memory (its clock stepped?); sign it again"
    )  # fmt: skip
    assert h.handle(signed(MODE, ts=wall.t.timestamp()))["accepted"] is True  # fresh ones still pass


def test_a_replay_is_refused_after_the_clock_steps_back(make_hub: Callable[..., Hub]) -> None:
    wall = Wall()
    h = CommandHandler(make_hub(), Verifier(SECRET, 30.0), wall)
    t = wall.t
    captured = signed(MODE, ts=t.timestamp())
    assert h.handle(captured)["accepted"] is True
    wall.t = t - timedelta(seconds=20)  # back within the freshness window
    assert h.handle(captured)["reason"] == "replayed: this nonce was already used"
    wall.t = t + timedelta(seconds=200)  # time passes; every nonce forgotten ...
    assert h.handle(signed(MODE, ts=wall.t.timestamp()))["accepted"] is True
    wall.t = t + timedelta(seconds=5)  # ... then a step back to just after the capture
    assert h.handle(captured)["accepted"] is False


async def test_ledger_and_demand_interval_through_wall_steps_on_the_real_loop(tmp_path: Path) -> None:
    rig = await Rig.open(tmp_path)
    offset = [0.0]

    def wall() -> datetime:
        return NOON + timedelta(seconds=rig.clock.t - 1000.0 + offset[0])

    rig.loop.wall = wall
    assert rig.site.tariff_path is not None
    db = tmp_path / "ledger.db"
    ledger = Ledger(db, load_tariff(rig.site.tariff_path), economics_config(rig.site))
    rig.hub.sinks.append(LedgerSink(ledger))
    try:
        await rig.run(5)  # 12:00:00-04
        offset[0] = 3600.0  # forwards one hour: 13:00:05
        await rig.run(5)
        rows = sqlite3.connect(db).execute("SELECT start, covered_s FROM intervals").fetchall()
        # 12:00 closed with 4 s of readings plus the last one held max_hold_s (5 s) into the gap: the
        # ledger sees wall time only, so a step reads as a gap in the data (4 s more than passed)
        assert rows == [(NOON.timestamp(), 9.0)]
        offset[0] = -7200.0  # back three hours: 10:00:10
        await rig.run(5)
        offset[0] = 0.0  # forwards again, into the 12:00 interval already recorded: 12:00:15
        await rig.run(5)
        offset[0] = 3600.0  # and on: 13:00:20 closes 12:00 a second time
        await rig.run(5)
        rows = sqlite3.connect(db).execute("SELECT start, covered_s FROM intervals ORDER BY start").fetchall()
        ten = NOON.timestamp() - 7200.0
        # 10:00 closed by the step forward out of it (4 s + the hold); 12:00 not counted twice nor changed;
        # the 13:00 interval of the first visit was dropped at the step back (in progress: never closed)
        assert rows == [(ten, 9.0), (NOON.timestamp(), 9.0)]
        assert ledger.duplicates == 1
        st = rig.loop.cstate
        # the demand accumulator runs on monotonic time: the interval in progress (13:00) holds the
        # 5 cycles since the last step, never a negative or a jumped span
        assert 0.0 <= st.interval.covered_s <= 5.0
        assert math.isfinite(st.interval.grid_ws) and st.interval.grid_ws >= 0.0
        assert all(math.isfinite(v) and v >= 0.0 for _, v in st.interval.peaks)
    finally:
        ledger.close()
        await rig.close()
