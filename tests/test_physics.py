"""Battery plant and site physics: bookkeeping, PCS dynamics, BMS derating, faults, outage."""

from __future__ import annotations

import math
import random

import pytest

from drivers import keys as K
from simulators.load import Offset
from simulators.model import SiteModel
from simulators.physics import (
    ALARM_OTHER,
    ALARM_OVER_TEMP_WARN,
    BatteryPlant,
    Cluster,
    ClusterParams,
    cell_ocv,
)

I_MAX = 0.5 * 418_000 / 1331.2  # 0.5 C of a 314 Ah cluster


def demo_plant(soc: float = 50.0, tau_s: float = 0.1, revert_s: float = 30.0) -> BatteryPlant:
    wiring = {f"pcs{i + 1}": (630_000.0, [f"c{3 * i + j + 1:02d}" for j in range(3)]) for i in range(4)}
    return BatteryPlant.build(wiring, soc_pct=soc, tau_s=tau_s, revert_s=revert_s, seed=1)


class _Const:
    def __init__(self, w: float) -> None:
        self.w = w

    def at(self, t: float) -> float:
        return self.w

    def series(self, start_s: float, n: int, dt: float) -> object:
        raise NotImplementedError  # not used by SiteModel


def test_energy_is_conserved_exactly_over_a_long_run() -> None:
    plant = demo_plant(soc=50.0)
    start = {c.id: c.stored_wh for c in plant.clusters.values()}
    rng = random.Random(7)
    for k in range(20_000):  # ~5.5 h at 1 s with a new random setpoint every minute
        sp = {p: rng.uniform(-700_000, 700_000) for p in plant.pcs} if k % 60 == 0 else None
        plant.step(sp, 1.0)
    eta = 0.96
    for c in plant.clusters.values():
        expected = start[c.id] + c.charged_ac_wh * eta - c.discharged_ac_wh / eta
        assert c.stored_wh == pytest.approx(expected, rel=1e-12, abs=1e-6)
        # losses are exactly what went in minus what came out minus what stayed
        assert c.loss_wh == pytest.approx(
            c.charged_ac_wh - c.discharged_ac_wh - (c.stored_wh - start[c.id]), rel=1e-9, abs=1e-6
        )
        assert c.charged_ac_wh > 100_000 and c.discharged_ac_wh > 100_000  # it really cycled
        assert 0.0 <= c.soc_pct <= 100.0


def test_site_balance_grid_equals_load_minus_pv_minus_battery() -> None:
    plant = demo_plant()
    site = SiteModel(plant, Offset(_Const(3_000_000.0)), pv=_Const(400_000.0))  # type: ignore[arg-type]
    plant.write("pcs1", 500_000.0)
    batt_wh = 0.0
    for _ in range(3600):
        site.step(1.0)
        batt_wh += site.battery_w / 3600.0
        assert site.grid.power_w == pytest.approx(3_000_000.0 - 400_000.0 - site.battery_w)
    assert site.grid.import_wh - site.grid.export_wh == pytest.approx(3_000_000.0 - 400_000.0 - batt_wh)
    assert site.pv_meter.import_wh == pytest.approx(400_000.0)
    assert site.meter_values("grid")[K.FREQUENCY_HZ] == 50.0


def test_pcs_first_order_response_reaches_63_percent_after_one_tau() -> None:
    plant = demo_plant(tau_s=0.1)
    plant.write("pcs1", 300_000.0)
    for _ in range(100):  # one tau in steps of tau/100
        plant.step(None, 0.001)
    assert plant.pcs["pcs1"].power_w == pytest.approx(300_000.0 * (1 - math.exp(-1)), rel=1e-9)
    for _ in range(400):  # five tau: settled within 1 %
        plant.step(None, 0.001)
    assert plant.pcs["pcs1"].power_w == pytest.approx(300_000.0, rel=0.01)
    assert plant.pcs["pcs2"].power_w == 0.0


def test_pcs_clamps_to_rating_and_splits_evenly_over_equal_clusters() -> None:
    plant = demo_plant()
    plant.step({"pcs1": 2_000_000.0}, 1.0)
    plant.step(None, 1.0)
    pcs = plant.pcs["pcs1"]
    assert pcs.power_w == pytest.approx(630_000.0)
    shares = [c.power_w for c in pcs.clusters]
    assert sum(shares) == pytest.approx(630_000.0)
    assert max(shares) - min(shares) < 0.01 * 210_000.0  # equal limits -> near-equal shares


def test_revert_timer_returns_pcs_to_zero_when_the_controller_goes_quiet() -> None:
    plant = demo_plant(revert_s=5.0)
    plant.write("pcs2", 200_000.0)
    for _ in range(50):  # 5.0 s: still within the timer
        plant.step(None, 0.1)
    assert plant.pcs["pcs2"].power_w == pytest.approx(200_000.0)
    for _ in range(20):  # past the timer: falls back to 0 W (tau 0.1 s)
        plant.step(None, 0.1)
    assert plant.pcs["pcs2"].reverted
    assert plant.pcs["pcs2"].setpoint_w == 0.0
    assert abs(plant.pcs["pcs2"].power_w) < 1.0
    plant.step({"pcs2": -100_000.0}, 0.1)  # a new write resumes control
    for _ in range(10):
        plant.step(None, 0.1)
    assert plant.pcs["pcs2"].power_w == pytest.approx(-100_000.0, rel=1e-3)


