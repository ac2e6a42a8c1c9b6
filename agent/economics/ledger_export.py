"""The ledger as CSV for an auditor: every interval, per price period, with the tariff it was billed on.

One row per (demand interval, price period the interval touched). Energies are summed over the
interval's seconds with good data (the ledger's coverage rules, LEDGER.md); the interval-level
columns (counted, interval_covered_s, the average imports, the demand charges) repeat on each
period row of an interval: sum the per-period columns, take maxima of the interval ones. An
interval recorded before the per-period breakdown existed (a ledger.db from before schema 2), or
one with no good data at all, has one row with an empty period holding the interval's totals.

Comment lines (`#`) first state the tariff and the economics settings used, so the file can be
re-billed without the agent: energy savings = sum over counted rows of
(baseline_import - f x baseline_export - grid_import + f x grid_export) x price (f = export price
factor); each demand charge saves rate x (highest baseline_avg_import_w - highest
actual_avg_import_w) / 1000 over the billing month's counted intervals it applies to;
degradation = discharged kWh x its cost; outage value = protected_s / 60 x its value.
"""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TextIO

from agent.economics.roi import EconomicsConfig
from agent.economics.tariff import Tariff

# per-period sums as stored (Wh, s, currency) -> CSV column (kWh, s, currency)
_SUMS = (
    ("covered_s", "covered_s", 1.0),
    ("actual_import_wh", "grid_import_kwh", 1e-3),
    ("actual_export_wh", "grid_export_kwh", 1e-3),
    ("baseline_import_wh", "baseline_import_kwh", 1e-3),
    ("baseline_export_wh", "baseline_export_kwh", 1e-3),
    ("discharge_wh", "battery_discharge_kwh", 1e-3),
    ("charge_wh", "battery_charge_kwh", 1e-3),
    ("outage_s", "outage_s", 1.0),
    ("protected_s", "protected_s", 1.0),
    ("actual_cost", "actual_energy_cost", 1.0),
    ("baseline_cost", "baseline_energy_cost", 1.0),
)
_INTERVAL = (
    "interval_start", "interval_start_unix", "length_s", "billing_month", "day", "counted",
    "interval_covered_s", "actual_avg_import_w", "baseline_avg_import_w", "demand_charges", "demand_rate",
)  # fmt: skip
COLUMNS = (*_INTERVAL, "period", "price_per_kwh", *(c for _, c, _ in _SUMS))


def header_lines(tariff: Tariff, cfg: EconomicsConfig) -> list[str]:
    prices = "; ".join(f"{n}={p!r}" for n, p in zip(tariff.period_names, tariff.period_prices, strict=True))
    lines = [
        "ems-agent ledger export (LEDGER.md describes every column and the coverage rules)",
        f"tariff: {tariff.name}; source: {tariff.source or '-'}",
        f"currency: {tariff.currency}; timezone: {tariff.timezone.key}; billing_day: {tariff.billing_day}",
        f"demand_interval_s: {tariff.demand_interval_s!r}; export_price_factor: {tariff.export_price_factor!r}",
        f"energy prices per kWh: {prices} (each row carries the price it was billed at)",
    ]
    lines += [f"demand charge: {d.name}; rate: {d.rate!r} per kW-month" for d in tariff.demand]
    lines.append(
        f"economics: degradation_cost_per_kwh={cfg.degradation_cost_per_kwh!r}; "
        f"outage_value_per_min={cfg.outage_value_per_min!r}; min_coverage={cfg.min_coverage!r}; "
        f"max_hold_s={cfg.max_hold_s!r}"
    )
    return lines


def _has_periods(db: sqlite3.Connection) -> bool:
    q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'interval_periods'"
    return db.execute(q).fetchone() is not None


def rows(db: sqlite3.Connection, tariff: Tariff) -> Iterator[dict[str, Any]]:
    """The export's rows, oldest interval first (a ledger.db of any schema version)."""
    sums = ", ".join(s for s, _, _ in _SUMS)
    periods: dict[float, list[tuple[Any, ...]]] = {}
    if _has_periods(db):
        for r in db.execute(f"SELECT start, period, price, {sums} FROM interval_periods ORDER BY start, period"):
            periods.setdefault(float(r[0]), []).append(r[1:])
    q = (
        "SELECT start, length_s, month, day, valid, covered_s, actual_avg_w, baseline_avg_w, demand_mask,"
        f" demand_rate, {sums} FROM intervals ORDER BY start"
    )
    for r in db.execute(q):
        start = float(r[0])
        mask = int(r[8])
        head: dict[str, Any] = {
            "interval_start": datetime.fromtimestamp(start, tariff.timezone).isoformat(),
            "interval_start_unix": start,
            "length_s": r[1],
            "billing_month": r[2],
            "day": r[3],
            "counted": int(r[4]),
            "interval_covered_s": r[5],
            "actual_avg_import_w": r[6],
            "baseline_avg_import_w": r[7],
            "demand_charges": ";".join(d.name for j, d in enumerate(tariff.demand) if (mask >> j) & 1),
            "demand_rate": r[9],
        }
        per = periods.get(start) or [("", "", *r[10:])]
        for p in per:
            yield {
                **head,
                "period": p[0],
                "price_per_kwh": p[1],
                **{col: float(v) * k for (_, col, k), v in zip(_SUMS, p[2:], strict=True)},
            }


def write_csv(db: sqlite3.Connection, tariff: Tariff, cfg: EconomicsConfig, out: TextIO) -> int:
    """Write the export to `out`; returns the number of rows."""
    for line in header_lines(tariff, cfg):
        out.write(f"# {line}\n")
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    n = 0
    for row in rows(db, tariff):
        w.writerow(row)
        n += 1
    return n
