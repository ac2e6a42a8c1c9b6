"""The dispatch plan's read-outs with values checked by hand: GET /api/plan's body (plan_view) and the
telemetry fields of the plan the cycle tracked."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np

from agent.control.schedule import DispatchPlan
from agent.live.hub import CycleRecord, Hub, PlanTarget
from agent.live.plan_view import SHOWN_S, plan_view
from agent.telemetry.schema import points_for
from tests.fakes import Cycles

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)  # 16:00 in Shanghai


def a_plan(n: int = 100, start: float = 1_764_576_000.0) -> DispatchPlan:
    k = np.arange(n, dtype=np.float64)
    return DispatchPlan(
        made_s=start + 300.0,
        start_s=start,
        step_s=900.0,
        battery_w=100_000.0 * k,
        grid_w=4_000_000.0 - 100_000.0 * k,
        grid_cap_w=np.where(k == 1, math.inf, 3_000_000.0 + k),
        soc0_pct=50.0,
        soc_pct=50.0 + 0.25 * k,
        price=np.full(n, 0.662376),
        objective=0.0,
        solve_s=0.0125,
    )


def test_the_view_shows_the_next_24_h_from_the_running_slot() -> None:
    p = a_plan()
    now = p.start_s + 2 * 900.0 + 450.0  # half way through slot 2
    v = plan_view(p, now, TZ, {"reason": "new interval"})
    assert v["status"] == "plan" and v["reason"] == "new interval"
    assert v["age_s"] == 2 * 900.0 + 450.0 - 300.0 and v["solve_ms"] == 12.5 and v["step_s"] == 900.0
    # the SoC half way between the end of slot 1 (50.25 %) and the end of slot 2 (50.5 %)
    assert v["running"] == {"soc_pct": 50.375, "grid_cap_w": 3_000_002.0}
    slots = v["slots"]
    assert len(slots) == int(SHOWN_S / 900.0) == 96
    assert slots[0] == {
        "start": datetime.fromtimestamp(p.start_s + 1800.0, TZ).isoformat(),
        "t": p.start_s + 1800.0,
        "soc_pct": 50.5,
        "grid_cap_w": 3_000_002.0,
        "price": 0.662376,
        "battery_w": 200_000.0,
        "grid_w": 3_800_000.0,
    }
    assert slots[-1]["t"] == p.start_s + 97 * 900.0  # 96 slots from slot 2
    # past the plan's end it shows what is left
    assert len(plan_view(p, p.start_s + 10 * 900.0, TZ, {})["slots"]) == 90


def test_no_cap_is_null_not_infinity() -> None:
    p = a_plan()
    v = plan_view(p, p.start_s + 900.0, TZ, {})
    assert v["slots"][0]["grid_cap_w"] is None and v["running"]["grid_cap_w"] is None


def test_no_plan_is_said_with_its_reason() -> None:
    v = plan_view(None, 0.0, TZ, {"reason": "none: cold start", "version": 3})
    assert v == {"status": "none", "reason": "none: cold start", "version": 3, "slots": []}


def test_telemetry_carries_the_tracked_plan(make_hub: Callable[..., Hub]) -> None:
    rec = Cycles(make_hub(), T0).next()

    def plan_fields(r: CycleRecord) -> dict[str, float]:
        pts = points_for(r, "demo")
        site_plan = [p for p in pts if p.measurement == "plan" and dict(p.tags) == {"site": "demo"}]
        assert len(site_plan) == 1
        return site_plan[0].fields

    assert "planned_soc_pct" not in plan_fields(rec) and "planned_grid_cap_w" not in plan_fields(rec)
    tracked = plan_fields(replace(rec, planned=PlanTarget(61.5, 3_200_000.0)))
    assert tracked["planned_soc_pct"] == 61.5 and tracked["planned_grid_cap_w"] == 3_200_000.0
    uncapped = plan_fields(replace(rec, planned=PlanTarget(61.5, math.inf)))
    assert uncapped["planned_soc_pct"] == 61.5 and "planned_grid_cap_w" not in uncapped
