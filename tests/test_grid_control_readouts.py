"""Operators see what PCS in grid-power (PCC) control were told: API site view, MQTT plan, telemetry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.api.views import pcs_list_out, site_out
from agent.control.ramp import PCC_RAMP_FRACTION
from agent.live.hub import CycleRecord
from agent.model.operator import OperatorState
from agent.model.snapshot import Measured
from agent.mqtt.topics import plan_payload
from agent.telemetry.schema import points_for
from tests.test_control_pcc import pcc_fleet, run
from tests.test_control_support import fleet, snap


def record(grid_control: bool) -> CycleRecord:
    cl, pcs = pcc_fleet() if grid_control else fleet()
    # the battery 1.254 MW off its plan (0 W at a flat price): half its window, half the full ramp
    s = snap(3e6, battery=1.254e6, clusters=cl, pcs=pcs)
    plan, _ = run(s)
    return CycleRecord(s, plan, 10.0, 5.0, 2.0, 0)


def main_plan_fields(rec: CycleRecord) -> dict[str, float]:
    pts = points_for(rec, "demo")
    return next(dict(p.fields) for p in pts if p.measurement == "plan" and "bound" not in dict(p.tags))


def test_the_grid_target_and_ramp_are_shown_where_operators_look() -> None:
    rec = record(grid_control=True)
    gc = rec.plan.grid_control
    assert gc is not None
    ramp = 200_000.0 * PCC_RAMP_FRACTION * 0.5
    assert gc.ramp_w_per_s == pytest.approx(ramp)
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


def test_the_pcs_view_shows_which_pcs_regulate_the_grid_and_what_their_meters_read() -> None:
    rec = record(grid_control=True)
    pcs = tuple(
        replace(p, pcc_active=Measured(1.0), pcc_grid_w=Measured(2.9e6)) if p.id != "pcs4" else p
        for p in rec.snapshot.pcs
    )
    rec = replace(rec, snapshot=replace(rec.snapshot, pcs=pcs))
    out = {p.id: p for p in pcs_list_out(rec)}
    assert all(p.grid_control for p in out.values())  # the plan put all four in the mode
    assert (out["pcs1"].pcc_active, out["pcs1"].pcc_grid_w) == (True, 2.9e6)
    assert (out["pcs4"].pcc_active, out["pcs4"].pcc_grid_w) == (None, None)  # its read-back is missing
    plain = {p.id: p for p in pcs_list_out(record(grid_control=False))}
    assert not any(p.grid_control for p in plain.values())
    assert all(p.pcc_active is None and p.pcc_grid_w is None for p in plain.values())
