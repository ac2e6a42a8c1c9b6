"""The battery linear programme shared by the perfect-foresight optimum and the planner.

Per step k (length h): charge c_k >= 0 and discharge d_k >= 0 (AC side, W), stored energy e_k
(Wh, end of step), and one peak variable P per (billing month, demand charge) group.
Grid import g_k = load_k - d_k + c_k.

    minimise  sum_k price_k h g_k / 1000                      energy
            + sum_g rate_g P_g / 1000                          demand (per kW-month)
            + deg h sum_k d_k / 1000                           degradation
            - end_value e_(N-1)                                energy left at the end (planner)
            + delay h sum_k k c_k                              tie-break: charge earliest (planner)
    s.t.      d_k - c_k <= load_k                              no export
              e_k = e_(k-1) + h (eta_c c_k - d_k / eta_d)      e_(-1) = start
              e_min_k <= e_k <= e_max_k,  c_k, d_k <= power    (e_(N-1) = end when fixed)
              e_(N-1) >= end_min                               (the planner: where it started)
              P_g >= mean of (peak_load - d + c) over each demand interval of group g
              P_g >= floor_g                                   (a peak already billed this month)

`peak_load` is the load the peak rows see: the load itself for the optimum, a high quantile of
the forecast for the planner (its margin for the forecast's spread). The planner also passes
scenarios of the load (solve_battery_lp's doc): one battery schedule per scenario under shared peak
variables, so the peak level it plans is one the battery can hold whichever of them comes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from agent.economics.billing import month_index
from agent.economics.tariff import FloatArray, IntArray, Tariff, factorize
from agent.model.interval import interval_starts


@dataclass(frozen=True, slots=True)
class PeakGroup:
    rate: float  # currency per kW
    charge: int  # index into tariff.demand
    month: int  # billing month index within the series (0 = the first step's month)
    intervals: IntArray  # demand intervals (indices into the series' distinct intervals)


@dataclass(frozen=True, slots=True)
class DemandLayout:
    iv_of: IntArray  # per step: its demand interval
    counts: FloatArray  # steps per demand interval
    groups: tuple[PeakGroup, ...]


def demand_layout(ts: FloatArray, tariff: Tariff) -> DemandLayout:
    """Demand intervals of a uniform series, their billing months and the charges covering them."""
    length = tariff.demand_interval_s
    iv_idx, iv_of = factorize(interval_starts(ts, tariff.timezone, length).astype(np.int64))
    lp = tariff.local_parts(iv_idx.astype(np.float64))
    masks = tariff.demand_mask_table[lp.row, lp.minute]
    _, month_of_iv = month_index(tariff, lp.day)
    groups: list[PeakGroup] = []
    for m in np.unique(month_of_iv):
        for j, ch in enumerate(tariff.demand):
            if ch.rate <= 0:
                continue
            ivs = np.flatnonzero((month_of_iv == m) & ((masks >> j) & 1 == 1))
            if len(ivs):
                groups.append(PeakGroup(ch.rate, j, int(m), ivs))
    return DemandLayout(iv_of, np.bincount(iv_of).astype(np.float64), tuple(groups))


@dataclass(frozen=True, slots=True)
class Storage:
    power_w: float
    eta_c: float
    eta_d: float
    e0_wh: float
    e_min_wh: FloatArray | float  # per step or one value
    e_max_wh: FloatArray | float
    e_end_wh: float | None  # fixed end energy, or None (then valued at end_value_per_wh)
    end_value_per_wh: float = 0.0
    degradation_per_kwh: float = 0.0
    # a tie-break worth a sliver of the cheapest energy: each step of delay makes a Wh charged this
    # much dearer, so of schedules that cost the same the plan charges earliest (planner.py; never
    # makes a charge or a cycle pay on its own); 0 for the optimum
    charge_delay_per_wh_step: float = 0.0
    e_end_min_wh: float = 0.0  # the least energy at the end (the planner's: its start, see planner.py)


@dataclass(frozen=True, slots=True)
class LpSolution:
    charge_w: FloatArray
    discharge_w: FloatArray
    energy_wh: FloatArray
    peaks_w: FloatArray  # per group
    objective: float  # excluding the constant energy cost of the load itself
    status: int  # HiGHS status via linprog: 0 solved, 1 iteration or time limit, 2 infeasible, ...
    message: str


def solve_battery_lp(
    load: FloatArray,
    peak_load: FloatArray,
    price: FloatArray,
    h: float,
    layout: DemandLayout,
    st: Storage,
    peak_floors_w: FloatArray | None = None,
    time_limit_s: float | None = None,
    scenario_steps: int | None = None,
    shared_steps: int = 1,
) -> LpSolution:
    """Build and solve the programme. A status other than 0 (no optimal solution) comes with empty arrays.

    `load` and `peak_load` are one series (n,) or S scenarios (S, n) of it. With scenarios, each has
    its own charge, discharge and energy (the battery follows the load that comes), all share the
    first `shared_steps` steps' charge and discharge (what is decided now, and done until the next
    plan, cannot depend on which comes) and the
    peak variables (the month is billed on the highest); the energy and degradation costs are their
    mean. Scenarios 1.. may cover only the first `scenario_steps` steps (a whole number of demand
    intervals; the solve time grows with the variables); scenario 0 alone prices the steps after.
    Every scenario ends with at least `e_end_min_wh` (none may spend what the days after need; held
    to scenario 0's energy at its end instead, every scenario had to fill as the median plan does,
    under its own higher load, and the peak level rose for it). The solution returned is scenario 0's.
    """
    loads = np.atleast_2d(load)
    peaks_in = np.atleast_2d(peak_load)
    n_s, n = loads.shape
    m = n if scenario_steps is None or n_s == 1 else max(1, min(n, scenario_steps))
    lens = [n] + [m] * (n_s - 1)
    offs = np.concatenate(([0], np.cumsum([3 * x for x in lens]))).astype(np.int64)
    groups = layout.groups
    n_p = len(groups)
    iv_of, counts = layout.iv_of, layout.counts
    ip = int(offs[-1])
    nv = ip + n_p
    cost = np.zeros(nv)
    lb = np.zeros(nv)
    ub = np.full(nv, np.inf)
    a_ub: list[sparse.coo_matrix] = []
    b_ub: list[FloatArray] = []
    eq_rows: list[IntArray] = []
    eq_cols: list[IntArray] = []
    eq_vals: list[FloatArray] = []
    b_eq: list[FloatArray] = []
    r_eq = 0
    e_min = np.broadcast_to(np.asarray(st.e_min_wh, dtype=np.float64), (n,))
    e_max = np.broadcast_to(np.asarray(st.e_max_wh, dtype=np.float64), (n,))
    for s_i, ln in enumerate(lens):
        k = np.arange(ln)
        ic = int(offs[s_i])
        id_, ie = ic + ln, ic + 2 * ln
        # each step's cost is the mean over the scenarios covering it
        w = np.where(k < m, 1.0 / n_s, 1.0)
        cost[ic:id_] = w * price[:ln] * h / 1000.0
        cost[id_:ie] = w * (-price[:ln] * h / 1000.0 + st.degradation_per_kwh * h / 1000.0)
        cost[ic:id_] += w * st.charge_delay_per_wh_step * k * h
        if ln == n:
            cost[ie + n - 1] -= float(w[-1]) * st.end_value_per_wh
        # no export
        a_ub.append(
            sparse.coo_matrix((np.r_[np.ones(ln), -np.ones(ln)], (np.r_[k, k], np.r_[id_ + k, ic + k])), (ln, nv))
        )
        b_ub.append(loads[s_i, :ln])
        # peak rows: P_g >= mean of (peak_load - d + c) over each demand interval of group g
        rows_, cols_, vals_, rhs = [], [], [], []
        r = 0
        for g_i, g in enumerate(groups):
            sel = np.flatnonzero(np.isin(iv_of[:ln], g.intervals))
            if not len(sel):
                continue
            ivs = np.unique(iv_of[sel])
            row_of_step = np.searchsorted(ivs, iv_of[sel]) + r
            wk = 1.0 / counts[iv_of[sel]]
            rows_ += [row_of_step, row_of_step, np.arange(r, r + len(ivs))]
            cols_ += [ic + sel, id_ + sel, np.full(len(ivs), ip + g_i)]
            vals_ += [wk, -wk, -np.ones(len(ivs))]
            mean_load = np.bincount(iv_of[sel], weights=peaks_in[s_i][sel], minlength=len(counts))[ivs] / counts[ivs]
            rhs.append(-mean_load)
            r += len(ivs)
        if r:
            a_ub.append(
                sparse.coo_matrix((np.concatenate(vals_), (np.concatenate(rows_), np.concatenate(cols_))), (r, nv))
            )
            b_ub += rhs
        # energy balance
        eq_rows += [r_eq + k, r_eq + k[1:], r_eq + k, r_eq + k]
        eq_cols += [ie + k, ie + k[1:] - 1, ic + k, id_ + k]
        eq_vals += [np.ones(ln), -np.ones(ln - 1), np.full(ln, -h * st.eta_c), np.full(ln, h / st.eta_d)]
        be = np.zeros(ln)
        be[0] = st.e0_wh
        b_eq.append(be)
        r_eq += ln
        if s_i:  # non-anticipativity: the first steps' charge and discharge are scenario 0's
            j = np.arange(min(shared_steps, ln))
            nj = len(j)
            rows2 = r_eq + np.arange(2 * nj)
            eq_rows += [rows2, rows2]
            eq_cols += [np.r_[ic + j, id_ + j], np.r_[j, n + j]]
            eq_vals += [np.ones(2 * nj), -np.ones(2 * nj)]
            b_eq.append(np.zeros(2 * nj))
            r_eq += 2 * nj
        ub[ic:ie] = st.power_w
        lb[ie : ie + ln], ub[ie : ie + ln] = e_min[:ln], e_max[:ln]
        lb[ie + ln - 1] = max(float(lb[ie + ln - 1]), min(st.e_end_min_wh, float(ub[ie + ln - 1])))
        if st.e_end_wh is not None and ln == n:
            lb[ie + n - 1] = ub[ie + n - 1] = st.e_end_wh
    cost[ip:] = [g.rate / 1000.0 for g in groups]
    a_eq = sparse.coo_matrix(
        (np.concatenate(eq_vals), (np.concatenate(eq_rows), np.concatenate(eq_cols))), (r_eq, nv)
    ).tocsr()
    if peak_floors_w is not None:
        lb[ip:] = peak_floors_w
    options = {"time_limit": time_limit_s} if time_limit_s is not None else None
    # an energy cost per W-step is ~1e-4 currency: scaled to ~1, so that HiGHS's optimality
    # tolerance (1e-7 on the reduced costs) does not swallow small differences (the planner's
    # tie-break, a few cents of wear)
    top = float(np.max(np.abs(price))) * h / 1000.0
    scale = 1.0 / top if top > 0.0 else 1.0
    res = linprog(
        cost * scale,
        A_ub=sparse.vstack(a_ub).tocsr(),
        b_ub=np.concatenate(b_ub),
        A_eq=a_eq,
        b_eq=np.concatenate(b_eq),
        bounds=np.column_stack([lb, ub]),
        method="highs",
        options=options,
    )
    x = res.x
    if res.status != 0 or x is None:
        return LpSolution(
            np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), float("nan"), int(res.status), str(res.message)
        )
    return LpSolution(x[0:n], x[n : 2 * n], x[2 * n : 3 * n], x[ip:], float(res.fun) / scale, 0, str(res.message))
