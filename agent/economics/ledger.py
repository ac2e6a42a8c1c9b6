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
  the time excluded. Counted intervals are not extrapolated to their missing seconds.

A sample holds until the next one, for at most `max_hold_s`; an interval closes when a sample
arrives at or after its end. Closed intervals are written at once (SQLite WAL, synchronous
FULL) keyed by their start with INSERT OR IGNORE: a restart, or a replay of cycles already
seen, neither loses nor double counts a closed interval. The interval in progress when the
process stops is lost (its part after the restart is recorded, usually as excluded).
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, NamedTuple

from agent.economics.roi import EconomicsConfig, annualise, roi
from agent.economics.tariff import Tariff
from agent.model.interval import interval_bounds

WH_PER_WS = 1.0 / 3600.0


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
class Accumulator:
    """Sums of one interval in progress (energies in Wh, costs in currency, times in s)."""

    start: float
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
        if not (s.grid_ok and s.battery_ok) or seconds <= 0.0:
            return
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
"""


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
            "excluded_h": self.excluded_s / 3600.0,
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
        self._prev: LedgerSample | None = None
        self._acc: Accumulator | None = None
        self.duplicates = 0  # closed intervals already in the database (replays)

    def close(self) -> None:
        """Close the database. The interval in progress is dropped (it never closed)."""
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
                self._acc = Accumulator(start)
            piece_end = min(t1, end)
            when = datetime.fromtimestamp(t, self.tariff.timezone)
            self._acc.add(s, piece_end - t, self.tariff.energy_price(when), self.tariff.export_price_factor)
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
            self.duplicates += 1
            return False
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
            " COUNT(*), COALESCE(SUM(1 - valid), 0)"
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
        )

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

    def trailing(self, days: float) -> tuple[float, float]:
        """(net savings, days covered) over the trailing window ending at the last interval.

        Energy, outage and degradation come from the window's intervals; the demand savings of
        each billing month are spread evenly over that month's counted time.
        """
        sp = self.span()
        if sp is None:
            return 0.0, 0.0
        lo = max(sp[0], sp[1] - days * 86400.0)
        total = 0.0
        for m in self.months():
            if m.counted_s <= 0:
                continue
            inside = self._summary(m.label, "month = ? AND start >= ?", (m.label, lo), month=False)
            total += inside.net_savings + m.demand_savings * inside.counted_s / m.counted_s
        return total, (sp[1] - lo) / 86400.0

    def report(self, clusters: int, pcs: int) -> dict[str, Any]:
        """Everything the API shows: to date, per month, ROI (hub provider 'ledger')."""
        td = self.to_date()
        sp = self.span()
        days = (sp[1] - sp[0]) / 86400.0 if sp else 0.0
        trail, trail_days = self.trailing(self.cfg.trailing_days)
        r = roi(
            capex=self.cfg.capex(clusters, pcs),
            annual_opex=self.cfg.annual_opex,
            discount_rate=self.cfg.discount_rate,
            life_years=self.cfg.project_life_years,
            realized_savings=td.net_savings,
            days=days,
            trailing_savings=trail,
            trailing_days=trail_days,
        )
        return {
            "currency": self.tariff.currency,
            "tariff": self.tariff.name,
            "savings_to_date": td.net_savings,
            "to_date": td.as_dict(),
            "months": [m.as_dict() for m in self.months()],
            "annualised_trailing": annualise(trail, trail_days),
            "roi": r.as_dict(),
        }


class LedgerSink:
    """Feeds a Ledger from the hub (agent.live.hub.Sink): one dict update per cycle, a SQLite write
    per closed interval (a few ms every 15 min), so `submit` returns at once."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def submit(self, rec: Any) -> None:
        self.ledger.feed(sample_from_snapshot(rec.snapshot))
