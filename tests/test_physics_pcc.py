"""PCS grid-power (PCC) control in the physics: the local loop on the site meter, shares, limits, revert."""

from __future__ import annotations

import itertools

import pytest

from drivers import keys as K
from simulators.physics import BatteryPlant, PccCommand, PcsParams
from tests.test_physics import demo_plant

DT = 0.1


def pcc_plant(revert_s: float = 30.0) -> BatteryPlant:
    return demo_plant(revert_s=revert_s)


def cmd(target: float, share: float = 0.25, ramp: float = 150e3, dis: float = 630e3, chg: float = 630e3,
        floor: float = 0.0) -> PccCommand:  # fmt: skip
    return PccCommand(target, ramp, share, dis, chg, floor)


def run(plant: BatteryPlant, net: float, seconds: float) -> list[float]:
    """Grid import (mean over each 0.1 s step) while the net load is `net`."""
    out = []
    for _ in range(round(seconds / DT)):
        out.append(net - plant.step(None, DT, net_w=net))
    return out


def test_the_pcs_absorb_a_load_step_within_a_fraction_of_a_second_without_overshoot() -> None:
    plant = pcc_plant()
    for pid in plant.pcs:
        plant.write_pcc(pid, cmd(1e6))
    assert run(plant, 1e6, 1.0)[-1] == pytest.approx(1e6)
    grid = run(plant, 1.5e6, 1.0)  # +500 kW at once; the target stays where it was
    assert grid[0] - 1e6 < 0.6 * 500e3  # the first 0.1 s already takes about half of it
    assert abs(grid[3] - 1e6) < 1_000.0  # gone within 0.4 s
    assert min(grid) >= 1e6 - 1.0  # critically damped: it never swings below the target
    assert sum(p.power_w for p in plant.pcs.values()) == pytest.approx(500e3, rel=1e-3)


def test_the_reference_moves_toward_a_new_target_at_the_ramp() -> None:
    plant = pcc_plant()
    for pid in plant.pcs:
        plant.write_pcc(pid, cmd(1e6))
    run(plant, 1e6, 0.5)
    run(plant, 2e6, 0.5)  # the PCS hold 1 MW
    for pid in plant.pcs:
        plant.write_pcc(pid, cmd(2e6))  # the agent: return the load to the grid
    grid = run(plant, 2e6, 8.0)
    slopes = [(b - a) / DT for a, b in itertools.pairwise(grid)]
    assert max(slopes) <= 150e3 * 1.02
    assert grid[-1] == pytest.approx(2e6, abs=1_000.0)  # 1 MW at 150 kW/s: 6.7 s
    assert abs(sum(p.power_w for p in plant.pcs.values())) < 2_000.0


def test_shares_split_the_correction_and_a_limited_pcs_leaves_the_rest_to_the_others() -> None:
    plant = pcc_plant()
    shares = {"pcs1": 0.4, "pcs2": 0.3, "pcs3": 0.2, "pcs4": 0.1}
    for pid, s in shares.items():
        plant.write_pcc(pid, cmd(1e6, share=s, dis=100e3 if pid == "pcs1" else 630e3))
    run(plant, 1e6, 0.5)
    grid = run(plant, 1.6e6, 3.0)
    assert grid[-1] == pytest.approx(1e6, abs=1_000.0)  # the grid is held all the same
    p = {pid: plant.pcs[pid].power_w for pid in shares}
    assert 90e3 < p["pcs1"] <= 100e3 + 1e-6  # up to its window, never beyond
    assert p["pcs2"] / p["pcs4"] == pytest.approx(3.0, rel=0.05)  # the others keep their ratio
    assert sum(p.values()) == pytest.approx(600e3, rel=1e-3)


def test_no_export_floor_holds_the_grid_at_or_above_zero() -> None:
    plant = pcc_plant()
    for pid in plant.pcs:
        plant.write_pcc(pid, cmd(-500e3, ramp=1e6, floor=0.0))  # a target below the floor is not followed
    grid = run(plant, 800e3, 3.0)
    assert grid[-1] == pytest.approx(0.0, abs=1_000.0)
    grid = run(plant, 300e3, 2.0)  # the load drops: a short dip below 0, then back at the floor
    assert grid[-1] == pytest.approx(0.0, abs=1_000.0)
    assert sum(p.power_w for p in plant.pcs.values()) == pytest.approx(300e3, rel=1e-2)


def test_quiet_controller_the_pcs_leave_the_mode_and_go_to_zero() -> None:
    plant = pcc_plant(revert_s=3.0)
    for pid in plant.pcs:
        plant.write_pcc(pid, cmd(1e6))
    run(plant, 1e6, 0.2)
    run(plant, 1.4e6, 2.5)  # within the timer: still holding 1 MW
    assert all(p.pcc_on for p in plant.pcs.values())
    assert sum(p.power_w for p in plant.pcs.values()) == pytest.approx(400e3, rel=1e-2)
    grid = run(plant, 1.4e6, 1.5)  # past the timer
    assert not any(p.pcc_on for p in plant.pcs.values())
    assert all(p.reverted and abs(p.power_w) < 100.0 for p in plant.pcs.values())
    assert grid[-1] == pytest.approx(1.4e6, abs=500.0)
    assert plant.pcs["pcs1"].measure(plant.t, 400.0, 50.0)[K.PCC_ACTIVE] == 0


def test_leaving_the_mode_holds_the_output_until_a_setpoint_is_written() -> None:
    plant = pcc_plant()
    for pid in plant.pcs:
        plant.write_pcc(pid, cmd(1e6))
    run(plant, 1e6, 0.2)
    run(plant, 1.4e6, 1.0)
    plant.write_pcc("pcs1", None)
    p1 = plant.pcs["pcs1"].power_w
    run(plant, 1.4e6, 0.5)
    assert plant.pcs["pcs1"].power_w == pytest.approx(p1, rel=1e-6)  # bumpless
    plant.step({"pcs1": 0.0}, DT, net_w=1.4e6)
    run(plant, 1.4e6, 1.0)
    assert abs(plant.pcs["pcs1"].power_w) < 100.0
    assert sum(p.power_w for p in plant.pcs.values()) == pytest.approx(400e3, rel=1e-2)  # the others took it


def test_setpoint_mode_is_unchanged_by_the_meter_input() -> None:
    a, b = demo_plant(), demo_plant()
    for k in range(30):
        sp = {"pcs1": 100e3 * (k % 3), "pcs2": -50e3} if k % 5 == 0 else None
        assert a.step(sp, DT) == b.step(sp, DT, net_w=2e6)


def test_the_default_gain_is_critically_damped_for_the_lag_and_sample() -> None:
    p = PcsParams(630e3, tau_s=0.1, pcc_sample_s=0.02)
    g = p.pcc_loop_gain(0.02) * (1 - 2.718281828459045 ** (-0.02 / 0.1))
    assert g == pytest.approx(0.25)
    assert PcsParams(630e3, pcc_gain=1.0).pcc_loop_gain(0.02) == 1.0
    with pytest.raises(ValueError, match="pcs pcs1: pcc"):
        demo_plant().write_pcc("pcs1", cmd(1e6, share=1.5))
