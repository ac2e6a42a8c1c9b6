"""The hard grid connection limit (issue 14, item 4): [control] grid_import_limit_w.

The demo fleet (12 x 209 kW = 2.508 MW, 5.016 MWh, floor 20 %), a 4 MW connection."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.control import ControllerState, decide, initial_state
from agent.live.alarm_sync import wanted_alarms
from agent.model.alarms import CATALOGUE
from agent.model.config import load_site
from agent.model.operator import OperatorState
from agent.model.plan import Plan
from common.tomlcheck import ConfigError
from tests.test_config import MINIMAL, write
from tests.test_control_edges import Plant
from tests.test_control_support import CFG, FLAT, NOON, SHANGHAI, TablePrices, fleet, snap

LIMITED = replace(CFG, grid_import_limit_w=4e6)
FULL_W = 12 * 209e3
OP = OperatorState()


def above_floor_j(soc: float) -> float:
    return (soc - 20.0) * 0.01 * 12 * 418e3 * 3600.0 * 0.96


def once(load: float, op: OperatorState = OP, cfg: object = LIMITED, st: ControllerState | None = None) -> Plan:
    assert isinstance(cfg, type(LIMITED))
    s = snap(load)
    return decide(s, st or initial_state(cfg), cfg, op, FLAT, False)[0]


def grid_bound(p: Plan) -> str:
    return next(b.reason for b in p.bounds if b.source == "grid_import_limit")


def test_the_battery_carries_the_import_above_the_limit() -> None:
    p = once(5e6)  # flat tariff: the economic target is to hold; the limit takes 1 MW off the grid
    assert (p.site_setpoint_w, p.decided_by) == (pytest.approx(1e6), "grid_import_limit")
    assert p.alarms == ()
    assert grid_bound(p) == (
        f"grid import held at or below 4000000 W: the battery carries 1000000 W,"
        f" {above_floor_j(50.0) / 1e6:.0f} s left at this draw"
    )
    p = once(3e6)  # under the limit: a fresh start keeps all it may for the limit (limit_reserve.py)
    assert p.site_setpoint_w == pytest.approx(-1e6)  # and recharges at most the 1 MW to spare
    assert next(b for b in p.bounds if b.source == "grid_import_limit").lo_w == pytest.approx(-1e6)
    p = once(1e6, cfg=replace(LIMITED, grid_import_limit_w=4e6))  # 3 MW to spare: more than full charge
    assert all(b.source != "grid_import_limit" for b in p.bounds)


def test_charging_stops_at_the_limit() -> None:
    op = OperatorState(override_w=-2.5e6, override_until=1e9)  # the operator asks for full charge
    p = once(3e6, op)
    assert (p.site_setpoint_w, p.decided_by) == (pytest.approx(-1e6), "grid_import_limit")


def test_alarm_with_the_excess_and_the_time_left_when_the_battery_cannot_carry_it() -> None:
    p = once(8e6)
    assert p.site_setpoint_w == pytest.approx(FULL_W)
    assert p.alarms == ("grid_import_limit",)
    assert "grid_import_limit" in CATALOGUE
    assert grid_bound(p) == (
        f"grid import {8e6 - FULL_W:.0f} W, {4e6 - FULL_W:.0f} W over grid_import_limit_w 4000000 W: the battery"
        f" gives all it may ({FULL_W:.0f} W, limited by device_limits), {above_floor_j(50.0) / FULL_W:.0f} s left"
        " at this draw"
    )


def test_the_limit_sits_above_the_ramp_and_the_operator() -> None:
    cfg = replace(LIMITED, ramp_limit_w_per_s=200e3)
    st = ControllerState()
    s = snap(4.3e6, t_mono=1000.0, t_wall=NOON)
    _, st = decide(s, st, replace(cfg, grid_import_limit_w=0.0), OP, FLAT, False)  # 4.3 MW from the grid
    s = snap(4.3e6, t_mono=1001.0, t_wall=NOON + timedelta(seconds=1))
    p, _ = decide(s, st, cfg, OperatorState(mode="idle"), FLAT, False)  # the limit set: 300 kW at once
    assert (p.site_setpoint_w, p.decided_by) == (pytest.approx(0.3e6), "grid_import_limit")
    assert next(b for b in p.bounds if b.source == "ramp").reason.endswith("forced by grid_import_limit")


def test_the_limit_is_a_validated_config_key(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, MINIMAL + "[control]\ngrid_import_limit_w = 4000000\n"))
    assert site.control.grid_import_limit_w == 4e6
    assert load_site(write(tmp_path, MINIMAL)).control.grid_import_limit_w == 0.0
    with pytest.raises(ConfigError, match="grid_import_limit_w"):
        load_site(write(tmp_path, MINIMAL + "[control]\ngrid_import_limit_w = -1\n"))


@settings(max_examples=100, deadline=None)
@given(
    soc=st.sampled_from([20.2, 35.0, 60.0, 94.0]),
    loads=st.lists(st.floats(0.5e6, 8e6), min_size=1, max_size=30),
    ramp=st.sampled_from([0.0, 200e3]),
)
def test_import_never_above_the_limit_while_the_battery_can_carry_it(
    soc: float, loads: list[float], ramp: float
) -> None:
    """Every cycle: the import is at or below the limit, or the battery gives all it may and the
    alarm says so."""
    plant = Plant(soc, 0.0, replace(LIMITED, ramp_limit_w_per_s=ramp))
    for load in loads:
        p = plant.cycle(load, OP, prices=SHANGHAI)
        grid = load - p.site_setpoint_w
        if grid > 4e6 + 1e-3:
            assert p.alarms == ("grid_import_limit",)
            held = next(b for b in p.bounds if b.source == "grid_import_limit")
            assert p.site_setpoint_w == pytest.approx(held.hi_w)
        else:
            assert "grid_import_limit" not in p.alarms


def test_the_alarm_message_is_the_bound_with_the_time_left() -> None:
    p = once(8e6)
    wanted = wanted_alarms(snap(8e6), p, (), frozenset(), {})
    assert wanted["grid_import_limit@control"] == ("grid_import_limit", "control", grid_bound(p))
    assert "s left at this draw" in wanted["grid_import_limit@control"][2]


def test_arbitrage_keeps_the_energy_the_limit_needs_later_today() -> None:
    # 10:45, 15 min of morning peak price left, 95 % full, no demand charge: arbitrage discharges.
    # Yesterday's profile says 18:00-21:00 averages 6 MW: 3 h x 2 MW over a 4 MW connection is
    # 6 MWh / 0.96, more than the fleet holds above its floor, so with the limit it keeps it all.
    prices = TablePrices(SHANGHAI.table, rate=0.0)
    profile = [3e6] * 96
    profile[72:84] = [6e6] * 12
    cl, pcs = fleet(soc=95.0)
    s = snap(3e6, t_wall=NOON.replace(hour=10, minute=45), clusters=cl, pcs=pcs)
    free, _ = decide(s, initial_state(CFG, profile=profile), CFG, OP, prices, False)
    assert free.site_setpoint_w == pytest.approx(FULL_W)  # at the fleet limit (device_limits)
    held, _ = decide(s, initial_state(LIMITED, profile=profile), LIMITED, OP, prices, False)
    assert (held.decided_by, held.site_setpoint_w) == ("tou_discharge", 0.0)
