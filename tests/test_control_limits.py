"""Safety bounds 1-4 in decide(): device limits, grid-outage backup, reserve/SoC window, no export,
and the failsafe on bad measurements. Exact watts on the demo site (12 x 209 kW behind 4 x 630 kW)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agent.control import decide, initial_state, reserve_floor_pct
from agent.model.config import ControlConfig
from agent.model.operator import OperatorState
from agent.model.plan import Plan
from agent.model.snapshot import Measured
from drivers.reading import Quality
from tests.test_control_support import CFG, FLAT, fleet, snap

RESERVE_CFG = replace(CFG, reserve_load_w=300_000.0, reserve_minutes=15.0)


def override(w: float) -> OperatorState:
    return OperatorState(override_w=w, override_until=1e9)


def run(s: object, cfg: ControlConfig = CFG, op: OperatorState | None = None, export: bool = False) -> Plan:
    plan, _ = decide(s, initial_state(cfg), cfg, op or OperatorState(), FLAT, export)  # type: ignore[arg-type]
    return plan


def test_reserve_floor_is_energy_over_the_trusted_fleet() -> None:
    # 300 kW x 15 min / 0.96 = 78.125 kWh of 5016 kWh = 1.557516 % on top of soc_min 20 %
    assert reserve_floor_pct(RESERVE_CFG, OperatorState(), 5_016_000.0) == pytest.approx(21.557516, abs=1e-6)
    # the operator's SetReserve wins over the site file
    op = OperatorState(reserve_load_w=0.0, reserve_minutes=0.0)
    assert reserve_floor_pct(RESERVE_CFG, op, 5_016_000.0) == 20.0
    # half the fleet: the same energy is twice the share
    assert reserve_floor_pct(RESERVE_CFG, OperatorState(), 2_508_000.0) == pytest.approx(23.115032, abs=1e-6)


@pytest.mark.parametrize(
    ("rated", "dis", "expected_hi"),
    [
        (630_000.0, 209_000.0, 2_508_000.0),  # 3 x 209 kW < 630 kW: BMS limits bind
        (400_000.0, 209_000.0, 1_600_000.0),  # PCS rating binds: 4 x 400 kW
        (630_000.0, 50_000.0, 600_000.0),  # derated BMS: 12 x 50 kW
    ],
)
def test_device_limits_cap_an_override(rated: float, dis: float, expected_hi: float) -> None:
    cl, pcs = fleet(dis=dis, rated=rated)
    p = run(snap(5e6, clusters=cl, pcs=pcs), op=override(3e6))
    assert p.bounds[0].source == "device_limits"
    assert p.bounds[0].hi_w == pytest.approx(expected_hi)
    assert p.site_setpoint_w == pytest.approx(expected_hi)
    assert p.decided_by == "device_limits"
    assert p.mode == "manual"


def test_no_discharge_at_the_reserve_floor_while_grid_is_up() -> None:
    cl, pcs = fleet(soc=21.5)  # below the 21.56 % floor
    p = run(snap(5e6, clusters=cl, pcs=pcs), cfg=RESERVE_CFG, op=override(1e6))
    assert p.site_setpoint_w == 0.0
    assert p.decided_by == "reserve"
    assert all(w == 0.0 for w in p.cluster_setpoints_w.values())


def test_no_charge_above_soc_max() -> None:
    cl, pcs = fleet(soc=95.0)
    p = run(snap(5e6, clusters=cl, pcs=pcs), op=override(-1e6))
    assert p.site_setpoint_w == 0.0
    assert p.decided_by == "reserve"


def test_outage_uses_the_reserve_to_carry_the_load() -> None:
    cl, pcs = fleet(soc=21.0)
    p = run(snap(1e6, clusters=cl, pcs=pcs, grid_up=False), cfg=RESERVE_CFG)
    assert p.mode == "outage"
    assert p.site_setpoint_w == pytest.approx(1e6)
    assert p.decided_by == "outage"
    assert "grid_outage_backup" in p.alarms


def test_outage_beyond_the_fleet_reports_a_shortfall_alarm() -> None:
    p = run(snap(3e6, grid_up=False))
    assert p.site_setpoint_w == pytest.approx(2_508_000.0)
    assert p.decided_by == "device_limits"
    assert "backup_shortfall" in p.alarms


@pytest.mark.parametrize(
    ("load", "pv", "wish", "export", "expected", "by"),
    [
        (500e3, 200e3, 1e6, False, 300e3, "no_export"),  # discharge <= load - pv
        (500e3, 200e3, 1e6, True, 1e6, "override"),  # export allowed by the site
        (100e3, 400e3, 0.0, False, -300e3, "no_export"),  # PV surplus must be absorbed
        (100e3, 4e6, 0.0, False, -2_508_000.0, "device_limits"),  # cannot absorb it all: best effort
    ],
)
def test_no_export_unless_allowed(
    load: float, pv: float, wish: float, export: bool, expected: float, by: str
) -> None:
    p = run(snap(load, pv=pv), op=override(wish), export=export)
    assert p.site_setpoint_w == pytest.approx(expected)
    assert p.decided_by == by
    if pv == 4e6:
        assert "export_unavoidable" in p.alarms


@pytest.mark.parametrize(
    "bad",
    [
        {"grid": Measured.missing()},
        {"grid": Measured(float("nan"), Quality.GOOD)},
        {"load_m": Measured(5e6, Quality.STALE, 10.0)},
    ],
)
def test_bad_measurement_goes_conservative_with_an_alarm(bad: dict[str, Measured]) -> None:
    p = run(snap(5e6, **bad), op=OperatorState())  # type: ignore[arg-type]
    assert p.mode == "conservative"
    assert p.site_setpoint_w == 0.0
    assert p.decided_by == "failsafe"
    assert "measurement_invalid" in p.alarms


def test_unknown_load_forbids_discharge_even_for_an_override() -> None:
    p = run(snap(5e6, load_m=Measured.missing()), op=override(1e6))
    assert p.site_setpoint_w == 0.0
    assert p.mode == "conservative"


def test_no_trusted_battery_gives_zero_everywhere_and_an_alarm() -> None:
    cl, pcs = fleet()
    pcs = tuple(replace(p, status=type(p.status)("offline")) for p in pcs)
    p = run(snap(5e6, clusters=cl, pcs=pcs), op=override(1e6))
    assert p.site_setpoint_w == 0.0
    assert set(p.pcs_setpoints_w.values()) == {0.0}
    assert "no_battery_available" in p.alarms
