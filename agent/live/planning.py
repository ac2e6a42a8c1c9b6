"""Predictive dispatch in the running agent: the planner fed, solved off the loop, and tracked.

The offline replay (agent/offline/replay.py) and this module drive the same objects the same way:
a `Replanner` (agent/control/replan.py) is handed every completed demand interval (average net
load and grid import) and asked for the plan at the start of the next; decide() tracks the plan
it returns through its `schedule` input (agent/control/track.py). What is live here:

- the completed interval comes from the demand controller's own accumulator (ControllerState's
  IntervalState: net_ws, grid_ws, covered_s over the interval agent.model.interval aligns), read
  when its key changes: the figures the demand controller and the ledger count, not a second sum;
- the intervals are kept in the state dir (agent/live/plan_history.py): a restart plans at once;
- every forecast and solve runs in one worker thread (so the Replanner is only ever touched
  there, in order), with the settings' time limit; the 1 s loop only looks whether a result is
  ready (`schedule`, `after`), it never waits on one;
- a failed solve raises planner.ALARM (the last plan is kept while schedule.usable allows, then the
  heuristic decides) and a good one clears it;
- each change of plan is recorded with its reason (replan.py's R_*, one definition for the replay
  and the agent): the first plan after start, a new interval,
  a departure from the plan (SoC off its trajectory by `departure_soc_pct`), a failure (last plan
  kept / heuristic), a cold start (less than a day of history: the heuristic).

`view()` is the read-out behind GET /api/plan, the MQTT topic and the dashboard's chart.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from agent.control.planner import ALARM, PlanBattery
from agent.control.replan import (
    R_COLD,
    R_DEPARTURE,
    R_EVERY,
    R_FAILED_KEPT,
    R_FAILED_NONE,
    R_NO_SOC,
    R_START,
    Replanner,
    forecast_accuracy,
)
from agent.control.schedule import DispatchPlan, usable
from agent.control.state import IntervalState
from agent.economics.tariff import Tariff
from agent.live.hub import PlanTarget
from agent.live.plan_config import PlannerConfig
from agent.live.plan_history import FILE_NAME, Interval, PlanHistory
from agent.live.plan_view import plan_slots, plan_view, running_slot
from agent.logs import kv
from agent.model.alarms import AlarmBook
from agent.model.interval import DAY_S, interval_bounds
from agent.model.snapshot import SiteSnapshot
from agent.model.soc import site_soc

log = logging.getLogger("ems.planner")

SOURCE: Final = "planner"  # the alarm's source
CHANGES_KEPT: Final = 20  # changes of plan (with their reasons) in the read-out
FORECASTS_KEPT: Final = 3 * 96  # forecasts kept for the accuracy figures (the day-ahead ones need a day more)
MIN_COVERED: Final = 0.25  # an interval seen for less than this share (a start mid-interval) is not history


@dataclass(frozen=True, slots=True)
class _Outcome:
    plan: DispatchPlan | None
    failed: bool
    why: str
    at_s: float
    solves: int
    failures: int
    cold: int
    history: int  # intervals the forecast can read
    job_s: float  # the whole job in the worker: history, forecast, programme, solve
    accuracy: dict[str, float | None] | None = None  # the forecast's, when an interval closed


class LivePlanning:
    """The planner in the running agent. `schedule` and `after` are called by the control loop each
    cycle (before and after decide()); everything slow happens in the worker thread."""

    def __init__(
        self, cfg: PlannerConfig, tariff: Tariff, bat: PlanBattery, state_dir: Path, alarms: AlarmBook
    ) -> None:
        self.cfg = cfg
        self.tz = tariff.timezone
        self.length_s = tariff.demand_interval_s
        self.alarms = alarms
        self.replanner = Replanner(tariff, bat, cfg.settings())
        self.history = PlanHistory(state_dir / FILE_NAME, cfg.keep_intervals(self.length_s))
        rows, warnings = self.history.load()
        for w in warnings:
            log.warning(w, extra=kv(file=str(self.history.path)))
        for r in rows:
            self.replanner.completed(r.start_s, r.net_w, r.grid_w)
        self._recent: list[Interval] = rows  # the worker's (compaction of the history file)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="planner")
        self._jobs: deque[Future[_Outcome]] = deque()
        self.plan: DispatchPlan | None = None
        self.reason = R_COLD if len(rows) * self.length_s < 86400.0 else "none: first solve pending"
        self.changes: deque[tuple[float, str]] = deque(maxlen=CHANGES_KEPT)
        self.version = 0  # +1 on every change of plan (the MQTT topic publishes on it)
        self.stats = (0, 0, 0)  # solves, failures, cold (as of the last result)
        self.history_intervals = len(rows)
        self.job_s = math.nan  # the last job's time in the worker (s)
        self.accuracy: dict[str, float | None] = {}  # the forecast's against the intervals since recorded
        self._slots: tuple[tuple[int, int], list[dict[str, Any]]] | None = None  # the read-out's, cached
        self._asked = False  # the first solve (at the first cycle) was asked for
        self._departed_key = -1  # the interval a departure re-plan was asked in (one per interval)
        self._now_s = math.nan
        self._prev_t_s = math.nan
        self._history_error: str | None = None

    # --- the control loop's side ----------------------------------------------------------------
    def schedule(self, snap: SiteSnapshot) -> DispatchPlan | None:
        """The plan decide() tracks this cycle (None: the heuristic decides); takes finished solves."""
        now = snap.t_wall.timestamp()
        self._now_s = now
        while self._jobs and self._jobs[0].done():
            self._take(self._jobs.popleft(), now)
        return usable(self.plan, now)

    def after(self, snap: SiteSnapshot, before: IntervalState, now_iv: IntervalState) -> None:
        """After decide(): an interval that closed goes to the history and a new plan is asked for."""
        now = snap.t_wall.timestamp()
        soc = site_soc(snap.clusters).soc_pct
        soc_pct = soc if soc is not None else math.nan
        prev_t, self._prev_t_s = self._prev_t_s, now
        if now_iv.key != before.key and before.key >= 0 and prev_t == prev_t:
            done = None
            if before.covered_s >= MIN_COVERED * self.length_s:
                start = interval_bounds(prev_t, self.tz, self.length_s)[0]
                done = Interval(start, before.net_ws / before.covered_s, before.grid_ws / before.covered_s)
            self._ask(done, now, soc_pct, R_EVERY)
        elif not self._asked:
            self._ask(None, now, soc_pct, R_START)
        elif self.plan is not None and not self._jobs and now_iv.key != self._departed_key:
            gap = self._gap_pct(now, soc_pct)
            if abs(gap) > self.cfg.departure_soc_pct:
                self._departed_key = now_iv.key
                self._ask(None, now, soc_pct, f"{R_DEPARTURE}: SoC {soc_pct:.1f} % vs planned {soc_pct - gap:.1f} %")

    def running(self, t_s: float) -> PlanTarget | None:
        """The plan's SoC target and grid cap at `t_s` (None while no plan is tracked)."""
        p = usable(self.plan, t_s)
        if p is None:
            return None
        k = p.slot_at(t_s)
        share = (t_s - p.start_s - k * p.step_s) / p.step_s
        return PlanTarget(p.soc_at(k, share), float(p.grid_cap_w[k]))

    @property
    def solving(self) -> bool:
        """A job is queued or running in the worker."""
        return bool(self._jobs)

    def close(self) -> None:
        """Stop taking work; a solve in progress ends by its time limit, its result unused."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _gap_pct(self, now: float, soc_pct: float) -> float:
        t = self.running(now)
        return soc_pct - t.soc_pct if t is not None and soc_pct == soc_pct else 0.0

    def _ask(self, done: Interval | None, now: float, soc_pct: float, why: str) -> None:
        self._asked = True
        self._jobs.append(self._pool.submit(self._solve, done, now, soc_pct, why))

    def _take(self, job: Future[_Outcome], now: float) -> None:
        try:
            o = job.result()
        except Exception as e:  # a bug or bad data in the forecast/solver: a failed solve, not a dead loop
            log.exception("planner: solve raised")
            kept = usable(self.plan, now)
            o = _Outcome(kept, True, f"{type(e).__name__}: {e}", now, *self.stats, self.history_intervals, math.nan)
        self.stats = (o.solves, o.failures, o.cold)
        self.job_s = o.job_s
        if o.accuracy is not None:
            self.accuracy = o.accuracy
        self.history_intervals = o.history
        wall = datetime.fromtimestamp(now, self.tz)
        if o.failed:
            reason = R_FAILED_KEPT if o.plan is not None else R_FAILED_NONE
            limit = self.replanner.settings.time_limit_s
            msg = f"{reason} ({o.why}; {o.failures} of {o.solves} solves failed, time limit {limit:g} s)"
            if self.alarms.raise_(ALARM, SOURCE, msg, wall):
                log.warning("alarm raised", extra=kv(code=ALARM, source=SOURCE, message=msg))
        else:
            reason = o.why
            self.alarms.clear(ALARM, SOURCE, wall)
        if self._history_error is not None:
            log.warning(self._history_error, extra=kv(file=str(self.history.path)))
            self._history_error = None
        self.plan = o.plan
        self.reason = reason
        self.changes.append((o.at_s, reason))
        self.version += 1
        log.info(
            "plan changed",
            extra=kv(reason=reason, solve_ms=round(o.plan.solve_s * 1000.0, 1) if o.plan is not None else None),
        )

    # --- the worker thread ---------------------------------------------------------------------
    def _solve(self, done: Interval | None, now: float, soc_pct: float, why: str) -> _Outcome:
        t0 = time.perf_counter()  # measured for the read-out, never used to decide
        rp = self.replanner
        if done is not None:
            self._recent.append(done)
            del self._recent[: -self.history.keep]
            try:
                self.history.append(done, self._recent)
            except OSError as e:  # the plan goes on from memory; the next restart has less history
                self._history_error = f"planner history {self.history.path}: cannot be written ({e.strerror})"
            rp.completed(done.start_s, done.net_w, done.grid_w)
        plan, failed = rp.plan_at(now, soc_pct)
        if plan is None and not failed:
            why = R_NO_SOC if soc_pct != soc_pct else R_COLD
        s = rp.stats
        # A running agent solves ~100 times a day: what the Replanner keeps for a replay's report
        # (every forecast, every solve time, all history) is bounded here to what the forecast and
        # the accuracy figures read, or it grows by some 250 KB a day for as long as the agent runs.
        del s.forecasts[:-FORECASTS_KEPT], s.solve_s[:-FORECASTS_KEPT]
        del rp.hist_ts[: -self.history.keep], rp.hist_net[: -self.history.keep]
        acc = None
        if done is not None:  # the forecasts made so far against the intervals recorded since
            ts, net = np.asarray(rp.hist_ts, dtype=np.float64), np.asarray(rp.hist_net, dtype=np.float64)
            acc = {
                k: (v if math.isfinite(v) else None)
                for k, v in forecast_accuracy(s.forecasts, ts, net, DAY_S, self.tz).items()
            }
        job_s = time.perf_counter() - t0
        return _Outcome(plan, failed, why, now, s.solves, s.failures, s.cold, len(self._recent), job_s, acc)

    # --- the read-out ------------------------------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """GET /api/plan: the next 24 h of the plan, its age, solve time and the reason it changed."""
        now = self._now_s
        solves, failures, cold = self.stats
        p = usable(self.plan, now) if now == now else None
        slots = None
        if p is not None:  # built once per plan and slot (96 of them cost ~1.5 ms; read every cycle by MQTT)
            key = (self.version, running_slot(p, now))
            if self._slots is None or self._slots[0] != key:
                self._slots = (key, plan_slots(p, key[1], self.tz))
            slots = self._slots[1]
        return plan_view(
            p,
            now,
            self.tz,
            {
                "enabled": True,
                "reason": self.reason,
                "solving": self.solving,
                "job_ms": self.job_s * 1000.0 if self.job_s == self.job_s else None,
                "horizon_h": self.cfg.horizon_s / 3600.0,
                "history_intervals": self.history_intervals,
                "solves": solves,
                "failures": failures,
                "cold_intervals": cold,
                "forecast": self.accuracy,
                "changes": [
                    {"t": datetime.fromtimestamp(t, self.tz).isoformat(), "reason": r}
                    for t, r in reversed(self.changes)
                ],
                "version": self.version,
            },
            slots,
        )
