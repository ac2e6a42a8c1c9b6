"""Realized-savings ledger: measured baseline vs actual, interval by interval, persisted in SQLite.

Per demand interval of the tariff (aligned by agent.model.interval, like billing.py and control):

- actual = the grid meter; baseline = grid + battery output (what the meter would have read
  without the battery; IPMVP Option B style, nothing modelled). While the grid is down the
  battery is the UPS, not an arbitrage: baseline = actual, and the minutes the battery carried
  the load are valued at `outage_value_per_min` instead;
- energy savings = baseline energy cost - actual energy cost at the time-of-use price (export
  credited as the tariff says); degradation = discharged kWh x cost per kWh;
- demand savings are per billing month: for each demand charge, rate x (baseline month peak -
  actual month peak) over the month's counted intervals in its window;
- an interval with good data (grid and battery both GOOD) for less than `min_coverage` of its
  length is stored but marked excluded: it never counts as zero savings, and summaries report
  the time excluded (and the time lost between recorded intervals) apart. Counted intervals are
  not extrapolated to their missing seconds in the realized savings; the annual estimate
  (agent.economics.annual) takes its rate over the seconds with data.

A sample holds until the next one, for at most `max_hold_s`; an interval closes when a sample
arrives at or after its end. Closed intervals are written at once (SQLite WAL, synchronous
FULL) keyed by their start with INSERT OR IGNORE: a restart, or a replay of cycles already
seen, neither loses nor double counts a closed interval. The interval in progress when the
process stops cleanly is kept (`pending`) and resumed by the next start if it falls in the same
interval (the seconds in between are uncovered), else closed with the coverage it had; a crash
loses it. Each interval also keeps its energies per price period (`interval_periods`): what an
auditor needs to re-bill it (agent.economics.ledger_export, LEDGER.md).
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, tzinfo
from pathlib import Path
from typing import Any, NamedTuple

from agent.economics.annual import MonthFigures, estimate
from agent.economics.roi import EconomicsConfig, roi
from agent.economics.tariff import Tariff
from agent.model.interval import DAY_S, interval_bounds, local_slot, slots_per_day

WH_PER_WS = 1.0 / 3600.0

log = logging.getLogger("ems.ledger")


class LedgerSample(NamedTuple):
    """What the ledger needs from one control cycle (SI units, wall time)."""

    t: float  # Unix time (s)
    grid_w: float  # positive = import
    battery_w: float  # positive = discharge
    load_w: float
    grid_up: bool
    grid_ok: bool
    battery_ok: bool
    load_ok: bool = True


def sample_from_snapshot(snap: Any) -> LedgerSample:
    """A LedgerSample from an agent.model.snapshot.SiteSnapshot (duck-typed to keep this module light)."""
    bat = snap.battery_w
    return LedgerSample(
        t=snap.t_wall.timestamp(),
        grid_w=snap.grid_w.value,
        battery_w=bat,
        load_w=snap.load_w.value,
        grid_up=snap.grid_up,
        grid_ok=snap.grid_w.ok,
        battery_ok=math.isfinite(bat),
        load_ok=snap.load_w.ok,
    )


@dataclass
class Sums:
    """Energies (Wh), costs (currency) and times (s) of good data, of an interval or a price period."""

    covered_s: float = 0.0
    actual_import_wh: float = 0.0
    actual_export_wh: float = 0.0
    baseline_import_wh: float = 0.0
    baseline_export_wh: float = 0.0
    actual_cost: float = 0.0
    baseline_cost: float = 0.0
    discharge_wh: float = 0.0
    charge_wh: float = 0.0
    outage_s: float = 0.0
    protected_s: float = 0.0

    def add(self, s: LedgerSample, seconds: float, price: float, export_factor: float) -> None:
        """Account `s` held for `seconds` (the caller checked the data is good)."""
        h = seconds * WH_PER_WS
        self.covered_s += seconds
        grid = s.grid_w
        base = grid + s.battery_w if s.grid_up else grid
        a_imp, a_exp = max(grid, 0.0) * h, max(-grid, 0.0) * h
        b_imp, b_exp = max(base, 0.0) * h, max(-base, 0.0) * h
        self.actual_import_wh += a_imp
        self.actual_export_wh += a_exp
        self.baseline_import_wh += b_imp
        self.baseline_export_wh += b_exp
        kwh_price = price / 1000.0
        self.actual_cost += (a_imp - export_factor * a_exp) * kwh_price
        self.baseline_cost += (b_imp - export_factor * b_exp) * kwh_price
        self.discharge_wh += max(s.battery_w, 0.0) * h
        self.charge_wh += max(-s.battery_w, 0.0) * h
        if not s.grid_up:
            self.outage_s += seconds
            if s.battery_w > 0.0:
                self.protected_s += seconds


@dataclass
class Accumulator(Sums):
    """One interval in progress: its sums, and the same per price period (name -> (price, sums))."""

    start: float = 0.0
    periods: dict[str, tuple[float, Sums]] = field(default_factory=dict)

    def account(self, s: LedgerSample, seconds: float, period: str, price: float, export_factor: float) -> None:
        if not (s.grid_ok and s.battery_ok) or seconds <= 0.0:
            return
        self.add(s, seconds, price, export_factor)
        if period not in self.periods:
            self.periods[period] = (price, Sums())
        self.periods[period][1].add(s, seconds, price, export_factor)

    def to_json(self) -> str:
        d = asdict(self)
        d["periods"] = {k: [p, asdict(x)] for k, (p, x) in self.periods.items()}
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Accumulator:
        d = json.loads(text)
        periods = {k: (float(p), Sums(**x)) for k, (p, x) in d.pop("periods").items()}
        return cls(**d, periods=periods)


_COLUMNS = (
    "covered_s",
    "actual_import_wh",
    "actual_export_wh",
    "baseline_import_wh",
    "baseline_export_wh",
    "actual_cost",
    "baseline_cost",
    "discharge_wh",
    "charge_wh",
    "outage_s",
    "protected_s",
)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS intervals (
    start REAL PRIMARY KEY,
    length_s REAL NOT NULL,
    month TEXT NOT NULL,
    day TEXT NOT NULL,
    valid INTEGER NOT NULL,
    {", ".join(f"{c} REAL NOT NULL" for c in _COLUMNS)},
    actual_avg_w REAL NOT NULL,
    baseline_avg_w REAL NOT NULL,
    demand_mask INTEGER NOT NULL,
    demand_rate REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS intervals_month ON intervals (month);
CREATE INDEX IF NOT EXISTS intervals_day ON intervals (day);
CREATE TABLE IF NOT EXISTS interval_periods (
    start REAL NOT NULL,
    period TEXT NOT NULL,
    price REAL NOT NULL,
    {", ".join(f"{c} REAL NOT NULL" for c in _COLUMNS)},
    PRIMARY KEY (start, period)
);
CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY CHECK (id = 1), acc TEXT NOT NULL);
"""
# user_version 1: the first ledger (intervals only); 2: + interval_periods, pending. Opening an
# older database adds the tables; its old intervals stay, without a per-period breakdown.
SCHEMA_VERSION = 2


