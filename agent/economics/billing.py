"""Bill a grid power series with a tariff: pure and numpy-vectorised.

Samples hold their value until the next sample, for at most `max_hold_s` (default twice the
median step): a gap in the data is a gap in the bill, never a guess. NaN samples are gaps too.
Import (grid > 0) pays the time-of-use price; export earns `export_price_factor` x that price.

Demand charges bill, per billing month, the highest average import over the tariff's demand
interval (aligned to local midnight by agent.model.interval, as the controller and the ledger
align it), among the intervals whose start lies in the charge's window; the average is taken over
the interval's covered time. Capacity and fixed charges are billed in full for every billing
month the series touches (no proration of partial months).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from agent.economics.tariff import EPOCH_ORDINAL, FloatArray, IntArray, Tariff, factorize
from agent.model.interval import interval_starts

WH_PER_WS = 1.0 / 3600.0


@dataclass(frozen=True, slots=True)
class EnergyLine:
    period: str
    price: float  # currency per kWh
    kwh: float  # imported in this period
    charge: float


@dataclass(frozen=True, slots=True)
class DemandLine:
    name: str
    rate: float  # currency per kW-month
    peak_w: float  # highest interval-average import in the window (0 if no interval fell in it)
    peak_start: float  # Unix time of the interval that set it (NaN if none)
    charge: float


@dataclass(frozen=True, slots=True)
class MonthBill:
    start: date  # first local day of the billing month
    end: date  # first local day of the next one
    covered_s: float  # seconds of data billed
    import_kwh: float
    export_kwh: float
    energy: tuple[EnergyLine, ...]
    export_credit: float  # subtracted from the total
    demand: tuple[DemandLine, ...]
    capacity_charge: float
    fixed_charge: float

    @property
    def energy_charge(self) -> float:
        return sum(e.charge for e in self.energy)

    @property
    def demand_charge(self) -> float:
        return sum(d.charge for d in self.demand)

    @property
    def total(self) -> float:
        return self.energy_charge - self.export_credit + self.demand_charge + self.capacity_charge + self.fixed_charge


@dataclass(frozen=True, slots=True)
class Bill:
    currency: str
    months: tuple[MonthBill, ...]

    @property
    def energy_charge(self) -> float:
        return sum(m.energy_charge for m in self.months)

    @property
    def export_credit(self) -> float:
        return sum(m.export_credit for m in self.months)

    @property
    def demand_charge(self) -> float:
        return sum(m.demand_charge for m in self.months)

    @property
    def capacity_charge(self) -> float:
        return sum(m.capacity_charge for m in self.months)

    @property
    def fixed_charge(self) -> float:
        return sum(m.fixed_charge for m in self.months)

    @property
    def total(self) -> float:
        return sum(m.total for m in self.months)

    @property
    def import_kwh(self) -> float:
        return sum(m.import_kwh for m in self.months)

    def as_dict(self) -> dict[str, object]:
        """Plain numbers for JSON / tables (kW for peaks)."""
        return {
            "currency": self.currency,
            "total": self.total,
            "energy_charge": self.energy_charge,
            "export_credit": self.export_credit,
            "demand_charge": self.demand_charge,
            "capacity_charge": self.capacity_charge,
            "fixed_charge": self.fixed_charge,
            "months": [
                {
                    "start": m.start.isoformat(),
                    "end": m.end.isoformat(),
                    "covered_s": m.covered_s,
                    "total": m.total,
                    "import_kwh": m.import_kwh,
                    "export_kwh": m.export_kwh,
                    "energy": {e.period: {"kwh": e.kwh, "charge": e.charge} for e in m.energy},
                    "demand": {d.name: {"peak_kw": d.peak_w / 1000.0, "charge": d.charge} for d in m.demand},
                    "capacity_charge": m.capacity_charge,
                    "fixed_charge": m.fixed_charge,
                }
                for m in self.months
            ],
        }


def hold_durations(ts: FloatArray, max_hold_s: float | None = None) -> FloatArray:
    """Seconds each sample stands for: up to the next sample, capped; the last gets the median step."""
    if len(ts) == 0:
        return np.zeros(0)
    if len(ts) == 1:
        if max_hold_s is None:
            raise ValueError("timestamps: one sample needs an explicit max_hold_s (its duration)")
        return np.full(1, max_hold_s)
    d = np.diff(ts)
    if not np.all(d > 0):
        i = int(np.flatnonzero(d <= 0)[0])
        raise ValueError(f"timestamps must increase strictly: index {i + 1} ({ts[i + 1]!r}) <= {ts[i]!r}")
    step = float(np.median(d))
    cap = 2.0 * step if max_hold_s is None else max_hold_s
    out: FloatArray = np.minimum(np.append(d, step), cap)
    return out


@dataclass(frozen=True, slots=True)
class Intervals:
    """Demand intervals of a series: start (Unix s), average import (W), covered seconds."""

    start: FloatArray
    avg_import_w: FloatArray
    covered_s: FloatArray


def interval_import(ts: FloatArray, import_w: FloatArray, dt: FloatArray, length_s: float, tz: ZoneInfo) -> Intervals:
    """Average import per demand interval (local-midnight aligned in `tz`) over its covered time
    (samples with dt > 0)."""
    keys, inv = factorize(interval_starts(ts, tz, length_s).astype(np.int64))
    cov: FloatArray = np.bincount(inv, weights=dt, minlength=len(keys)).astype(np.float64)
    e = np.bincount(inv, weights=import_w * dt, minlength=len(keys))
    ok = cov > 0
    avg = np.zeros(len(keys))
    avg[ok] = e[ok] / cov[ok]
    return Intervals(start=keys.astype(np.float64)[ok], avg_import_w=avg[ok], covered_s=cov[ok])


def month_index(tariff: Tariff, local_day: IntArray) -> tuple[list[date], IntArray]:
    """Billing-month starts (sorted) and, per element, the index of its month."""
    days, inv = factorize(local_day)
    starts = [tariff.billing_month(date.fromordinal(EPOCH_ORDINAL + int(d))) for d in days]
    uniq = sorted(set(starts))
    pos = {m: i for i, m in enumerate(uniq)}
    per_day = np.asarray([pos[m] for m in starts], dtype=np.int64)
    return uniq, per_day[inv]


def bill(timestamps: npt.ArrayLike, grid_w: npt.ArrayLike, tariff: Tariff, max_hold_s: float | None = None) -> Bill:
    """Bill a grid series (Unix seconds, W, positive = import) per billing month."""
    ts = np.asarray(timestamps, dtype=np.float64)
    g = np.asarray(grid_w, dtype=np.float64)
    if ts.shape != g.shape or ts.ndim != 1:
        raise ValueError(f"timestamps {ts.shape} and grid_w {g.shape} must be 1-D and of equal length")
    if len(ts) == 0:
        return Bill(tariff.currency, ())
    dt = hold_durations(ts, max_hold_s)
    bad = ~np.isfinite(g)
    dt = np.where(bad, 0.0, dt)
    g = np.where(bad, 0.0, g)
    imp = np.maximum(g, 0.0)
    exp_ = np.maximum(-g, 0.0)
    lp = tariff.local_parts(ts)
    months, m_of = month_index(tariff, lp.day)
    n_m = len(months)
    period = tariff.period_table[lp.row, lp.minute].astype(np.int64)
    price = tariff.price_table[lp.row, lp.minute]
    n_p = len(tariff.period_names)
    imp_wh = imp * dt * WH_PER_WS
    kwh = np.bincount(m_of * n_p + period, weights=imp_wh, minlength=n_m * n_p).reshape(n_m, n_p) / 1000.0
    credit = np.bincount(
        m_of, weights=exp_ * dt * WH_PER_WS / 1000.0 * price * tariff.export_price_factor, minlength=n_m
    )
    exp_kwh = np.bincount(m_of, weights=exp_ * dt * WH_PER_WS / 1000.0, minlength=n_m)
    cov = np.bincount(m_of, weights=dt, minlength=n_m)

    demand = demand_lines(tariff, ts, imp, dt, months)
    cap = float(sum(c.per_month for c in tariff.capacity))
    fixed = float(sum(f.per_month for f in tariff.fixed))
    out = []
    for i, m in enumerate(months):
        energy = tuple(
            EnergyLine(name, tariff.period_prices[p], float(kwh[i, p]), float(kwh[i, p]) * tariff.period_prices[p])
            for p, name in enumerate(tariff.period_names)
        )
        out.append(
            MonthBill(
                start=m,
                end=tariff.next_billing_month(m),
                covered_s=float(cov[i]),
                import_kwh=float(kwh[i].sum()),
                export_kwh=float(exp_kwh[i]),
                energy=energy,
                export_credit=float(credit[i]),
                demand=demand[i],
                capacity_charge=cap,
                fixed_charge=fixed,
            )
        )
    return Bill(tariff.currency, tuple(out))


def demand_lines(
    tariff: Tariff, ts: FloatArray, imp: FloatArray, dt: FloatArray, months: list[date]
) -> list[tuple[DemandLine, ...]]:
    """Per billing month, one DemandLine per demand charge of the tariff."""
    if not tariff.demand:
        return [() for _ in months]
    iv = interval_import(ts, imp, dt, tariff.demand_interval_s, tariff.timezone)
    lp = tariff.local_parts(iv.start)
    mask = tariff.demand_mask_table[lp.row, lp.minute]
    pos = {m: i for i, m in enumerate(months)}
    starts = [tariff.billing_month(date.fromordinal(EPOCH_ORDINAL + int(d))) for d in lp.day]
    m_of = np.asarray([pos[s] for s in starts], dtype=np.int64)
    out: list[tuple[DemandLine, ...]] = []
    for i in range(len(months)):
        lines = []
        for j, ch in enumerate(tariff.demand):
            sel = np.flatnonzero((m_of == i) & ((mask >> j) & 1 == 1))
            if len(sel) == 0:
                lines.append(DemandLine(ch.name, ch.rate, 0.0, math.nan, 0.0))
                continue
            k = sel[int(np.argmax(iv.avg_import_w[sel]))]
            peak = float(iv.avg_import_w[k])
            lines.append(DemandLine(ch.name, ch.rate, peak, float(iv.start[k]), ch.rate * peak / 1000.0))
        out.append(tuple(lines))
    return out
