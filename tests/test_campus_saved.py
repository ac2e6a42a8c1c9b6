"""The campus demand state's file (agent/campus/saved.py): written whole when an interval opens,
read back as it was, refused with the file and the field named when it cannot be used."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import pytest

from agent.campus.demand import CampusDemand
from agent.campus.keep import CampusDay
from agent.campus.saved import CampusStore, SavedStateError, dump, parse
from agent.control.begin import month_index
from agent.control.state import IntervalState

N = 96  # 15-min slots
JULY = month_index(datetime(2026, 7, 1))


def demand(key: int = 5) -> CampusDemand:
    prof = tuple(math.nan if i % 3 else 1e6 + i for i in range(N))
    iv = IntervalState(
        key=key,
        rate=28.35,
        grid_ws=1.5e8,
        net_ws=1.4e8,
        covered_s=60.0,
        month=JULY,
        peaks=((11.98, 4.16e6), (28.35, 3.9e6)),
        profile=prof,
        shave_floor_w=math.inf,
        targets=(3.9e6,) * N,
        past=prof * 2,
        env=(4e6,) * N,
        margin=0.01,
    )
    return CampusDemand(CampusDay(prof, 7, 7, 3e7, 30.0, prof), iv, (7, 1))


def test_the_state_reads_back_as_it_was_written() -> None:
    st = demand()
    back = parse(dump(st, "campus_demo", JULY, 900.0), "campus_demo", JULY, 900.0, "f.json")
    assert back.iv.peaks == st.iv.peaks and back.iv.shave_floor_w == math.inf
    assert back.recharge == (7, 1) and back.day.key == 7 and back.day.net_ws == 3e7
    # NaN (unknown slots) kept as NaN: equal where both are NaN
    assert [a == b or (a != a and b != b) for a, b in zip(back.iv.past, st.iv.past, strict=True)] == [True] * 2 * N
    assert back.iv.targets == st.iv.targets and back.iv.margin == 0.01 and back.iv.month == JULY


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda d: d.update(month=JULY - 1), "field 'month' is"),  # another month: its peaks are not this one's
        (lambda d: d.update(campus="other"), "field 'campus' is 'other'"),
        (lambda d: d.update(interval_s=1800.0), "field 'interval_s' is 1800.0"),
        (lambda d: d["iv"].update(peaks=[[1.0]]), "field 'iv.peaks'"),
        (lambda d: d["iv"].update(targets=[1.0] * 95), "field 'iv.targets' must be a list of days of 96 values"),
        (lambda d: d["iv"].update(key="5"), "field 'iv.key' must be an integer"),
        (lambda d: d["day"].update(profile=[]), "field 'day.profile' must be a list of 96 values"),
        (lambda d: d.update(recharge=[1]), "field 'recharge'"),
    ],
)
def test_a_file_that_cannot_be_used_is_refused_naming_the_field(edit: object, named: str) -> None:
    d = json.loads(dump(demand(), "campus_demo", JULY, 900.0))
    edit(d)  # type: ignore[operator]
    with pytest.raises(SavedStateError, match=f"^/s/campus_state.json: {named}".replace("(", r"\(")):
        parse(json.dumps(d), "campus_demo", JULY, 900.0, "/s/campus_state.json")


def test_written_when_an_interval_opens_atomically_and_loaded(tmp_path: Path) -> None:
    path = tmp_path / "campus" / "campus_state.json"
    store = CampusStore(path)
    assert store.load("campus_demo", JULY, 900.0) == (None, None)  # no file yet: start empty, say nothing
    assert not store.save(CampusDemand(CampusDay((math.nan,) * N)), "campus_demo", JULY, 900.0)  # nothing seen
    assert store.save(demand(5), "campus_demo", JULY, 900.0)
    assert not store.save(demand(5), "campus_demo", JULY, 900.0)  # the same interval: not again
    assert store.save(demand(5), "campus_demo", JULY, 900.0, force=True)  # at shutdown
    assert store.save(demand(6), "campus_demo", JULY, 900.0)
    assert [p.name for p in path.parent.iterdir()] == ["campus_state.json"]  # no temporary left
    st, why = CampusStore(path).load("campus_demo", JULY, 900.0)
    assert why is None and st is not None and st.iv.key == 6
    path.write_text("{")
    st, why = CampusStore(path).load("campus_demo", JULY, 900.0)
    assert st is None and why is not None and why.startswith(f"{path}: not a JSON object")
    path.write_text("[]")
    assert CampusStore(path).load("campus_demo", JULY, 900.0) == (None, f"{path}: not a JSON object (a JSON list)")


def test_a_file_from_before_the_week_s_level_is_read_with_none_worked_out() -> None:
    """A coordinator upgraded mid-month reads the file its older self wrote (no week_day /
    week_level_w): the month's billed peaks stay, the week's level is not worked out yet. Another
    field absent is still refused by name."""
    d = json.loads(dump(demand(), "campus_demo", JULY, 900.0))
    del d["iv"]["week_day"], d["iv"]["week_level_w"]
    back = parse(json.dumps(d), "campus_demo", JULY, 900.0, "f.json")
    assert back.iv.peaks == ((11.98, 4.16e6), (28.35, 3.9e6))
    assert back.iv.week_day == -1 and math.isnan(back.iv.week_level_w)
    del d["iv"]["margin"]
    with pytest.raises(SavedStateError, match=r"^f\.json: field 'iv\.margin' must be a number, got None"):
        parse(json.dumps(d), "campus_demo", JULY, 900.0, "f.json")