@dataclass(frozen=True, slots=True)
class DemandSaving:
    name: str
    rate: float
    baseline_peak_w: float
    actual_peak_w: float

    @property
    def savings(self) -> float:
        return self.rate * (self.baseline_peak_w - self.actual_peak_w) / 1000.0


@dataclass(frozen=True, slots=True)
class Summary:
    """Savings over a day, a billing month or to date (currency; kWh; s)."""

    label: str
    energy_savings: float  # baseline - actual energy cost
    demand_savings: float  # 0 for a day: demand is billed per month
    degradation_cost: float
    outage_value: float
    discharge_kwh: float
    charge_kwh: float
    counted_s: float  # length of the intervals that count
    excluded_s: float  # length of the intervals excluded for missing data
    intervals: int
    excluded_intervals: int
    demand: tuple[DemandSaving, ...] = field(default=())
    covered_s: float = 0.0  # seconds with good data inside the counted intervals
    lost_s: float = 0.0  # time within the ledger's span with no interval recorded (agent down)

    @property
    def net_savings(self) -> float:
        return self.energy_savings + self.demand_savings + self.outage_value - self.degradation_cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "net_savings": self.net_savings,
            "energy_savings": self.energy_savings,
            "demand_savings": self.demand_savings,
            "degradation_cost": self.degradation_cost,
            "outage_value": self.outage_value,
            "discharge_kwh": self.discharge_kwh,
            "charge_kwh": self.charge_kwh,
            "counted_h": self.counted_s / 3600.0,
            "uncovered_h": (self.counted_s - self.covered_s) / 3600.0,
            "excluded_h": self.excluded_s / 3600.0,
            "lost_h": self.lost_s / 3600.0,
            "intervals": self.intervals,
            "excluded_intervals": self.excluded_intervals,
            "demand": [
                {
                    "name": d.name,
                    "rate": d.rate,
                    "baseline_peak_kw": d.baseline_peak_w / 1000.0,
                    "actual_peak_kw": d.actual_peak_w / 1000.0,
                    "savings": d.savings,
                }
                for d in self.demand
            ],
        }


