"""Operators see what PCS in grid-power (PCC) control were told: API site view, MQTT plan, telemetry."""

from __future__ import annotations

import pytest

from agent.api.views import site_out
from agent.control.ramp import PCC_RAMP_FRACTION
from agent.hub import CycleRecord
from agent.mqtt.topics import plan_payload
from agent.operator import OperatorState
from agent.telemetry.schema import points_for
from tests.test_control_pcc import pcc_fleet, run
from tests.test_control_support import fleet, snap


def record(grid_control: bool) -> CycleRecord:
    cl, pcs = pcc_fleet() if grid_control else fleet()
    s = snap(3e6, clusters=cl, pcs=pcs)
    plan, _ = run(s)
    return CycleRecord(s, plan, 10.0, 5.0, 2.0, 0)


def main_plan_fields(rec: CycleRecord) -> dict[str, float]:
    pts = points_for(rec, "demo")
    return next(dict(p.fields) for p in pts if p.measurement == "plan" and "bound" not in dict(p.tags))


def test_the_grid_target_and_ramp_are_shown_where_operators_look() -> None:
    rec = record(grid_control=True)
    gc = rec.plan.grid_control
    assert gc is not None
    ramp = 200_000.0 * PCC_RAMP_FRACTION
    site = site_out(rec, OperatorState(), [])
    assert site.grid_target_w == pytest.approx(gc.target_w)
    assert site.grid_target_w == pytest.approx(3e6 - rec.plan.site_setpoint_w)
    assert site.grid_ramp_w_per_s == pytest.approx(ramp)
    mqtt = plan_payload(rec.plan, rec.snapshot.t_wall)["grid_control"]
    assert mqtt["target_w"] == pytest.approx(gc.target_w)
    assert mqtt["ramp_w_per_s"] == pytest.approx(ramp)
    assert mqtt["grid_min_w"] == 0.0
    assert set(mqtt["pcs"]) == {"pcs1", "pcs2", "pcs3", "pcs4"}
    assert sum(v["share"] for v in mqtt["pcs"].values()) == pytest.approx(1.0)
    fields = main_plan_fields(rec)
    assert fields["grid_target_w"] == pytest.approx(gc.target_w)
    assert fields["grid_ramp_w_per_s"] == pytest.approx(ramp)


def test_with_setpoints_only_there_is_no_grid_target() -> None:
    rec = record(grid_control=False)
    assert rec.plan.grid_control is None
    site = site_out(rec, OperatorState(), [])
    assert site.grid_target_w is None and site.grid_ramp_w_per_s is None
    assert plan_payload(rec.plan, rec.snapshot.t_wall)["grid_control"] is None
    fields = main_plan_fields(rec)
    assert "grid_target_w" not in fields and "grid_ramp_w_per_s" not in fields
