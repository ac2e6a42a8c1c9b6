"""How well the health module foresaw end of life in a replayed aging record (pure).

Truth comes from the noise-free record: a cluster's end of life is the first day its capacity,
as a centred 5-day median (so one outlier cycle neither triggers nor hides it), is below
`EOL_CAPACITY_PCT` of the first capacity, or its resistance is at the rule's limit, and stays
there to the end of the record: wear does not heal, so a visit past the limit that returns
(CALCE CS2_38's resistance, 60-80 % up for ~75 cycles, then back under its start; CS2_35 and
CS2_37's capacity dipping under 80 % for days before a partial recovery) is an excursion, not
the end. A record that stops before that is censored: listed with what the module said, never
scored.

Per cluster: the first recommendation's day and lead time (from the day after it closed, as
in bench/health_bench.py, to the end of life) and the end of life it predicted then (its
central figure and interval). For the fleet: Spearman rank correlation of predicted against
true end of life, whether the first to fail were flagged before any other, false alarms
(recommendations more than `MAX_LEAD` days early, and every peer-drift alarm on a fleet that
ages alike when `peers_alarm` says so) and misses (no recommendation `MIN_LEAD` days ahead).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from agent.health.assess import PLAN_MAX_DAYS, RULES
from agent.health.replay import ClusterSeries, ReplayOutcome

EOL_CAPACITY_PCT = 80.0
EOL_RESISTANCE_MOHM = next(r.limit for r in RULES if r.name == "resistance_mohm")
MIN_LEAD = 30  # days the owner needs to order and fit a replacement
MAX_LEAD = int(PLAN_MAX_DAYS)  # earlier than this wastes service life
TRUTH_HALF = 2  # centred median over 2 * TRUTH_HALF + 1 days


@dataclass(frozen=True, slots=True)
class ClusterScore:
    cluster_id: str
    source_id: str
    last_day: int  # last day of the record
    true_eol: int | None  # None: the record stops before end of life (censored)
    first_rec_day: int | None
    indicator: str  # of the first recommendation ("" if none)
    basis: str
    predicted_eol: float  # first recommendation's day + its central days to the limit (NaN if none)
    interval: tuple[float, float]  # its interval, as days of the record
    lead: int | None  # true_eol - (first_rec_day + 1)
    said: str  # censored clusters: what the module said on the record's last day

    @property
    def scored(self) -> bool:
        return self.true_eol is not None


@dataclass(frozen=True, slots=True)
class FleetScore:
    clusters: tuple[ClusterScore, ...]
    spearman: float  # predicted vs true end of life over scored clusters
    first_flagged_first: bool  # the `n_first` earliest to fail were flagged before any other
    n_first: int
    false_alarms: tuple[str, ...]
    misses: tuple[str, ...]
    # connection findings (agent/health/corroborate.py), first per cluster: listed, not scored
    # (not wear: no end of life to lead, no rank)
    connection: tuple[str, ...] = ()

    @property
    def leads(self) -> list[int]:
        return [c.lead for c in self.clusters if c.scored and c.lead is not None]

    @property
    def covered(self) -> tuple[int, int]:
        """(true end of life inside the interval given at the first recommendation, intervals given)."""
        given = [c for c in self.clusters if c.scored and math.isfinite(c.interval[0])]
        inside = [c for c in given if c.true_eol is not None and c.interval[0] <= c.true_eol <= c.interval[1]]
        return len(inside), len(given)


def true_eol(s: ClusterSeries) -> int | None:
    """First day of the run of days past a limit that lasts to the record's end (None: none)."""
    n = len(s.day)
    eol = None
    for k in range(n - 1, -1, -1):  # from the end back, while the days are past a limit
        lo, hi = max(0, k - TRUTH_HALF), min(n, k + TRUTH_HALF + 1)
        cap = s.capacity_pct[lo:hi]
        res = s.resistance_mohm[lo:hi]
        cap_med = float(np.nanmedian(cap)) if np.isfinite(cap).any() else math.nan
        res_med = float(np.nanmedian(res)) if np.isfinite(res).any() else math.nan
        if not (cap_med < EOL_CAPACITY_PCT or res_med >= EOL_RESISTANCE_MOHM):
            break
        eol = int(s.day[k])
    return eol


def score(
    series: Sequence[ClusterSeries], out: ReplayOutcome, n_first: int = 3, peers_alarm: bool = False
) -> FleetScore:
    rows = []
    false_alarms: list[str] = []
    misses: list[str] = []
    for s in series:
        cid = s.cluster_id
        eol = true_eol(s)
        first = out.first_rec.get(cid)
        rec = out.first.get(cid)
        pred = math.nan
        interval = (math.nan, math.nan)
        if rec is not None and first is not None:
            pred = first + rec.days_to_limit
            if rec.basis == "forecast":
                interval = (first + rec.days_early, first + rec.days_late)
        lead = None if eol is None or first is None else eol - (first + 1)
        said = "; ".join(r.text for r in out.last.get(cid, [])) or "no recommendation"
        rows.append(
            ClusterScore(
                cid, s.source_id, int(s.day[-1]), eol, first, rec.indicator if rec else "", rec.basis if rec else "",
                pred, interval, lead, said,
            )
        )  # fmt: skip
        if eol is None:
            continue
        if lead is None or lead < MIN_LEAD:
            misses.append(f"{cid}: end of life day {eol}, first recommendation day {first}")
        elif lead > MAX_LEAD:
            false_alarms.append(f"{cid}: recommended on day {first}, {lead} days before end of life day {eol}")
    if peers_alarm:
        for day, r in out.peer_alarms:
            false_alarms.append(f"{r.cluster_id}: peer drift on {r.indicator} on day {day}")
    connection = tuple(
        f"{r.cluster_id}: {r.label}, days {_spans(out, r.cluster_id)}; first on day {day}: {r.text}"
        for day, r in out.connection
    )
    scored = [c for c in rows if c.scored]
    rho = math.nan
    if len(scored) >= 3:
        # a cluster never recommended predicts "later than any": it ranks last
        ranked = [c.predicted_eol if math.isfinite(c.predicted_eol) else math.inf for c in scored]
        res = spearmanr([c.true_eol for c in scored], ranked)
        rho = float(res.statistic)
    order = sorted(scored, key=lambda c: c.true_eol if c.true_eol is not None else 0)
    head = order[:n_first]
    rest = [c for c in rows if c not in head]
    first_flagged_first = bool(head) and all(c.first_rec_day is not None for c in head)
    if first_flagged_first:
        latest_head = max(c.first_rec_day for c in head if c.first_rec_day is not None)
        first_flagged_first = all(c.first_rec_day is None or c.first_rec_day > latest_head for c in rest)
    return FleetScore(tuple(rows), rho, first_flagged_first, n_first, tuple(false_alarms), tuple(misses), connection)


def _spans(out: ReplayOutcome, cid: str) -> str:
    """The runs of days `cid` had the connection finding, as "49-143, 217-232"."""
    days = [
        d
        for d, recs in sorted(out.by_day.items())
        if any(r.cluster_id == cid and r.basis == "connection" for r in recs)
    ]
    runs: list[list[int]] = []
    for d in days:
        if runs and d == runs[-1][1] + 1:
            runs[-1][1] = d
        else:
            runs.append([d, d])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)