class Ledger:
    """Live savings ledger. Not thread-safe: feed it from one task (e.g. a hub Sink)."""

    def __init__(self, db_path: Path | str, tariff: Tariff, cfg: EconomicsConfig) -> None:
        self.tariff = tariff
        self.cfg = cfg
        self.length_s = tariff.demand_interval_s
        self.db = sqlite3.connect(str(db_path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self._prev: LedgerSample | None = None
        self._acc: Accumulator | None = None
        row = self.db.execute("SELECT acc FROM pending WHERE id = 1").fetchone()
        if row is not None:  # the interval in progress at the last clean stop: resumed by feed()
            self.db.execute("DELETE FROM pending")
            try:
                acc = Accumulator.from_json(row[0])
            except (ValueError, TypeError, KeyError, AttributeError) as e:  # a hand-edited or foreign row
                log.warning("ledger: %s table 'pending' unreadable, interval in progress dropped: %s", db_path, e)
            else:  # (a tariff with another interval length since: its alignment no longer holds)
                self._acc = acc if acc.start % self.length_s == 0.0 else None
        self.duplicates = 0  # closed intervals already in the database (replays)

    def close(self) -> None:
        """Keep the interval in progress for the next start (see the module's docstring), close."""
        if self._acc is not None:
            self.db.execute("INSERT OR REPLACE INTO pending (id, acc) VALUES (1, ?)", (self._acc.to_json(),))
        self.db.close()

    # --- feeding ---------------------------------------------------------------------------
    def feed(self, s: LedgerSample) -> list[float]:
        """Account one cycle; returns the starts of the intervals this closed (newly recorded)."""
        if not math.isfinite(s.t):
            return []
        prev = self._prev
        closed: list[float] = []
        if prev is not None and s.t <= prev.t:
            # The wall clock went back (NTP step, replay): start over from this sample rather
            # than account negative time; the interval in progress is dropped.
            self._acc = None
            self._prev = s
            return closed
        if prev is None and self._acc is not None and s.t < self._acc.start:
            self._acc = None  # the interval resumed from the last stop lies ahead: a replay recounts it
        if prev is not None:
            closed += self._account(prev, prev.t, min(s.t, prev.t + self.cfg.max_hold_s))
        # close every interval that ended at or before now
        if self._acc is not None and s.t >= interval_bounds(self._acc.start, self.tariff.timezone, self.length_s)[1]:
            if self._store(self._acc):
                closed.append(self._acc.start)
            self._acc = None
        self._prev = s
        return closed

    def _account(self, s: LedgerSample, t0: float, t1: float) -> list[float]:
        """Add sample `s` held over [t0, t1), split at interval boundaries; returns closed starts."""
        L = self.length_s
        closed: list[float] = []
        t = t0
        while t < t1:
            start, end = interval_bounds(t, self.tariff.timezone, L)
            if self._acc is not None and self._acc.start != start:
                if self._store(self._acc):
                    closed.append(self._acc.start)
                self._acc = None
            if self._acc is None:
                self._acc = Accumulator(start=start)
            piece_end = min(t1, end)
            when = datetime.fromtimestamp(t, self.tariff.timezone)
            tf = self.tariff
            self._acc.account(s, piece_end - t, tf.period_at(when), tf.energy_price(when), tf.export_price_factor)
            t = piece_end
        return closed

    def _store(self, acc: Accumulator) -> bool:
        """Write a closed interval; False if one with the same start is already recorded."""
        L = self.length_s
        tz = self.tariff.timezone
        local = datetime.fromtimestamp(acc.start, tz)
        valid = acc.covered_s >= self.cfg.min_coverage * L
        cov = acc.covered_s
        actual_avg = acc.actual_import_wh * 3600.0 / cov if cov > 0 else 0.0
        baseline_avg = acc.baseline_import_wh * 3600.0 / cov if cov > 0 else 0.0
        values = [getattr(acc, c) for c in _COLUMNS]
        self.db.execute("BEGIN")  # the interval and its periods together, or neither
        cur = self.db.execute(
            f"INSERT OR IGNORE INTO intervals (start, length_s, month, day, valid, {', '.join(_COLUMNS)}, "
            "actual_avg_w, baseline_avg_w, demand_mask, demand_rate) "
            f"VALUES ({', '.join('?' * (9 + len(_COLUMNS)))})",
            (
                acc.start,
                L,
                self.tariff.billing_month(local.date()).isoformat(),
                local.date().isoformat(),
                int(valid),
                *values,
                actual_avg,
                baseline_avg,
                self.tariff.demand_mask(local),
                self.tariff.demand_rate(local),
            ),
        )
        if cur.rowcount == 0:
            self.db.execute("COMMIT")
            self.duplicates += 1
            return False
        self.db.executemany(
            f"INSERT OR IGNORE INTO interval_periods (start, period, price, {', '.join(_COLUMNS)})"
            f" VALUES ({', '.join('?' * (3 + len(_COLUMNS)))})",
            [
                (acc.start, name, price, *(getattr(sums, c) for c in _COLUMNS))
                for name, (price, sums) in sorted(acc.periods.items())
            ],
        )
        self.db.execute("COMMIT")
        return True

    # --- read-outs -------------------------------------------------------------------------
    def _summary(self, label: str, where: str, args: tuple[Any, ...], month: bool) -> Summary:
        deg = self.cfg.degradation_cost_per_kwh
        row = self.db.execute(
            "SELECT COALESCE(SUM(CASE WHEN valid THEN baseline_cost - actual_cost END), 0),"
            " COALESCE(SUM(CASE WHEN valid THEN discharge_wh END), 0),"
            " COALESCE(SUM(CASE WHEN valid THEN charge_wh END), 0),"
            " COALESCE(SUM(CASE WHEN valid THEN protected_s END), 0),"
            " COALESCE(SUM(CASE WHEN valid THEN length_s END), 0),"
            " COALESCE(SUM(CASE WHEN valid THEN 0 ELSE length_s END), 0),"
            " COUNT(*), COALESCE(SUM(1 - valid), 0),"
            " COALESCE(SUM(CASE WHEN valid THEN covered_s END), 0)"
            f" FROM intervals WHERE {where}",
            args,
        ).fetchone()
        demand: tuple[DemandSaving, ...] = ()
        if month:
            demand = tuple(self._demand(args[0], j) for j in range(len(self.tariff.demand)))
        return Summary(
            label=label,
            energy_savings=row[0],
            demand_savings=sum(d.savings for d in demand),
            degradation_cost=row[1] / 1000.0 * deg,
            outage_value=row[3] / 60.0 * self.cfg.outage_value_per_min,
            discharge_kwh=row[1] / 1000.0,
            charge_kwh=row[2] / 1000.0,
            counted_s=row[4],
            excluded_s=row[5],
            intervals=row[6],
            excluded_intervals=row[7],
            demand=demand,
            covered_s=row[8],
            lost_s=self._lost_s(label) if month else 0.0,
        )

    def _month_bounds(self, start: date) -> tuple[float, float]:
        """Unix [start, end) of the billing month starting on `start`."""
        tz = self.tariff.timezone
        end = self.tariff.next_billing_month(start)
        return datetime.combine(start, time(), tz).timestamp(), datetime.combine(end, time(), tz).timestamp()

    def _lost_s(self, month: str) -> float:
        """Time of this month inside the ledger's span that no recorded interval covers."""
        sp = self.span()
        if sp is None:
            return 0.0
        a, b = self._month_bounds(date.fromisoformat(month))
        inside = max(0.0, min(b, sp[1]) - max(a, sp[0]))
        q = "SELECT COALESCE(SUM(length_s), 0) FROM intervals WHERE month = ?"
        (recorded,) = self.db.execute(q, (month,)).fetchone()
        return max(0.0, inside - float(recorded))

    def _demand(self, month: str, j: int) -> DemandSaving:
        ch = self.tariff.demand[j]
        b, a = self.db.execute(
            "SELECT COALESCE(MAX(baseline_avg_w), 0), COALESCE(MAX(actual_avg_w), 0) FROM intervals"
            " WHERE month = ? AND valid AND (demand_mask >> ?) & 1",
            (month, j),
        ).fetchone()
        return DemandSaving(ch.name, ch.rate, float(b), float(a))

    def day(self, d: date) -> Summary:
        """Savings on a local day (energy, degradation, outage; demand is per month)."""
        return self._summary(d.isoformat(), "day = ?", (d.isoformat(),), month=False)

    def month(self, start: date) -> Summary:
        """Savings in the billing month starting on `start` (see Tariff.billing_month)."""
        return self._summary(start.isoformat(), "month = ?", (start.isoformat(),), month=True)

    def months(self) -> list[Summary]:
        rows = self.db.execute("SELECT DISTINCT month FROM intervals ORDER BY month").fetchall()
        return [self.month(date.fromisoformat(r[0])) for r in rows]

    def days(self) -> list[Summary]:
        rows = self.db.execute("SELECT DISTINCT day FROM intervals ORDER BY day").fetchall()
        return [self.day(date.fromisoformat(r[0])) for r in rows]

    def to_date(self) -> Summary:
        """Every billing month summed (demand savings month by month)."""
        ms = self.months()
        ds = [x for m in ms for x in m.demand]
        return Summary(
            label="to_date",
            energy_savings=sum(m.energy_savings for m in ms),
            demand_savings=sum(m.demand_savings for m in ms),
            degradation_cost=sum(m.degradation_cost for m in ms),
            outage_value=sum(m.outage_value for m in ms),
            discharge_kwh=sum(m.discharge_kwh for m in ms),
            charge_kwh=sum(m.charge_kwh for m in ms),
            counted_s=sum(m.counted_s for m in ms),
            excluded_s=sum(m.excluded_s for m in ms),
            intervals=sum(m.intervals for m in ms),
            excluded_intervals=sum(m.excluded_intervals for m in ms),
            demand=tuple(ds) if len(ms) == 1 else (),
            covered_s=sum(m.covered_s for m in ms),
            lost_s=sum(m.lost_s for m in ms),
        )

    def span(self) -> tuple[float, float] | None:
        """(first interval start, last interval end) in Unix seconds, or None when empty."""
        a, b = self.db.execute("SELECT MIN(start), MAX(start + length_s) FROM intervals").fetchone()
        return None if a is None else (float(a), float(b))

    def month_peaks(self, start: date) -> dict[float, float]:
        """demand rate (per kW-month) -> highest actual interval average (W) in that billing month.

        Keyed like agent.control.state (by summed rate) so a restarted controller can be seeded
        with the peaks the utility will bill anyway (initial_state(month_peaks=...)).
        """
        rows = self.db.execute(
            "SELECT demand_rate, MAX(actual_avg_w) FROM intervals"
            " WHERE month = ? AND valid AND demand_rate > 0 GROUP BY demand_rate",
            (start.isoformat(),),
        ).fetchall()
        return {float(r): float(w) for r, w in rows}

    def day_profile(self, now_s: float, tz: tzinfo) -> list[float]:
        """Baseline (no-battery) average per demand interval of the local day from midnight, over
        the 24 h before Unix time `now_s`; NaN where none counted or the grid was down (the baseline
        then imported nothing, which is not the load's level). Seeds a restarted controller's
        demand profile (initial_state(profile=...)), which it otherwise learns again over a day."""
        length = self.length_s
        prof = [math.nan] * slots_per_day(length)
        for start, w in self.baseline_intervals(now_s - DAY_S, now_s):
            prof[local_slot(datetime.fromtimestamp(start, tz), length)[1]] = w
        return prof

    def baseline_intervals(self, since_s: float, until_s: float) -> list[tuple[float, float]]:
        """(start, baseline average W) of every interval starting in [since_s, until_s), oldest first,
        that counts as the load's level: valid, and the grid up all through (an outage's baseline
        imported nothing). The restarted controller's last days (envelope.ring_of) and its profile."""
        rows = self.db.execute(
            "SELECT start, baseline_avg_w FROM intervals"
            " WHERE valid AND outage_s = 0 AND start >= ? AND start < ? ORDER BY start",
            (since_s, until_s),
        ).fetchall()
        return [(float(a), float(w)) for a, w in rows]

    def booked(self) -> Sums:
        """Everything booked so far, the interval in progress included (every interval, counted or
        not: what the ledger measured, before the coverage rules decide what counts)."""
        sums = ", ".join(f"COALESCE(SUM({c}), 0)" for c in _COLUMNS)
        row = self.db.execute(f"SELECT {sums} FROM intervals").fetchone()
        out = Sums(**dict(zip(_COLUMNS, map(float, row), strict=True)))
        if self._acc is not None:
            for c in _COLUMNS:
                setattr(out, c, getattr(out, c) + getattr(self._acc, c))
        return out

    def month_figures(self, rated_w: float) -> list[MonthFigures]:
        """Each billing month as the annual estimate needs it (`rated_w`: the battery's rated power,
        the most a month's peak can drop)."""
        sp = self.span()
        out = []
        for m in self.months():
            start = date.fromisoformat(m.label)
            a, b = self._month_bounds(start)
            out.append(
                MonthFigures(
                    start=start,
                    end=self.tariff.next_billing_month(start),
                    time_net=m.net_savings - m.demand_savings,
                    covered_s=m.covered_s,
                    counted_s=m.counted_s,
                    demand_savings=m.demand_savings,
                    demand_max=sum(ch.rate for ch in self.tariff.demand) * rated_w / 1000.0,
                    whole=sp is not None and sp[0] <= a and sp[1] >= b,
                )
            )
        return out

    def report(self, clusters: int, pcs: int, rated_w: float = 0.0) -> dict[str, Any]:
        """Everything the API shows: to date, per month, the annual estimate and ROI (hub provider
        'ledger'; its "roi" is provider 'roi'). `rated_w`: the battery's rated power (W)."""
        td = self.to_date()
        sp = self.span()
        days = (sp[1] - sp[0]) / 86400.0 if sp else 0.0
        est = estimate(self.month_figures(rated_w), self.cfg.trailing_days)
        r = roi(
            capex=self.cfg.capex(clusters, pcs),
            annual_opex=self.cfg.annual_opex,
            discount_rate=self.cfg.discount_rate,
            life_years=self.cfg.project_life_years,
            realized_savings=td.net_savings,
            days=days,
            annual_savings=est.annual,
        )
        return {
            "currency": self.tariff.currency,
            "tariff": self.tariff.name,
            "savings_to_date": td.net_savings,
            "to_date": td.as_dict(),
            "months": [m.as_dict() for m in self.months()],
            "roi": {
                "currency": self.tariff.currency,
                "status": "not_enough_data" if est.annual is None else "estimated",
                **r.as_dict(),
                "estimate": est.as_dict(),
                # apart, never counted as zero savings (see agent.economics.annual)
                "excluded_h": td.excluded_s / 3600.0,
                "lost_h": td.lost_s / 3600.0,
                "uncovered_h": (td.counted_s - td.covered_s) / 3600.0,
            },
        }


class LedgerSink:
    """Feeds a Ledger from the hub (agent.live.hub.Sink): one dict update per cycle, a SQLite write
    per closed interval (a few ms every 15 min), so `submit` returns at once."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def submit(self, rec: Any) -> None:
        self.ledger.feed(sample_from_snapshot(rec.snapshot))
