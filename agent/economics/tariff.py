"""Utility tariffs: a strict TOML format, validation, and fast price look-ups.

A tariff file (see agent/economics/tariffs/*.toml) has:

- top level: `name`, `source`, `currency`, `timezone`, `billing_day` (the month rolls over on
  it, 1-28), `demand_interval_min` (averaging interval of demand charges, default 15),
  `export_price_factor` (share of the import price credited for exported energy, default 0 =
  export not credited), `holidays` (list of "YYYY-MM-DD" dates billed as day type "holiday");
- `[prices]`: named energy price periods, currency per kWh (e.g. peak = 1.01);
- `[[season]]`: `name`, `months` ("5-10", "11-4" wraps, "1-3,12"); together they must cover
  every month exactly once. Without any, one season "all" covers the year;
- `[[energy]]`: optional `seasons` and `days` (weekday | weekend | holiday; default all) and
  `hours`, a table of "HH:MM-HH:MM" ranges -> period name ("21:00-08:00" wraps midnight,
  "24:00" ends the day). For every season x day type, the blocks that apply must cover each
  minute of the day exactly once;
- `[[demand]]`: `name`, `rate` (currency per kW-month on the billing month's highest interval
  average import within its window), optional `seasons`, `days`, `hours` (list of ranges;
  default the whole day);
- `[[capacity]]`: `name`, `rate` (currency per kVA-month), `kva` (contracted capacity);
- `[[fixed]]`: `name`, `per_month` (currency per billing month).

Look-ups are precomputed per (season, day type) x minute of the day, and the (season, day
type) row of each date is cached, so `energy_price` and `demand_rate` cost a dict and a list
index: they run every control cycle and millions of times in an offline replay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from common.tomlcheck import ConfigError, Table, load_toml

DAY_TYPES = ("weekday", "weekend", "holiday")
MINUTES_PER_DAY = 1440
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


class LocalParts(NamedTuple):
    day: IntArray  # local days since 1970-01-01
    minute: IntArray  # local minute of the day, 0..1439
    row: IntArray  # row of the tariff's (season x day type) tables


def factorize(x: IntArray) -> tuple[IntArray, IntArray]:
    """(sorted distinct values, index of each element's value): O(n) over runs, then sorts the runs.

    Time series hold long runs of equal quarter hours and days, so this beats np.unique's full sort.
    """
    if len(x) == 0:
        return x, x
    starts = np.flatnonzero(np.concatenate(([True], x[1:] != x[:-1])))
    lengths = np.diff(np.append(starts, len(x)))
    vals, run_inv = np.unique(x[starts], return_inverse=True)
    return vals, np.repeat(run_inv, lengths)


@dataclass(frozen=True, slots=True)
class DemandCharge:
    name: str
    rate: float  # currency per kW-month
    seasons: tuple[str, ...]  # empty = every season
    days: tuple[str, ...]  # empty = every day type
    hours: tuple[tuple[int, int], ...]  # (start, end) minutes of the day, end exclusive; () = all day


@dataclass(frozen=True, slots=True)
class CapacityCharge:
    name: str
    rate: float  # currency per kVA-month
    kva: float

    @property
    def per_month(self) -> float:
        return self.rate * self.kva


@dataclass(frozen=True, slots=True)
class FixedCharge:
    name: str
    per_month: float


def parse_range(text: str) -> tuple[int, int]:
    """'08:00-11:30' -> (480, 690) minutes; '21:00-08:00' wraps: (1260, 480). Raises ValueError."""
    m = _RANGE.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a range like '08:00-11:30'")
    h0, m0, h1, m1 = (int(x) for x in m.groups())
    if m0 > 59 or m1 > 59 or h0 > 23 or h1 > 24 or (h1 == 24 and m1 != 0):
        raise ValueError(f"{text!r} has an invalid time of day")
    a, b = h0 * 60 + m0, h1 * 60 + m1
    if a == b:
        raise ValueError(f"{text!r} is empty (a whole day is '00:00-24:00')")
    return a, b


def range_minutes(a: int, b: int) -> list[int]:
    """Minutes of the day covered by a parsed range (wrapping past midnight when end <= start)."""
    if b > a:
        return list(range(a, b))
    return list(range(a, MINUTES_PER_DAY)) + list(range(0, b))


def _fmt(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _spans(minutes: list[int]) -> str:
    """[0..479, 1260..1439] -> '00:00-08:00, 21:00-24:00' (for error messages)."""
    out: list[str] = []
    start = prev = minutes[0]
    for m in [*minutes[1:], -2]:
        if m != prev + 1:
            out.append(f"{_fmt(start)}-{_fmt(prev + 1) if prev + 1 < MINUTES_PER_DAY else '24:00'}")
            start = m
        prev = m
    return ", ".join(out)


def parse_months(text: str, where: Table) -> list[int]:
    months: list[int] = []
    for part in text.split(","):
        bits = part.strip().split("-")
        try:
            nums = [int(b) for b in bits]
        except ValueError:
            where.fail("months", f"must look like '5-10', '11-4' or '1-3,12', got {text!r}")
        if len(nums) == 1:
            nums = nums * 2
        if len(nums) != 2 or not all(1 <= n <= 12 for n in nums):
            where.fail("months", f"must name months 1-12 like '5-10', got {text!r}")
        a, b = nums
        months += list(range(a, b + 1)) if a <= b else list(range(a, 13)) + list(range(1, b + 1))
    return months


class Tariff:
    """A validated tariff with O(1) price look-ups. Implements agent.control.prices.Prices."""

    def __init__(
        self,
        *,
        name: str,
        currency: str,
        timezone: ZoneInfo,
        billing_day: int,
        demand_interval_s: float,
        export_price_factor: float,
        holidays: frozenset[date],
        seasons: tuple[str, ...],
        month_season: tuple[int, ...],  # index 0..11 -> season index
        period_names: tuple[str, ...],
        period_prices: tuple[float, ...],
        period_table: npt.NDArray[np.int16],  # (seasons x 3 day types, 1440) -> period index
        demand: tuple[DemandCharge, ...],
        capacity: tuple[CapacityCharge, ...],
        fixed: tuple[FixedCharge, ...],
        source: str = "",
    ) -> None:
        self.name = name
        self.source = source
        self.currency = currency
        self.timezone = timezone
        self.billing_day = billing_day
        self.demand_interval_s = demand_interval_s
        self.export_price_factor = export_price_factor
        self.holidays = holidays
        self.seasons = seasons
        self.month_season = month_season
        self.period_names = period_names
        self.period_prices = period_prices
        self.period_table = period_table
        self.demand = demand
        self.capacity = capacity
        self.fixed = fixed
        n_rows = len(seasons) * len(DAY_TYPES)
        self.price_table: FloatArray = np.asarray(period_prices, dtype=np.float64)[period_table]
        # demand_mask[row, minute]: bit j set when demand charge j's window covers that minute
        mask = np.zeros((n_rows, MINUTES_PER_DAY), dtype=np.int64)
        for j, ch in enumerate(demand):
            for row in range(n_rows):
                if self._charge_covers_row(ch, row):
                    mask[row, self._charge_minutes(ch)] |= 1 << j
        self.demand_mask_table = mask
        rates = np.asarray([c.rate for c in demand], dtype=np.float64)
        bits = (mask[..., None] >> np.arange(len(demand))) & 1 if demand else np.zeros((n_rows, 1440, 0))
        self.demand_rate_table: FloatArray = (bits * rates).sum(axis=-1) if demand else np.zeros(mask.shape)
        # Python lists for the scalar path: list indexing beats numpy scalar indexing ~10x.
        self._price_rows = [list(map(float, r)) for r in self.price_table]
        self._rate_rows = [list(map(float, r)) for r in self.demand_rate_table]
        self._day_row: dict[int, int] = {}

    # --- structure -------------------------------------------------------------------------
    def _charge_covers_row(self, ch: DemandCharge, row: int) -> bool:
        season, day = divmod(row, len(DAY_TYPES))
        return (not ch.seasons or self.seasons[season] in ch.seasons) and (not ch.days or DAY_TYPES[day] in ch.days)

    @staticmethod
    def _charge_minutes(ch: DemandCharge) -> list[int]:
        if not ch.hours:
            return list(range(MINUTES_PER_DAY))
        out: list[int] = []
        for a, b in ch.hours:
            out += range_minutes(a, b)
        return out

    def day_type(self, d: date) -> int:
        if d in self.holidays:
            return 2
        return 1 if d.weekday() >= 5 else 0

    def row_of_date(self, d: date) -> int:
        """Row (season x day type) of the look-up tables for a local date."""
        ordinal = d.toordinal()
        row = self._day_row.get(ordinal)
        if row is None:
            row = self.month_season[d.month - 1] * len(DAY_TYPES) + self.day_type(d)
            self._day_row[ordinal] = row
        return row

    def _local(self, t: datetime) -> datetime:
        if t.tzinfo is None:
            raise ValueError(f"tariff {self.name!r}: time {t.isoformat()} has no time zone")
        return t if t.tzinfo is self.timezone else t.astimezone(self.timezone)

    # --- the Prices protocol ---------------------------------------------------------------
    def energy_price(self, t: datetime) -> float:
        """Currency per kWh imported at `t` (timezone-aware; converted to the tariff's zone)."""
        lt = self._local(t)
        row = self._day_row.get(lt.toordinal())
        if row is None:
            row = self.row_of_date(lt.date())
        return self._price_rows[row][lt.hour * 60 + lt.minute]

    def demand_rate(self, t: datetime) -> float:
        """Currency per kW-month summed over every demand charge whose window covers `t`."""
        lt = self._local(t)
        row = self._day_row.get(lt.toordinal())
        if row is None:
            row = self.row_of_date(lt.date())
        return self._rate_rows[row][lt.hour * 60 + lt.minute]

    def period_at(self, t: datetime) -> str:
        lt = self._local(t)
        return self.period_names[int(self.period_table[self.row_of_date(lt.date()), lt.hour * 60 + lt.minute])]

    def demand_mask(self, t: datetime) -> int:
        """Bit j set when demand charge j (self.demand[j]) covers `t`."""
        lt = self._local(t)
        return int(self.demand_mask_table[self.row_of_date(lt.date()), lt.hour * 60 + lt.minute])

    # --- billing months --------------------------------------------------------------------
    def billing_month(self, d: date) -> date:
        """Start date of the billing month containing local date `d`."""
        if d.day >= self.billing_day:
            return date(d.year, d.month, self.billing_day)
        y, m = (d.year, d.month - 1) if d.month > 1 else (d.year - 1, 12)
        return date(y, m, self.billing_day)

    def next_billing_month(self, start: date) -> date:
        y, m = (start.year, start.month + 1) if start.month < 12 else (start.year + 1, 1)
        return date(y, m, self.billing_day)

    # --- vectorised look-ups over Unix timestamps -------------------------------------------
    def local_parts(self, ts: npt.ArrayLike) -> LocalParts:
        """Local day, minute of day and table row for each Unix timestamp (s), honouring DST.

        UTC offsets are resolved once per distinct quarter hour (every real zone changes offset
        on a quarter-hour boundary) and table rows once per distinct local day.
        """
        t = np.asarray(ts, dtype=np.float64)
        uq, inv = factorize(np.floor(t / 900.0).astype(np.int64))
        offs = np.fromiter(
            (
                (datetime.fromtimestamp(int(x) * 900, self.timezone).utcoffset() or timedelta()).total_seconds()
                for x in uq
            ),
            dtype=np.float64,
            count=len(uq),
        )
        local = t + offs[inv]
        day = np.floor(local / 86400.0).astype(np.int64)
        minute = ((local - day * 86400.0) // 60.0).astype(np.int64)
        ud, dinv = factorize(day)
        rows = np.fromiter(
            (self.row_of_date(date.fromordinal(EPOCH_ORDINAL + int(d))) for d in ud),
            dtype=np.int64,
            count=len(ud),
        )
        return LocalParts(day=day, minute=minute, row=rows[dinv])

    def energy_prices(self, ts: npt.ArrayLike) -> FloatArray:
        """Vectorised energy_price over Unix timestamps (s)."""
        lp = self.local_parts(ts)
        out: FloatArray = self.price_table[lp.row, lp.minute]
        return out

    def demand_rates(self, ts: npt.ArrayLike) -> FloatArray:
        """Vectorised demand_rate over Unix timestamps (s)."""
        lp = self.local_parts(ts)
        out: FloatArray = self.demand_rate_table[lp.row, lp.minute]
        return out

    def __repr__(self) -> str:
        return f"Tariff({self.name!r}, {self.currency}, {self.timezone.key})"


# --- parsing -------------------------------------------------------------------------------


def _names(t: Table, key: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    vals: tuple[str, ...] = t.texts(key, ())
    for v in vals:
        if v not in allowed:
            t.fail(key, f"names unknown {what} {v!r} (known: {', '.join(allowed)})")
    return vals


def _rows(seasons: tuple[str, ...], sel_seasons: tuple[str, ...], sel_days: tuple[str, ...]) -> list[int]:
    return [
        si * len(DAY_TYPES) + di
        for si, s in enumerate(seasons)
        for di, d in enumerate(DAY_TYPES)
        if (not sel_seasons or s in sel_seasons) and (not sel_days or d in sel_days)
    ]


def parse_tariff(data: dict[str, Any], path: Path | str) -> Tariff:
    """Validate a parsed tariff file. Raises ConfigError naming the file, table and key."""
    root = Table(data, str(path))
    name = root.text("name")
    source = root.text("source", "")
    currency = root.text("currency")
    tz_name = root.text("timezone")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        root.fail("timezone", f"is not a known IANA time zone, got {tz_name!r}")
    billing_day = root.integer("billing_day", 1, lo=1, hi=28)
    interval_min = root.number("demand_interval_min", 15.0, lo=1, hi=60)
    if 1440 % interval_min:
        root.fail("demand_interval_min", f"must divide a day into whole intervals, got {interval_min:g}")
    export_factor = root.number("export_price_factor", 0.0, lo=0.0, hi=1.0)
    holidays: set[date] = set()
    for h in root.texts("holidays", ()):
        try:
            holidays.add(date.fromisoformat(h))
        except ValueError:
            root.fail("holidays", f"has {h!r}, not a YYYY-MM-DD date")

    pt = root.table("prices", required=True)
    period_names = tuple(pt.data)
    if not period_names:
        root.fail("prices", "must name at least one price period")
    period_prices = tuple(pt.number(n, lo=0.0) for n in period_names)
    pt.done()

    season_tables = root.tables("season")
    seasons: list[str] = []
    month_season = [-1] * 12
    for st in season_tables:
        sname = st.text("name")
        if sname in seasons:
            st.fail("name", f"{sname!r} is used by two seasons")
        for mo in parse_months(st.text("months"), st):
            if month_season[mo - 1] >= 0:
                st.fail("months", f"month {mo} is already in season {seasons[month_season[mo - 1]]!r}")
            month_season[mo - 1] = len(seasons)
        seasons.append(sname)
        st.done()
    if not season_tables:
        seasons, month_season = ["all"], [0] * 12
    missing = [str(i + 1) for i, s in enumerate(month_season) if s < 0]
    if missing:
        root.fail("season", f"leaves month(s) {', '.join(missing)} without a season")
    season_names = tuple(seasons)

    n_rows = len(season_names) * len(DAY_TYPES)
    table = np.full((n_rows, MINUTES_PER_DAY), -1, dtype=np.int16)
    labels: list[str] = []  # which range set each minute (for overlap errors)
    owner = np.full((n_rows, MINUTES_PER_DAY), -1, dtype=np.int32)
    energy = root.tables("energy")
    if not energy:
        root.fail("energy", "is required: at least one [[energy]] block of hours")
    for et in energy:
        sel_s = _names(et, "seasons", season_names, "season")
        sel_d = _names(et, "days", DAY_TYPES, "day type")
        hours = et.table("hours", required=True)
        rows = _rows(season_names, sel_s, sel_d)
        for rng in list(hours.data):
            period = hours.text(rng, choices=period_names)
            try:
                a, b = parse_range(rng)
            except ValueError as e:
                hours.fail(rng, str(e))
            mins = range_minutes(a, b)
            pi = period_names.index(period)
            for row in rows:
                clash = [m for m in mins if table[row, m] >= 0]
                if clash:
                    s, d = divmod(row, len(DAY_TYPES))
                    other = labels[owner[row, clash[0]]]
                    hours.fail(
                        rng,
                        f"overlaps {other} at {_spans(clash)} (season {season_names[s]!r}, {DAY_TYPES[d]})",
                    )
                table[row, mins] = pi
                owner[row, mins] = len(labels)
            labels.append(f"{hours.where} '{rng}'")
        hours.done()
        et.done()
    for row in range(n_rows):
        gap = [int(m) for m in np.flatnonzero(table[row] < 0)]
        if gap:
            s, d = divmod(row, len(DAY_TYPES))
            raise ConfigError(
                f"{path}: [[energy]] leaves hours {_spans(gap)} without a price "
                f"(season {season_names[s]!r}, {DAY_TYPES[d]})"
            )

    demand: list[DemandCharge] = []
    for dt in root.tables("demand"):
        hrs: list[tuple[int, int]] = []
        for rng in dt.texts("hours", ()):
            try:
                hrs.append(parse_range(rng))
            except ValueError as e:
                dt.fail("hours", str(e))
        demand.append(
            DemandCharge(
                name=dt.text("name"),
                rate=dt.number("rate", lo=0.0),
                seasons=_names(dt, "seasons", season_names, "season"),
                days=_names(dt, "days", DAY_TYPES, "day type"),
                hours=tuple(hrs),
            )
        )
        dt.done()
    if len(demand) > 62:
        root.fail("demand", "has more than 62 charges")
    capacity = []
    for ct in root.tables("capacity"):
        capacity.append(CapacityCharge(ct.text("name"), ct.number("rate", lo=0.0), ct.number("kva", lo=0.0)))
        ct.done()
    fixed = []
    for ft in root.tables("fixed"):
        fixed.append(FixedCharge(ft.text("name"), ft.number("per_month", lo=0.0)))
        ft.done()
    root.done()
    return Tariff(
        name=name,
        source=source,
        currency=currency,
        timezone=tz,
        billing_day=billing_day,
        demand_interval_s=interval_min * 60.0,
        export_price_factor=export_factor,
        holidays=frozenset(holidays),
        seasons=season_names,
        month_season=tuple(month_season),
        period_names=period_names,
        period_prices=period_prices,
        period_table=table,
        demand=tuple(demand),
        capacity=tuple(capacity),
        fixed=tuple(fixed),
    )


def load_tariff(path: Path | str) -> Tariff:
    p = Path(path)
    return parse_tariff(load_toml(p), p)


TARIFF_DIR = Path(__file__).parent / "tariffs"


def bundled(name: str) -> Tariff:
    """A tariff shipped in agent/economics/tariffs/ by file stem, e.g. bundled('shanghai_ci_two_part')."""
    return load_tariff(TARIFF_DIR / f"{name}.toml")
