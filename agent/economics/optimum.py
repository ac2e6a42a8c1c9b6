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

Solved with HiGHS (scipy.optimize.linprog). Capacity and fixed charges do not depend on the
schedule; they are in the returned bill, not in the objective. The load must be >= 0 (net of
any PV): with export forbidden, surplus PV has nowhere to go in this model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.optimize import linprog

from agent.economics.billing import Bill, bill, month_index
from agent.economics.tariff import FloatArray, Tariff, factorize
from agent.model.interval import interval_starts


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


def optimum(
    timestamps: npt.ArrayLike, load_w: npt.ArrayLike, tariff: Tariff, bat: BatterySpec
) -> OptimumResult:
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

    # demand intervals, their billing month and the charges whose window covers their start
    iv_idx, iv_of = factorize(interval_starts(ts, tariff.timezone, length).astype(np.int64))
    iv_start = iv_idx.astype(np.float64)
    lp = tariff.local_parts(iv_start)
    masks = tariff.demand_mask_table[lp.row, lp.minute]
    _, month_of_iv = month_index(tariff, lp.day)
    groups: list[tuple[float, npt.NDArray[np.int64]]] = []  # (rate, intervals) per peak variable
    for m in np.unique(month_of_iv):
        for j, ch in enumerate(tariff.demand):
            if ch.rate <= 0:
                continue
            ivs = np.flatnonzero((month_of_iv == m) & ((masks >> j) & 1 == 1))
            if len(ivs):
                groups.append((ch.rate, ivs))
    n_p = len(groups)
    # variable layout: c[0:n], d[n:2n], e[2n:3n], P[3n:3n+n_p]
    ic, id_, ie, ip = 0, n, 2 * n, 3 * n
    nv = 3 * n + n_p
    cost = np.zeros(nv)
    cost[ic:id_] = price * h / 1000.0
    cost[id_:ie] = -price * h / 1000.0 + bat.degradation_cost_per_kwh * h / 1000.0
    cost[ip:] = [rate / 1000.0 for rate, _ in groups]
    const = float(np.sum(price * load)) * h / 1000.0

    k = np.arange(n)
    # no export: d_k - c_k <= load_k
    a_ub = [
        sparse.coo_matrix((np.r_[np.ones(n), -np.ones(n)], (np.r_[k, k], np.r_[id_ + k, ic + k])), (n, nv))
    ]
    b_ub = [load]
    # peaks: mean over the interval of (c - d) - P <= -mean(load)
    counts = np.bincount(iv_of).astype(np.float64)
    rows_, cols_, vals_, rhs = [], [], [], []
    r = 0
    for g_i, (_, ivs) in enumerate(groups):
        sel = np.flatnonzero(np.isin(iv_of, ivs))
        row_of_step = np.searchsorted(ivs, iv_of[sel]) + r
        w = 1.0 / counts[iv_of[sel]]
        rows_ += [row_of_step, row_of_step, np.arange(r, r + len(ivs))]
        cols_ += [ic + sel, id_ + sel, np.full(len(ivs), ip + g_i)]
        vals_ += [w, -w, -np.ones(len(ivs))]
        mean_load = np.bincount(iv_of[sel], weights=load[sel], minlength=len(counts))[ivs] / counts[ivs]
        rhs.append(-mean_load)
        r += len(ivs)
    if r:
        a_ub.append(
            sparse.coo_matrix(
                (np.concatenate(vals_), (np.concatenate(rows_), np.concatenate(cols_))), (r, nv)
            )
        )
        b_ub += rhs
    # energy: e_k - e_(k-1) - h eta_c c_k + h / eta_d d_k = 0  (e_(-1) = e0 moves to the right side)
    rows = np.r_[k, k[1:], k, k]
    cols = np.r_[ie + k, ie + k[1:] - 1, ic + k, id_ + k]
    vals = np.r_[
        np.ones(n),
        -np.ones(n - 1),
        np.full(n, -h * bat.charge_efficiency),
        np.full(n, h / bat.discharge_efficiency),
    ]
    a_eq = sparse.coo_matrix((vals, (rows, cols)), (n, nv)).tocsr()
    b_eq = np.zeros(n)
    b_eq[0] = e0
    lb = np.zeros(nv)
    ub = np.full(nv, np.inf)
    ub[ic:ie] = bat.power_w
    lb[ie:ip], ub[ie:ip] = e_min, e_max
    lb[ip - 1] = ub[ip - 1] = e_end

    t0 = time.perf_counter()
    res = linprog(
        cost,
        A_ub=sparse.vstack(a_ub).tocsr(),
        b_ub=np.concatenate(b_ub),
        A_eq=a_eq,
        b_eq=b_eq,
        bounds=np.column_stack([lb, ub]),
        method="highs",
    )
    solve_s = time.perf_counter() - t0
    if res.status != 0:
        raise OptimumError(f"optimum: HiGHS status {res.status}: {res.message}")
    x = res.x
    c, d, e = x[ic:id_], x[id_:ie], x[ie:ip]
    grid = np.maximum(load - d + c, 0.0)  # clip solver round-off below zero
    deg = float(np.sum(d)) * h / 1000.0 * bat.degradation_cost_per_kwh
    return OptimumResult(
        objective=float(res.fun) + const,
        bill=bill(ts, grid, tariff, max_hold_s=step),
        baseline_bill=bill(ts, load, tariff, max_hold_s=step),
        degradation_cost=deg,
        timestamps=ts,
        grid_w=grid,
        battery_w=d - c,
        soc_wh=e,
        solve_s=solve_s,
    )


def resample_mean(
    timestamps: npt.ArrayLike, values: npt.ArrayLike, step_s: float
) -> tuple[FloatArray, FloatArray]:
    """Average a series into clock-aligned steps (Unix s): (step starts, means); empty steps are dropped."""
    ts = np.asarray(timestamps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keys, inv = factorize(np.floor(ts / step_s).astype(np.int64))
    ok = np.isfinite(v)
    s = np.bincount(inv[ok], weights=v[ok], minlength=len(keys))
    cnt = np.bincount(inv[ok], minlength=len(keys))
    keep = cnt > 0
    return (keys[keep] * step_s).astype(np.float64), s[keep] / cnt[keep]
