"""Re-planning: when to forecast and solve, the month's billed peaks, and the fallback on failure.

One implementation for the offline replay (agent/offline/replay.py) and, later, the live agent:
both hand it the demand intervals as they complete (the net load for the forecast, the grid
import for the billed peaks) and ask it for the plan to track at the start of every interval.
No I/O and no clock: times are the caller's (Unix s); only the solve's own duration is measured
(for the report), never used to decide.

At the start of each demand interval: forecast the net load from the completed intervals
(forecast.py; None while there is less than a day of them: no plan, the heuristic decides), then
solve (planner.py) when a re-plan is due (`due`), else keep the last plan. A failed or timed-out
solve keeps the last plan while it still covers the time and is young enough (schedule.usable),
else no plan; either way it counts a failure, raised as the alarm planner.ALARM by the caller.

When a re-plan is due (the issue: "at every demand interval, and when the load or SoC departs from
the plan by more than a threshold"; "as often as the savings need, not more"): with
`replan_s` = 0 (the default) at every interval; else when there is no usable plan, when the plan
is `replan_s` old, and on a departure, the thresholds being the plan's own forecast spread:
- LOAD: an interval completed since the plan with its net load outside the plan's p10-p90 and
  outside every scenario the plan was made to hold through (forecast.py: the last days as they
  went): a load the plan did not allow for. (The p10-p90 alone is the profile's in-sample error
  spread, narrower than its errors on days to come: 45-48 % of the intervals fell outside it on
  the suite's training and inference loads, a re-plan at nearly every other interval.)
- PEAK: an interval completed since the plan with its import above the plan's cap there (a new
  billed peak is the plan's new floor: the plan made under the old one spends energy on a level
  that is lost);
- SOC: the state of charge off the plan's trajectory by more than the energy the forecast's
  spread (half the p10-p90 width) moves in one interval at this slot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

import numpy as np

from agent.control.forecast import Forecast, forecast
from agent.control.planner import PlanBattery, PlanFailure, plan
from agent.control.schedule import DispatchPlan, usable
from agent.economics.tariff import FloatArray, Tariff

# Why a plan was solved or why there is none: ReplanStats.reasons (see the module doc) and the live
# agent's read-out (agent/live/planning.py, GET /api/plan's `reason` in API.md). One definition of
# each, here: the replay's report and the running agent name a reason alike.
R_START: Final = "start: first plan from the stored history"  # the live agent's first solve after a start
R_EVERY: Final = "new interval"
R_NONE: Final = "no usable plan"
R_AGE: Final = "plan age"
R_DEPARTURE: Final = "departure from plan"  # every departure: this, a colon and what departed
R_LOAD: Final = f"{R_DEPARTURE}: load outside the plan's p10-p90 and scenarios"
R_PEAK: Final = f"{R_DEPARTURE}: import above the plan's cap"
R_SOC: Final = f"{R_DEPARTURE}: SoC off the plan by more than the spread of an interval"
R_FAILED_KEPT: Final = "solve failed: last plan kept"
R_FAILED_NONE: Final = "solve failed: no usable plan, heuristic"
R_COLD: Final = "none: cold start, less than a day of history (heuristic)"
R_NO_SOC: Final = "none: no cluster with a good SoC (heuristic)"


@dataclass(frozen=True, slots=True)
class ReplanSettings:
    horizon_s: float = 2 * 86400.0
    margin: float = 0.0  # of (p90 - p50) kept under the peak (planner.plan): the scenarios carry the spread
    history_days: int = 14
    time_limit_s: float = 0.25
    scenario_days: int = 5  # the last days' errors the plan's peak level must hold through (forecast.py)
    replan_s: float = 0.0  # re-plan at least this often, sooner on a departure (module doc); 0: every interval


@dataclass(slots=True)
class ReplanStats:
    solves: int = 0
    failures: int = 0
    cold: int = 0  # intervals without a forecast (less than a day of history)
    solve_s: list[float] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)
    forecasts: list[Forecast] = field(default_factory=list)  # kept for the accuracy figures
    kept: int = 0  # intervals that kept the last plan (no re-plan due)
    reasons: dict[str, int] = field(default_factory=dict)  # solves by why they were due


# What the Replanner asks for the forecast: (the completed intervals' starts and net loads, now) ->
# the forecast from the interval holding now, or None (cold start). The live agent and `analyze` use
# the causal forecaster (Replanner.causal); bench/planner_bench.py's --oracle injects the trace's own
# future to measure what the forecast's error costs against the plan-and-track structure.
Forecaster = Callable[[FloatArray, FloatArray, float], Forecast | None]


class Replanner:
    """The plan to track, re-solved at every demand interval from the intervals completed so far."""

    def __init__(
        self,
        tariff: Tariff,
        bat: PlanBattery,
        settings: ReplanSettings = ReplanSettings(),
        forecaster: Forecaster | None = None,
    ) -> None:
        self.tariff = tariff
        self.bat = bat
        self.settings = settings
        self.forecaster: Forecaster = forecaster if forecaster is not None else self.causal
        self.tz: ZoneInfo = tariff.timezone
        self.length_s = tariff.demand_interval_s
        self.hist_ts: list[float] = []
        self.hist_net: list[float] = []
        self.month: object = None  # billing month of `billed`
        self.billed = [0.0] * len(tariff.demand)
        # per demand charge, the highest interval the site's own net load (no battery) reached this
        # billing month: an interval may close up to it without a bill the site would not have had
        self.site = [0.0] * len(tariff.demand)
        self.last: DispatchPlan | None = None
        self.last_fc: Forecast | None = None  # the forecast `last` was solved on
        self.departed: str | None = None  # a departure seen in an interval completed since `last`
        self.stats = ReplanStats()

    @property
    def shared_slots(self) -> int:
        """A plan kept `replan_s` is done slot after slot: every scenario shares those slots' power."""
        return max(1, math.ceil(self.settings.replan_s / self.length_s))

    def completed(self, start_s: float, net_w: float, grid_w: float) -> None:
        """A demand interval (starting at `start_s`) ended with these average net load and grid import."""
        self.hist_ts.append(start_s)
        self.hist_net.append(net_w)
        local = datetime.fromtimestamp(start_s, self.tz)
        month = self.tariff.billing_month(local.date())
        if month != self.month:
            self.month, self.billed = month, [0.0] * len(self.tariff.demand)
            self.site = [0.0] * len(self.tariff.demand)
        mask = self.tariff.demand_mask(local)
        for j in range(len(self.billed)):
            if (mask >> j) & 1:
                self.billed[j] = max(self.billed[j], grid_w)
                self.site[j] = max(self.site[j], net_w)
        if self.departed is None:
            self.departed = departure(self.last, self.last_fc, start_s, net_w, grid_w)

    def causal(self, ts: FloatArray, net_w: FloatArray, now_s: float) -> Forecast | None:
        """The agent's forecast (forecast.py) from the completed intervals `ts`/`net_w`, at the settings'."""
        s = self.settings
        return forecast(
            ts,
            net_w,
            now_s,
            self.tz,
            self.length_s,
            s.horizon_s,
            days=s.history_days,
            scenario_days=s.scenario_days,
            decided_slots=self.shared_slots,
        )

    def plan_at(self, now_s: float, soc_pct: float) -> tuple[DispatchPlan | None, bool]:
        """(the plan to track from `now_s`, whether this solve failed)."""
        s = self.settings
        keep = int(s.history_days * 86400.0 / self.length_s) + 1
        fc = self.forecaster(
            np.asarray(self.hist_ts[-keep:], dtype=np.float64),
            np.asarray(self.hist_net[-keep:], dtype=np.float64),
            now_s,
        )
        if fc is None or soc_pct != soc_pct:  # cold start, or no trusted cluster (SoC NaN)
            self.stats.cold += 1
            self.last = None
            return None, False
        for w in fc.warnings:
            self.stats.warnings[w] = self.stats.warnings.get(w, 0) + 1
        self.stats.forecasts.append(fc)  # made at every interval (cheap): the accuracy figures see them all
        why = self.due(now_s, soc_pct)
        if why is None:
            self.stats.kept += 1
            return self.last, False
        self.stats.reasons[why] = self.stats.reasons.get(why, 0) + 1
        self.departed = None
        now_month = self.tariff.billing_month(datetime.fromtimestamp(now_s, self.tz).date())
        same = now_month == self.month
        r = plan(
            fc,
            self.tariff,
            self.bat,
            soc_pct,
            tuple(self.billed) if same else (),
            now_s,
            site_w=tuple(self.site) if same else (),
            margin=s.margin,
            time_limit_s=s.time_limit_s,
            shared_slots=self.shared_slots,
        )
        self.stats.solves += 1
        self.stats.solve_s.append(r.solve_s)
        if isinstance(r, PlanFailure):
            self.stats.failures += 1
            self.last = usable(self.last, now_s)
            if self.last is None:
                self.last_fc = None
            self.departed = why  # still due: tried again at the next interval
            return self.last, True
        self.last, self.last_fc = r, fc
        return r, False

    def due(self, now_s: float, soc_pct: float) -> str | None:
        """Why a plan is to be solved at `now_s` (the module doc), or None: the last plan is kept."""
        period = self.settings.replan_s
        if not period > 0.0:
            return R_EVERY
        p = usable(self.last, now_s)
        if p is None or self.last_fc is None:
            return R_NONE
        if now_s - p.made_s >= period:
            return R_AGE
        if self.departed is not None:
            return self.departed
        k = p.slot_at(now_s)
        share = (now_s - p.start_s - k * p.step_s) / p.step_s
        if abs(soc_pct - p.soc_at(k, share)) > spread_soc_pct(self.last_fc, now_s, self.bat.energy_wh):
            return R_SOC
        return None


