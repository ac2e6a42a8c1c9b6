"""Measurements stay measurements (issue 12, item 3): an operator's derate and the PCC latch are
inputs of decide(), shown in the plan as bounds with their reason; the snapshot keeps what the
devices reported; the offline replay honours a derate."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from agent.control import decide, initial_state
from agent.model.operator import OperatorState
from agent.offline.replay import Trace, replay
from tests.test_analyze import MIDNIGHT, demo, flat_tariff
from tests.test_control_pcc import RAMP_CFG, pcc_fleet
from tests.test_control_support import CFG, FLAT, fleet, snap

DISCHARGE = OperatorState(override_w=3e6, override_until=2000.0)  # more than the fleet can give


@pytest.mark.parametrize(
    ("derate", "allowed_w", "pcs2_w", "why"),
    [
        # c05 at 70 % caps pcs2 (c04-c06): 3 x 146.3 kW; the other PCS keep 627 kW each
        ((("c05", 70.0),), 3 * 627e3 + 3 * 0.7 * 209e3, 3 * 0.7 * 209e3, "operator derate: pcs2 at 70 %"),
        # two clusters behind one PCS: the lower factor; and a second PCS
        (
            (("c04", 80.0), ("c06", 50.0), ("c10", 90.0)),
            2 * 627e3 + 3 * 0.5 * 209e3 + 3 * 0.9 * 209e3,
            3 * 0.5 * 209e3,
            "operator derate: pcs2 at 50 %, pcs4 at 90 %",
        ),
    ],
)
def test_a_derate_is_a_bound_under_the_bms_limits(
    derate: tuple[tuple[str, float], ...], allowed_w: float, pcs2_w: float, why: str
) -> None:
    cl, pcs = fleet(soc=80.0)
    s = snap(5e6, clusters=cl, pcs=pcs)
    p, _ = decide(s, initial_state(CFG), CFG, replace(DISCHARGE, derate=derate), FLAT, True)
    assert [(b.source, b.hi_w) for b in p.bounds[:2]] == [("device_limits", 12 * 209e3), ("derate", allowed_w)]
    assert p.bounds[1].reason == why and p.decided_by == "derate"
    assert p.site_setpoint_w == pytest.approx(allowed_w)
    assert p.pcs_setpoints_w["pcs2"] == pytest.approx(pcs2_w)
    assert p.allowed_limits_w is not None
    assert p.allowed_limits_w["c05"] == pytest.approx((pcs2_w / 3, pcs2_w / 3))
    assert "c01" not in p.allowed_limits_w  # its PCS is not derated: the agent allows the BMS limits
    assert s.cluster("c05").max_discharge_w.value == 209e3  # type: ignore[union-attr]  # as the BMS said


def test_without_a_derate_the_plan_has_the_bms_limits_only() -> None:
    cl, pcs = fleet(soc=80.0)
    p, _ = decide(snap(5e6, clusters=cl, pcs=pcs), initial_state(CFG), CFG, DISCHARGE, FLAT, True)
    assert [b.source for b in p.bounds] == ["device_limits"] and p.allowed_limits_w is None
    assert p.site_setpoint_w == pytest.approx(12 * 209e3)


def test_a_latched_pcs_follows_its_setpoint_and_the_plan_says_why() -> None:
    cl, pcs = pcc_fleet()
    s = snap(3e6, clusters=cl, pcs=pcs)
    p, _ = decide(s, initial_state(RAMP_CFG), RAMP_CFG, OperatorState(), FLAT, False, pcc_off=frozenset({"pcs2"}))
    assert p.grid_control is not None and set(p.grid_control.pcs) == {"pcs1", "pcs3", "pcs4"}
    latch = [b for b in p.bounds if b.source == "pcc_latch"]
    assert len(latch) == 1 and latch[0].reason.startswith("pcs2: out of grid-power control")
    assert all(q.grid_control for q in s.pcs)  # the snapshot still says what the site file configured


def test_the_replay_honours_a_derate() -> None:
    # an hour asking 3 MW of discharge, more than the fleet at 80 % gives: every PCS at its 630 kW
    # rating; the operator's derate of c01 (50 %) halves what pcs1's three clusters may give
    ts = MIDNIGHT + np.arange(3600, dtype=np.float64)
    load = np.full(3600, 4e6)
    site = demo(12, tou_enabled=False)
    op = replace(DISCHARGE, override_until=MIDNIGHT + 1e6)
    free = replay(site, flat_tariff(), Trace(ts, load), start_soc_pct=80.0, op=op, seed_profile=False)
    derated = replace(op, derate=(("c01", 50.0),))
    capped = replay(site, flat_tariff(), Trace(ts, load), start_soc_pct=80.0, op=derated, seed_profile=False)
    assert free.decided_by == {"device_limits": 3600} and capped.decided_by == {"derate": 3600}
    assert float(np.max(free.battery_w)) == pytest.approx(4 * 630e3)
    # pcs1 gives half its clusters' BMS limits (> 630 kW in all at this SoC) instead of 630 kW
    assert 3 * 630e3 + 0.5 * 630e3 < float(np.max(capped.battery_w)) < 3 * 630e3 + 0.5 * 3 * 250e3


def test_clusters_in_maintenance_are_named_in_the_plan() -> None:
    cl, pcs = fleet(soc=80.0)
    op = replace(DISCHARGE, maintenance=frozenset({"c05", "c01", "c99"}))
    p, _ = decide(snap(5e6, clusters=cl, pcs=pcs), initial_state(CFG), CFG, op, FLAT, True)
    held = [b for b in p.bounds if b.source == "maintenance"]
    assert [b.reason for b in held] == ["c01, c05 held in maintenance: never commanded"]
    assert p.cluster_setpoints_w["c01"] == p.cluster_setpoints_w["c05"] == 0.0
    assert p.site_setpoint_w == pytest.approx(10 * 209e3)  # pcs1 and pcs2: two clusters each


def test_the_api_and_telemetry_show_the_bms_limit_and_the_limit_the_agent_allows() -> None:
    from agent.api.views import clusters_out
    from agent.live.hub import CycleRecord
    from agent.telemetry.schema import points_for

    cl, pcs = fleet(soc=80.0)
    s = snap(5e6, clusters=cl, pcs=pcs)
    op = replace(DISCHARGE, derate=(("c05", 70.0),))  # pcs2 (c04-c06) at 70 %
    p, _ = decide(s, initial_state(CFG), CFG, op, FLAT, True)
    rec = CycleRecord(snapshot=s, plan=p, cycle_ms=1.0, poll_ms=0.5, write_ms=0.5, overruns=0)
    api = {c.id: c for c in clusters_out(rec, op)}
    assert (api["c05"].max_discharge_w, api["c05"].allowed_discharge_w) == (209e3, pytest.approx(0.7 * 209e3))
    assert (api["c05"].max_charge_w, api["c05"].allowed_charge_w) == (209e3, pytest.approx(0.7 * 209e3))
    assert (api["c01"].max_discharge_w, api["c01"].allowed_discharge_w) == (209e3, 209e3)  # not derated
    tel = {dict(pt.tags)["cluster"]: pt.fields for pt in points_for(rec, "site") if pt.measurement == "cluster"}
    assert tel["c05"]["max_discharge_w"] == 209e3
    assert tel["c05"]["allowed_discharge_w"] == pytest.approx(0.7 * 209e3)
    assert tel["c01"]["allowed_discharge_w"] == 209e3
