"""The per-cycle records (snapshot, plan, dispatch, controller state) have hand-written __init__s
(fast in the mypyc build; see agent/model/snapshot.py). Each must set every field from the parameter of
the same name, in field order, stay frozen, and keep replace() and pickling working."""

from __future__ import annotations

import copyreg
import dataclasses
import inspect
import math
import pickle
from typing import Any

import pytest

from agent.control.dispatch import Dispatch
from agent.control.state import ROLE_NONE, ControllerState, IntervalState, RampState, TouState
from agent.live.hub import CycleRecord
from agent.model.plan import Bound, GridControl, PccLimits, Plan
from agent.model.snapshot import MISSING, ClusterSnapshot, Measured, PcsSnapshot, SiteSnapshot
from drivers.reading import Quality

RECORDS = [
    Measured, ClusterSnapshot, PcsSnapshot, SiteSnapshot, Bound, PccLimits, GridControl, Plan, Dispatch,
    ControllerState, RampState, IntervalState, TouState,
]  # fmt: skip


class Token:
    """A distinct object per parameter, so a field set from the wrong parameter shows."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_each_field_comes_from_the_parameter_of_its_name(cls: type[Any]) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    params = list(inspect.signature(cls.__init__).parameters)[1:]
    assert params == names
    args = {n: Token(n) for n in names}
    obj = cls(**args)
    assert {n: getattr(obj, n) for n in names} == args
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, names[0], 1)
    other = dataclasses.replace(obj, **{names[-1]: Token("new")})
    assert getattr(other, names[-1]).name == "new" and getattr(other, names[0]) is args[names[0]]


def test_defaults_are_what_a_caller_leaving_them_out_means() -> None:
    m = Measured(5.0)
    assert (m.value, m.quality, m.age_s) == (5.0, Quality.GOOD, 0.0)
    assert MISSING.quality is Quality.COMM_ERROR and math.isnan(MISSING.value) and MISSING.age_s == math.inf
    c = ClusterSnapshot("c1", "p1", "online", 1.0, m, m, m)  # type: ignore[arg-type]
    assert c.power_w is MISSING and c.cycles is MISSING and c.alarms == 0 and c.switchable is False
    p = PcsSnapshot("p1", ("c1",), "online", 1.0)  # type: ignore[arg-type]
    assert p.power_w is MISSING and p.pcc_active is MISSING and p.grid_control is False
    plan = Plan(1, "auto", 0.0, 0.0, "balance", "r", (), {}, {})
    assert plan.shortfall_w == 0.0 and plan.alarms == () and plan.grid_control is None
    st = ControllerState()
    assert st.interval.key == -1 and st.interval.month == -1 and st.tou.role == ROLE_NONE
    assert math.isnan(st.ramp.t_mono) and math.isnan(st.ramp.grid_w)


def test_records_pickle_to_equal_records_through_the_fast_reducer() -> None:
    b = Bound("reserve", -1.0, 2.0, "why")
    gc = GridControl(1.0, 2.0, 0.0, {"p1": PccLimits(1.0, 3.0, 4.0)})
    plan = Plan(7, "auto", 1.0, 2.0, "demand", "r", (b,), {"p1": 1.0}, {"c1": 1.0}, 1.0, ("a",), gc)
    assert pickle.loads(pickle.dumps(plan, pickle.HIGHEST_PROTOCOL)) == plan
    # through the registered reducer that rebuilds from the fields (the dataclass __getstate__
    # takes ~5 µs an object, in the control process, every cycle)
    for cls in (Measured, ClusterSnapshot, PcsSnapshot, SiteSnapshot, Bound, PccLimits, GridControl, Plan, CycleRecord):
        assert cls in copyreg.dispatch_table, cls.__name__