def _slot(fc: Forecast, t_s: float) -> int:
    """The forecast's slot holding `t_s`, or -1 outside it."""
    k = math.floor((t_s - fc.start_s) / fc.step_s)
    return k if 0 <= k < len(fc.p50_w) else -1


def departure(p: DispatchPlan | None, fc: Forecast | None, start_s: float, net_w: float, grid_w: float) -> str | None:
    """The departure an interval completed at `start_s` shows from plan `p` (solved on `fc`), or None."""
    if p is None or fc is None or start_s < p.start_s:
        return None
    k, kp = _slot(fc, start_s + 0.5 * fc.step_s), p.slot_at(start_s + 0.5 * p.step_s)
    if k < 0 or kp < 0:
        return None
    lo, hi = float(fc.p10_w[k]), float(fc.p90_w[k])
    if len(fc.scenarios_w) and k < fc.scenarios_w.shape[1]:  # and every way the plan was made to hold through
        lo, hi = min(lo, float(np.min(fc.scenarios_w[:, k]))), max(hi, float(np.max(fc.scenarios_w[:, k])))
    if not lo <= net_w <= hi:
        return R_LOAD
    if grid_w > float(p.grid_cap_w[kp]):
        return R_PEAK
    return None


def spread_soc_pct(fc: Forecast, t_s: float, energy_wh: float) -> float:
    """The SoC (% of `energy_wh`) that half the forecast's p10-p90 width moves in one interval at `t_s`."""
    k = _slot(fc, t_s)
    if k < 0 or not energy_wh > 0.0:
        return 0.0
    half_w = 0.5 * float(fc.p90_w[k] - fc.p10_w[k])
    return half_w * fc.step_s / 3600.0 / energy_wh * 100.0


