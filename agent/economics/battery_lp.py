"""The battery linear programme shared by the perfect-foresight optimum and the planner.

Per step k (length h): charge c_k >= 0 and discharge d_k >= 0 (AC side, W), stored energy e_k
(Wh, end of step), and one peak variable P per (billing month, demand charge) group.
Grid import g_k = load_k - d_k + c_k.

    minimise  sum_k price_k h g_k / 1000                      energy
            + sum_g rate_g P_g / 1000                          demand (per kW-month)
            + deg h sum_k d_k / 1000                           degradation
            - end_value e_(N-1)                                energy left at the end (planner)
            + delay h sum_k (k c_k + (N-1-k) d_k)               tie-break: charge earliest, discharge
                                                               latest (planner)
    s.t.      d_k - c_k <= load_k                              no export
              c_k - d_k <= room_k                              charge room (the planner: what its
                                                               tracker lets a charge add, see below)
              e_k = e_(k-1) + h (eta_c c_k - d_k / eta_d)      e_(-1) = start
              e_min_k <= e_k <= e_max_k,  c_k, d_k <= power    (e_(N-1) = end when fixed)
              e_(N-1) >= end_min                               (the planner: where it started; or,
              e_(N-1) >= e_(N-1-C)                              over C steps, its last C repeat)
              P_g >= mean of (peak_load - d + c) over each demand interval of group g
              P_g >= floor_g                                   (a peak already billed this month)

`peak_load` is the load the peak rows see: the load itself for the optimum, a high quantile of
the forecast for the planner (its margin for the forecast's spread). The planner also passes
scenarios of the load (solve_battery_lp's doc): one battery schedule per scenario under shared peak
variables, so the peak level it plans is one the battery can hold whichever of them comes.
`room_k` (the planner's; none for the optimum): the most a charge may add to a step's import, the
tracker's guard (agent/control/track.py: no charge lifts an interval above the level the month bills
so far), so that the plan counts only on energy the tracker will take in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
from highspy import HighsLp, HighsModelStatus, MatrixFormat
from scipy import sparse

from agent.economics.billing import month_index
from agent.economics.tariff import FloatArray, IntArray, Tariff, factorize
from agent.model.interval import interval_starts

try:
    # The extension's raw class: highspy.Highs (the Python wrapper) prints a banner on stdout at its
    # first construction, before any option can be set, which would corrupt `analyze --json`.
    from highspy._core import _Highs as _Solver
except ImportError:  # a highspy without that private name: the public class, banner and all
    from highspy import Highs as _Solver


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
    # much dearer and each step of advance a Wh discharged, so of schedules that cost the same the
    # plan charges earliest and discharges latest (planner.py; never makes a charge or a cycle pay
    # on its own); 0 for the optimum
    charge_delay_per_wh_step: float = 0.0
    e_end_min_wh: float = 0.0  # the least energy at the end (the planner's: its start, see planner.py)
    # > 0: a series longer than this many steps ends instead with at least the energy it had this many
    # steps before its end (its last day repeats: planner.py); a shorter one keeps e_end_min_wh
    end_cycle_steps: int = 0


@dataclass(frozen=True, slots=True)
class LpSolution:
    charge_w: FloatArray
    discharge_w: FloatArray
    energy_wh: FloatArray
    peaks_w: FloatArray  # per group
    objective: float  # excluding the constant energy cost of the load itself
    status: int  # run_highs's: 0 solved, 1 iteration or time limit, 2 infeasible, ...
    message: str
    # what one Wh more stored at the start would save (currency per Wh, over every scenario: the
    # energy balance rows' duals of the first step): the marginal value of stored energy now
    energy_value: float = math.nan


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
    presolve: bool = True,
    charge_room_w: FloatArray | None = None,
) -> LpSolution:
    """Build and solve the programme. A status other than 0 (no optimal solution) comes with empty arrays.

    `load` and `peak_load` are one series (n,) or S scenarios (S, n) of it. With scenarios, each has
    its own charge, discharge and energy (the battery follows the load that comes), all share the
    first `shared_steps` steps' charge and discharge (what is decided now, and done until the next
    plan, cannot depend on which comes) and the
    peak variables (the month is billed on the highest); the energy and degradation costs are their
    mean. Scenarios 1.. may cover only the first `scenario_steps` steps (a whole number of demand
    intervals; the solve time grows with the variables); scenario 0 alone prices the steps after.
    Every scenario ends as scenario 0 does, on its own energy: its last `end_cycle_steps` repeat when
    it is longer, else with at least `e_end_min_wh` (none may spend what the days after need; held
    to scenario 0's energy at its end instead, every scenario had to fill as the median plan does,
    under its own higher load, and the peak level rose for it). The solution returned is scenario 0's.
    `presolve` False: HiGHS's dual simplex from the start (the planner's: its 48 h programmes solve in
    ~17 ms of CPU so, ~25 % less than with presolve, the same objective; the month-long optimum keeps
    presolve and HiGHS's own choice of method).
    `charge_room_w`: like `load`, per step the most the net charge c - d may be (W, >= 0; inf: none).
    """
    loads = np.atleast_2d(load)
    peaks_in = np.atleast_2d(peak_load)
    n_s, n = loads.shape
    rooms = np.broadcast_to(np.inf if charge_room_w is None else np.atleast_2d(charge_room_w), (n_s, n))
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
    # the inequality rows (A x <= b), then the equality rows, as one (row, col, value) list: one
    # sparse matrix for HiGHS (scipy's linprog built one per block, stacked them and wrapped the
    # solve: ~60 % of a 48 h plan's CPU time went there, not in the simplex)
    ub_rows: list[IntArray] = []
    ub_cols: list[IntArray] = []
    ub_vals: list[FloatArray] = []
    b_ub: list[FloatArray] = []
    lo_ub: list[FloatArray] = []  # the rows' lower bounds (-inf but where a row is ranged)
    r_ub = 0
    eq_rows: list[IntArray] = []
    eq_cols: list[IntArray] = []
    eq_vals: list[FloatArray] = []
    b_eq: list[FloatArray] = []
    r_eq = 0
    e_min = np.broadcast_to(np.asarray(st.e_min_wh, dtype=np.float64), (n,))
    e_max = np.broadcast_to(np.asarray(st.e_max_wh, dtype=np.float64), (n,))
    rows_cache: dict[int, list[tuple[int, IntArray, IntArray, IntArray, FloatArray]]] = {}
    first_rows: list[int] = []  # each scenario's first energy balance row (among the equality rows)

    def peak_rows(ln: int) -> list[tuple[int, IntArray, IntArray, IntArray, FloatArray]]:
        """Per demand-charge group over the first `ln` steps: (group, its steps, its intervals, each
        step's row among them, each step's weight 1 / steps in its interval); the same for every
        scenario of a length, built once."""
        if ln not in rows_cache:
            out = []
            for g_i, g in enumerate(groups):
                sel = np.flatnonzero(np.isin(iv_of[:ln], g.intervals))
                if len(sel):
                    ivs = np.unique(iv_of[sel])
                    out.append((g_i, sel, ivs, np.searchsorted(ivs, iv_of[sel]), 1.0 / counts[iv_of[sel]]))
            rows_cache[ln] = out
        return rows_cache[ln]

    for s_i, ln in enumerate(lens):
        k = np.arange(ln)
        ic = int(offs[s_i])
        id_, ie = ic + ln, ic + 2 * ln
        # each step's cost is the mean over the scenarios covering it
        w = np.where(k < m, 1.0 / n_s, 1.0)
        cost[ic:id_] = w * price[:ln] * h / 1000.0
        cost[id_:ie] = w * (-price[:ln] * h / 1000.0 + st.degradation_per_kwh * h / 1000.0)
        cost[ic:id_] += w * st.charge_delay_per_wh_step * k * h
        cost[id_:ie] += w * st.charge_delay_per_wh_step * (n - 1 - k) * h
        if ln == n:
            cost[ie + n - 1] -= float(w[-1]) * st.end_value_per_wh
        # no export, and the charge room: -room_k <= d_k - c_k <= load_k
        ub_rows += [r_ub + k, r_ub + k]
        ub_cols += [id_ + k, ic + k]
        ub_vals += [np.ones(ln), -np.ones(ln)]
        b_ub.append(loads[s_i, :ln])
        lo_ub.append(-rooms[s_i, :ln])
        r_ub += ln
        # peak rows: P_g >= mean of (peak_load - d + c) over each demand interval of group g
        for g_i, sel, ivs, row_of_step, wk in peak_rows(ln):
            rows_ = r_ub + row_of_step
            ub_rows += [rows_, rows_, r_ub + np.arange(len(ivs))]
            ub_cols += [ic + sel, id_ + sel, np.full(len(ivs), ip + g_i)]
            ub_vals += [wk, -wk, -np.ones(len(ivs))]
            mean_load = np.bincount(iv_of[sel], weights=peaks_in[s_i][sel], minlength=len(counts))[ivs] / counts[ivs]
            b_ub.append(-mean_load)
            lo_ub.append(np.full(len(ivs), -np.inf))
            r_ub += len(ivs)
        # energy balance
        first_rows.append(r_eq)
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
        cyc = st.end_cycle_steps
        if 0 < cyc < ln:  # e_(ln-1-cyc) - e_(ln-1) <= 0
            ub_rows += [np.array([r_ub, r_ub])]
            ub_cols += [np.array([ie + ln - 1 - cyc, ie + ln - 1])]
            ub_vals += [np.array([1.0, -1.0])]
            b_ub.append(np.zeros(1))
            lo_ub.append(np.full(1, -np.inf))
            r_ub += 1
        else:
            lb[ie + ln - 1] = max(float(lb[ie + ln - 1]), min(st.e_end_min_wh, float(ub[ie + ln - 1])))
        if st.e_end_wh is not None and ln == n:
            lb[ie + n - 1] = ub[ie + n - 1] = st.e_end_wh
    cost[ip:] = [g.rate / 1000.0 for g in groups]
    if peak_floors_w is not None:
        lb[ip:] = peak_floors_w
    a = sparse.coo_matrix(
        (
            np.concatenate(ub_vals + eq_vals),
            (np.concatenate(ub_rows + [r_ub + x for x in eq_rows]), np.concatenate(ub_cols + eq_cols)),
        ),
        (r_ub + r_eq, nv),
    ).tocsc()
    beq = np.concatenate(b_eq)
    # an energy cost per W-step is ~1e-4 currency: scaled to ~1, so that HiGHS's optimality
    # tolerance (1e-7 on the reduced costs) does not swallow small differences (the planner's
    # tie-break, a few cents of wear)
    top = float(np.max(np.abs(price))) * h / 1000.0
    scale = 1.0 / top if top > 0.0 else 1.0
    status, message, x, fun, dual = run_highs(
        cost * scale,
        a,
        np.concatenate([*lo_ub, beq]),
        np.concatenate([*b_ub, beq]),
        lb,
        ub,
        presolve,
        time_limit_s,
    )
    if status != 0 or x is None:
        return LpSolution(np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), float("nan"), status, message)
    # the rows' right-hand side is the start's energy: the objective moves by the sum of their duals
    value = -float(np.sum(dual[r_ub + np.asarray(first_rows)])) / scale if dual is not None else math.nan
    return LpSolution(x[0:n], x[n : 2 * n], x[2 * n : 3 * n], x[ip:], fun / scale, 0, message, value)


# HiGHS's model status as scipy.optimize.linprog's status and message (what PlanFailure reports)
_STATUS: Final = {
    HighsModelStatus.kOptimal: (0, "Optimization terminated successfully."),
    HighsModelStatus.kTimeLimit: (1, "Time limit reached."),
    HighsModelStatus.kIterationLimit: (1, "Iteration limit reached."),
    HighsModelStatus.kInfeasible: (2, "The problem is infeasible."),
    HighsModelStatus.kModelError: (2, "The model is in error."),
    HighsModelStatus.kUnbounded: (3, "The problem is unbounded."),
}


def run_highs(
    cost: FloatArray,
    a: sparse.csc_matrix,
    row_lo: FloatArray,
    row_hi: FloatArray,
    lb: FloatArray,
    ub: FloatArray,
    presolve: bool,
    time_limit_s: float | None,
) -> tuple[int, str, FloatArray | None, float, FloatArray | None]:
    """min cost x, row_lo <= A x <= row_hi, lb <= x <= ub, by HiGHS's dual simplex (as linprog's
    "highs-ds"; with presolve, HiGHS's own choice of method as linprog's "highs").
    (status: 0 solved, 1 time or iteration limit, 2 infeasible, 3 unbounded, 4 other; message; x; objective;
    the rows' duals, d objective / d row bound)."""
    hs = _Solver()
    hs.setOptionValue("output_flag", False)
    hs.setOptionValue("simplex_strategy", 1)  # dual
    if not presolve:
        hs.setOptionValue("presolve", "off")
        hs.setOptionValue("solver", "simplex")
    if time_limit_s is not None:
        hs.setOptionValue("time_limit", float(time_limit_s))
    lp = HighsLp()
    lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = cost, lb, ub
    lp.row_lower_, lp.row_upper_ = row_lo, row_hi
    lp.a_matrix_.format_ = MatrixFormat.kColwise
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = a.shape[1], a.shape[0]
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    hs.passModel(lp)
    hs.run()
    ms = hs.getModelStatus()
    status, message = _STATUS.get(ms, (4, f"HiGHS: {hs.modelStatusToString(ms)}."))
    if status != 0:
        return status, message, None, math.nan, None
    sol = hs.getSolution()
    return (
        0,
        message,
        np.asarray(sol.col_value, dtype=np.float64),
        float(hs.getInfo().objective_function_value),
        np.asarray(sol.row_dual, dtype=np.float64) if sol.dual_valid else None,
    )
