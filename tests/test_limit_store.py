"""The grid connection limit's energy bookkeeping survives a restart (agent/live/limit_store.py).

Before, every restart reset it and the agent kept all its energy for the limit for a day (the safe
start, limit_reserve.reserve_wh), giving up a day of arbitrage and shaving after each update.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from agent.control.limit_reserve import WINDOW_DAYS, reserve_wh
from agent.control.state import LimitState
from agent.live.limit_store import FILE_NAME, LimitStore, LimitStoreError, dump, parse
from agent.model.interval import DAY_S

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
