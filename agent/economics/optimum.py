"""Perfect-foresight optimum: the cheapest battery schedule for a known load, as a linear programme.

Per step k (length h, the series' step, at most the tariff's demand interval): charge c_k >= 0
and discharge d_k >= 0 (AC side, W), stored energy e_k (Wh, end of step), and one peak variable
P per (billing month, demand charge). Grid import g_k = load_k - d_k + c_k.

    minimise  sum_k price_k h g_k / 1000                      energy
            + sum_(m,j) rate_j P_mj / 1000                    demand (per kW-month)
            + deg h sum_k d_k / 1000                           degradation
    s.t.      g_k >= 0                                         no export
              e_k = e_(k-1) + h (eta_c c_k - d_k / eta_d)      e_(-1) = start, e_(N-1) = end
              soc_min <= e_k <= soc_max,  c_k, d_k <= power
              P_mj >= mean of g over each demand interval of month m in charge j's window

Built and solved by battery_lp.py (HiGHS through scipy.optimize.linprog), shared with the
planner. Capacity and fixed charges do not depend on the schedule; they are in the returned bill,
not in the objective. The load must be >= 0 (net of
any PV): with export forbidden, surplus PV has nowhere to go in this model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.economics.battery_lp import Storage, demand_layout, solve_battery_lp
from agent.economics.billing import Bill, bill
from agent.economics.tariff import FloatArray, Tariff, factorize


@dataclass(frozen=True, slots=True)
class BatterySpec:
    energy_wh: float  # nameplate
    power_w: float  # charge and discharge limit at the AC side
    charge_efficiency: float = 0.96  # AC -> stored
    discharge_efficiency: float = 0.96  # stored -> AC
    soc_min_pct: float = 0.0
    soc_max_pct: float = 100.0
    start_soc_pct: float = 50.0
    end_soc_pct: float = 50.0
    degradation_cost_per_kwh: float = 0.0  # currency per kWh discharged (AC)


@dataclass(frozen=True, slots=True)
class OptimumResult:
    objective: float  # energy + demand + degradation (currency)
    bill: Bill  # the optimal grid series billed (includes capacity and fixed charges)
    baseline_bill: Bill  # the load billed as if there were no battery
    degradation_cost: float
    timestamps: FloatArray  # step starts (Unix s)
    grid_w: FloatArray
    battery_w: FloatArray  # positive = discharge
    soc_wh: FloatArray  # stored energy at the end of each step
    solve_s: float

    @property
    def savings(self) -> float:
        return self.baseline_bill.total - self.bill.total - self.degradation_cost


class OptimumError(RuntimeError):
    """The programme could not be solved (infeasible inputs, solver failure)."""


def optimum(timestamps: npt.ArrayLike, load_w: npt.ArrayLike, tariff: Tariff, bat: BatterySpec) -> OptimumResult:
    """Cheapest schedule for a load series given at a uniform step (Unix s, W averages per step)."""
    ts = np.asarray(timestamps, dtype=np.float64)
    load = np.asarray(load_w, dtype=np.float64)
    n = len(ts)
    if n == 0 or load.shape != ts.shape:
        raise ValueError(f"timestamps ({ts.shape}) and load_w ({load.shape}) must be non-empty and equal")
    if not np.all(np.isfinite(load)) or np.any(load < 0):
        raise ValueError("load_w must be finite and >= 0 (net of PV; export is not modelled)")
    step = float(ts[1] - ts[0]) if n > 1 else tariff.demand_interval_s
    if n > 1 and not np.allclose(np.diff(ts), step):
        raise ValueError("timestamps must be uniformly spaced (resample first)")
    length = tariff.demand_interval_s
    if step > length or length % step:
        raise ValueError(f"step {step:g} s must divide the tariff's demand interval ({length:g} s)")
    if not 0 <= bat.soc_min_pct <= bat.start_soc_pct <= bat.soc_max_pct <= 100:
        raise ValueError("battery: need 0 <= soc_min_pct <= start_soc_pct <= soc_max_pct <= 100")
    if not bat.soc_min_pct <= bat.end_soc_pct <= bat.soc_max_pct:
        raise ValueError("battery: end_soc_pct must lie within [soc_min_pct, soc_max_pct]")
    h = step / 3600.0
    e_min, e_max = bat.soc_min_pct / 100 * bat.energy_wh, bat.soc_max_pct / 100 * bat.energy_wh
    e0, e_end = bat.start_soc_pct / 100 * bat.energy_wh, bat.end_soc_pct / 100 * bat.energy_wh
    price = tariff.energy_prices(ts)
    layout = demand_layout(ts, tariff)
    storage = Storage(
        power_w=bat.power_w,
        eta_c=bat.charge_efficiency,
        eta_d=bat.discharge_efficiency,
        e0_wh=e0,
        e_min_wh=e_min,
        e_max_wh=e_max,
        e_end_wh=e_end,
        degradation_per_kwh=bat.degradation_cost_per_kwh,
    )
    const = float(np.sum(price * load)) * h / 1000.0
    t0 = time.perf_counter()
    sol = solve_battery_lp(load, load, price, h, layout, storage)
    solve_s = time.perf_counter() - t0
    if sol.status != 0:
        raise OptimumError(f"optimum: HiGHS status {sol.status}: {sol.message}")
    c, d, e = sol.charge_w, sol.discharge_w, sol.energy_wh
    grid = np.maximum(load - d + c, 0.0)  # clip solver round-off below zero
    deg = float(np.sum(d)) * h / 1000.0 * bat.degradation_cost_per_kwh
    return OptimumResult(
        objective=sol.objective + const,
        bill=bill(ts, grid, tariff, max_hold_s=step),
        baseline_bill=bill(ts, load, tariff, max_hold_s=step),
        degradation_cost=deg,
        timestamps=ts,
        grid_w=grid,
        battery_w=d - c,
        soc_wh=e,
        solve_s=solve_s,
    )


def resample_mean(timestamps: npt.ArrayLike, values: npt.ArrayLike, step_s: float) -> tuple[FloatArray, FloatArray]:
    """Average a series into clock-aligned steps (Unix s): (step starts, means); empty steps are dropped."""
    ts = np.asarray(timestamps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keys, inv = factorize(np.floor(ts / step_s).astype(np.int64))
    ok = np.isfinite(v)
    s = np.bincount(inv[ok], weights=v[ok], minlength=len(keys))
    cnt = np.bincount(inv[ok], minlength=len(keys))
    keep = cnt > 0
    return (keys[keep] * step_s).astype(np.float64), s[keep] / cnt[keep]