def test_bms_tapers_limits_near_full_and_empty_and_at_hot_temperature() -> None:
    near_full = Cluster("c", ClusterParams(), soc_pct=96.0, noise=False)
    assert near_full.max_charge_a == pytest.approx(I_MAX * 0.5)  # (1 - 0.96) / (1 - 0.92)
    assert near_full.max_discharge_a == pytest.approx(I_MAX)
    near_empty = Cluster("c", ClusterParams(), soc_pct=4.0, noise=False)
    assert near_empty.max_discharge_a == pytest.approx(I_MAX * 0.5)  # 0.04 / 0.08
    assert near_empty.max_charge_a == pytest.approx(I_MAX)
    assert near_empty.max_discharge_w == pytest.approx(I_MAX * 0.5 * 416 * cell_ocv(0.04))
    hot = Cluster("c", ClusterParams(), soc_pct=50.0, noise=False)
    hot.temp_c = 50.0  # halfway between full (45 C) and zero (55 C) current
    hot.step(0.0, 0.001)
    assert hot.max_discharge_a == pytest.approx(I_MAX * 0.5, rel=1e-3)
    assert hot.alarms() & ALARM_OVER_TEMP_WARN


def test_charging_stops_at_full_without_overshoot() -> None:
    plant = demo_plant(soc=90.0)
    for _ in range(4 * 3600):
        plant.step({p: -630_000.0 for p in plant.pcs}, 1.0)
    for c in plant.clusters.values():
        assert 99.0 < c.soc_pct <= 100.0
        assert c.max_charge_w < 0.15 * I_MAX * 1331.2
    assert plant.step(None, 1.0) > -0.15 * 12 * I_MAX * 1400


def test_cluster_fault_removes_it_from_the_split_and_reports_fault() -> None:
    plant = demo_plant()
    c1 = plant.clusters["c01"]
    c1.fault()
    assert (c1.max_charge_w, c1.max_discharge_w) == (0.0, 0.0)
    m = c1.measure()
    assert m[K.STATE] == K.STATE_FAULT and int(m[K.ALARMS]) & ALARM_OTHER
    for _ in range(20):
        plant.step({"pcs1": 600_000.0}, 0.1)
    assert c1.power_w == 0.0
    healthy = plant.clusters["c02"].max_discharge_w + plant.clusters["c03"].max_discharge_w
    assert plant.pcs["pcs1"].power_w == pytest.approx(min(600_000.0, healthy), rel=1e-3)
    c1.clear_fault()
    assert c1.measure()[K.STATE] in (K.STATE_ONLINE, K.STATE_STANDBY)
    plant.step({"pcs1": 600_000.0}, 0.1)
    assert c1.power_w > 150_000.0


def test_removed_cluster_and_tripped_pcs_carry_nothing() -> None:
    plant = demo_plant()
    plant.clusters["c04"].remove()
    plant.pcs["pcs3"].trip()
    for _ in range(20):
        plant.step({"pcs2": -300_000.0, "pcs3": 300_000.0}, 0.1)
    assert plant.clusters["c04"].power_w == 0.0
    assert plant.pcs["pcs2"].power_w == pytest.approx(-300_000.0, rel=1e-3)
    assert plant.pcs["pcs3"].power_w == 0.0
    assert plant.pcs["pcs3"].state() == K.STATE_FAULT
    plant.pcs["pcs3"].reset()
    plant.clusters["c04"].re_add()
    for _ in range(20):
        plant.step({"pcs3": 300_000.0}, 0.1)
    assert plant.pcs["pcs3"].power_w == pytest.approx(300_000.0, rel=1e-3)
    assert plant.clusters["c04"].power_w != 0.0


def test_grid_outage_battery_carries_the_load_and_reports_unserved() -> None:
    plant = demo_plant()
    load = Offset(_Const(1_000_000.0))  # type: ignore[arg-type]
    site = SiteModel(plant, load)
    site.grid_up = False
    site.step(0.1)
    assert site.battery_w == pytest.approx(1_000_000.0)
    assert site.grid.power_w == 0.0 and site.unserved_w == pytest.approx(0.0, abs=1e-6)
    g = site.meter_values("grid")
    assert (g[K.VOLTAGE_V], g[K.FREQUENCY_HZ]) == (0.0, 0.0)
    load.offset_w = 3_000_000.0  # 4 MW > 4 x 630 kW of PCS rating
    site.step(0.1)
    assert site.battery_w == pytest.approx(4 * 630_000.0)
    assert site.unserved_w == pytest.approx(4_000_000.0 - 4 * 630_000.0)
    site.grid_up = True
    site.step(0.1)
    assert site.unserved_w == 0.0 and site.grid.power_w > 0.0