def forecast_accuracy(
    forecasts: list[Forecast], ts: FloatArray, actual_w: FloatArray, lead_s: float, tz: ZoneInfo
) -> dict[str, float]:
    """MAPE of the median forecasts against the actual interval averages (leads up to `lead_s`), and
    the error at each day's peak: the day-ahead forecast (made at the day's first interval) of the
    day's highest interval against the actual highest, as a mean absolute and a mean signed share."""
    where = {float(t): i for i, t in enumerate(ts)}
    errs: list[float] = []
    peak_abs: list[float] = []
    peak_signed: list[float] = []
    day = 86400.0
    for f in forecasts:
        n = min(len(f.p50_w), int(lead_s / f.step_s))
        idx = [where.get(f.start_s + k * f.step_s, -1) for k in range(n)]
        pairs = [(float(f.p50_w[k]), float(actual_w[i])) for k, i in enumerate(idx) if i >= 0]
        errs += [abs(p - a) / a for p, a in pairs if a > 0]
        local = datetime.fromtimestamp(f.start_s, tz)
        if len(pairs) == n and n * f.step_s >= day and local.hour == 0 and local.minute == 0:
            m = int(day / f.step_s)
            fp = max(p for p, _ in pairs[:m])
            ap = max(a for _, a in pairs[:m])
            if ap > 0:
                peak_abs.append(abs(fp - ap) / ap)
                peak_signed.append((fp - ap) / ap)
    return {
        "mape": float(np.mean(errs)) if errs else float("nan"),
        "pairs": float(len(errs)),
        "daily_peak_abs_error": float(np.mean(peak_abs)) if peak_abs else float("nan"),
        "daily_peak_signed_error": float(np.mean(peak_signed)) if peak_signed else float("nan"),
        "days": float(len(peak_abs)),
    }
