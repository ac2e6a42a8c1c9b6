"""`ems-agent ledger export`: the CSV re-billed by an independent function; an old ledger.db still opens."""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from agent.cli import main
from agent.economics.ledger import Ledger, LedgerSample
from agent.economics.ledger_export import write_csv
from agent.economics.roi import EconomicsConfig, economics_config
from agent.economics.tariff import bundled, parse_tariff
from agent.model.config import load_site

DEMO = Path(__file__).resolve().parent.parent / "agent" / "sites" / "demo.toml"

# Price periods change at 00:20, inside a 15-min interval; export is credited at half the price.
TARIFF = """
name = "export test"
currency = "XXX"
timezone = "UTC"
demand_interval_min = 15
export_price_factor = 0.5
[prices]
cheap = 0.1
dear = 0.5
[[energy]]
hours = { "00:00-00:20" = "cheap", "00:20-23:30" = "dear", "23:30-24:00" = "cheap" }
[[demand]]
name = "any time"
rate = 10.0
[[demand]]
name = "day"
rate = 4.0
hours = ["00:30-23:00"]
"""
CFG = EconomicsConfig(degradation_cost_per_kwh=0.02, outage_value_per_min=3.0, min_coverage=0.9, max_hold_s=5.0)


def rebill(text: str) -> dict[str, dict[str, float]]:
    """Bill the export by its own header and rows, per billing month (written apart from the ledger)."""
    meta = [line[2:] for line in text.splitlines() if line.startswith("# ")]
    factor = float(re.search(r"export_price_factor: ([^;\s]+)", "\n".join(meta)).group(1))  # type: ignore[union-attr]
    charge = re.compile(r"demand charge: (.+); rate: (\S+)")
    rates = {m.group(1): float(m.group(2)) for line in meta if (m := charge.match(line))}
    econ = dict(kv.split("=") for kv in next(x for x in meta if x.startswith("economics: "))[11:].split("; "))
    deg, outage = float(econ["degradation_cost_per_kwh"]), float(econ["outage_value_per_min"])
    body = [line for line in text.splitlines() if not line.startswith("#")]
    out: dict[str, dict[str, float]] = {}
    peaks: dict[tuple[str, str], list[float]] = {}
    for r in csv.DictReader(body):
        if r["counted"] != "1":
            continue
        m = out.setdefault(r["billing_month"], {"energy": 0.0, "degradation": 0.0, "outage": 0.0, "demand": 0.0})
        base = float(r["baseline_import_kwh"]) - factor * float(r["baseline_export_kwh"])
        act = float(r["grid_import_kwh"]) - factor * float(r["grid_export_kwh"])
        if r["price_per_kwh"]:
            m["energy"] += (base - act) * float(r["price_per_kwh"])
        else:  # recorded before prices were kept per period: the ledger's own costs
            m["energy"] += float(r["baseline_energy_cost"]) - float(r["actual_energy_cost"])
        m["degradation"] += float(r["battery_discharge_kwh"]) * deg
        m["outage"] += float(r["protected_s"]) / 60.0 * outage
        for name in filter(None, r["demand_charges"].split(";")):
            p = peaks.setdefault((r["billing_month"], name), [0.0, 0.0])
            p[0] = max(p[0], float(r["baseline_avg_import_w"]))
            p[1] = max(p[1], float(r["actual_avg_import_w"]))
    for (month, name), (b, a) in peaks.items():
        out[month]["demand"] += rates[name] * (b - a) / 1000.0
    return out


def series(t0: float, seconds: int, seed: int) -> list[LedgerSample]:
    """Load 50-150 kW; the battery charges, discharges and sometimes exports; an outage; a meter gap."""
    rng = np.random.default_rng(seed)
    load = 100_000.0 + 50_000.0 * np.sin(np.arange(seconds) / 300.0) + rng.normal(0, 5_000, seconds)
    bat = 80_000.0 * np.sin(np.arange(seconds) / 700.0 + 1.0)
    out = []
    for k in range(seconds):
        up = not 4000 <= k < 4300
        grid = load[k] - bat[k] if up else 0.0
        b = bat[k] if up else load[k]
        out.append(LedgerSample(t0 + k, float(grid), float(b), float(load[k]), up, not 1000 <= k < 1200, True))
    return out


def test_the_export_rebills_to_the_ledgers_figures(tmp_path: Path) -> None:
    tariff = parse_tariff(tomllib.loads(TARIFF), "t.toml")
    led = Ledger(tmp_path / "l.db", tariff, CFG)
    # 31 Jan 23:00 to 1 Feb 01:30 UTC: two billing months, both price changes, an excluded interval
    # (200 s without a grid reading), a 5-min outage, export while discharging over a low load
    for s in series(datetime(2026, 1, 31, 23, tzinfo=UTC).timestamp(), 9000, seed=1):
        led.feed(s)
    buf = io.StringIO()
    n = write_csv(led.db, tariff, CFG, buf)
    text = buf.getvalue()
    assert n > led.to_date().intervals  # the intervals across 00:20 and 23:30 have two period rows
    assert "export_price_factor: 0.5" in text and "# demand charge: day; rate: 4.0 per kW-month" in text
    billed = rebill(text)
    months = led.months()
    assert [m.label for m in months] == sorted(billed) == ["2026-01-01", "2026-02-01"]
    assert any(m.excluded_intervals for m in months) and any(m.outage_value for m in months)
    for m in months:
        b = billed[m.label]
        assert b["energy"] == pytest.approx(m.energy_savings, rel=1e-12, abs=1e-9)
        assert b["demand"] == pytest.approx(m.demand_savings, rel=1e-12, abs=1e-9)
        assert b["degradation"] == pytest.approx(m.degradation_cost, rel=1e-12, abs=1e-12)
        assert b["outage"] == pytest.approx(m.outage_value, rel=1e-12, abs=1e-12)
    # the export credit really entered: some interval exported on both sides
    rows = list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))
    assert any(float(r["grid_export_kwh"]) > 0 for r in rows)
    assert {r["period"] for r in rows} == {"cheap", "dear"}
    led.close()


def test_cli_export_of_the_demo_tariff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = load_site(DEMO)
    econ = economics_config(site)
    led = Ledger(tmp_path / "ledger.db", bundled("shanghai_ci_two_part"), econ)
    # 07:30-09:00 Shanghai (valley into peak), 1 s samples
    for s in series(datetime(2026, 3, 2, 7, 30, tzinfo=site.timezone).timestamp(), 5401, seed=2):
        led.feed(s)
    m = led.to_date()
    led.close()
    out = tmp_path / "ledger.csv"
    assert main(["ledger", "export", "--site", str(DEMO), "--db", str(tmp_path / "ledger.db"), "-o", str(out)]) == 0
    assert "rows written to" in capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    assert "# tariff: Shanghai general C&I two-part (max demand)" in text
    (b,) = rebill(text).values()
    assert b["energy"] - b["degradation"] + b["outage"] + b["demand"] == pytest.approx(m.net_savings, rel=1e-12)
    assert main(["ledger", "export", "--site", str(DEMO), "--db", str(tmp_path / "none.db")]) == 1
    assert "no ledger database at" in capsys.readouterr().err


# The schema of the first ledger.db (before per-period rows and the resumed interval).
OLD_SCHEMA = """
CREATE TABLE intervals (
    start REAL PRIMARY KEY, length_s REAL NOT NULL, month TEXT NOT NULL, day TEXT NOT NULL,
    valid INTEGER NOT NULL, covered_s REAL NOT NULL, actual_import_wh REAL NOT NULL,
    actual_export_wh REAL NOT NULL, baseline_import_wh REAL NOT NULL, baseline_export_wh REAL NOT NULL,
    actual_cost REAL NOT NULL, baseline_cost REAL NOT NULL, discharge_wh REAL NOT NULL,
    charge_wh REAL NOT NULL, outage_s REAL NOT NULL, protected_s REAL NOT NULL,
    actual_avg_w REAL NOT NULL, baseline_avg_w REAL NOT NULL, demand_mask INTEGER NOT NULL,
    demand_rate REAL NOT NULL
);
CREATE INDEX intervals_month ON intervals (month);
CREATE INDEX intervals_day ON intervals (day);
"""


def test_an_old_ledger_db_opens_reports_and_exports(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    t0 = datetime(2026, 1, 1, 0, 30, tzinfo=UTC).timestamp()
    # 00:30-00:45, dear: 60 kW from the grid, 40 kW discharged (the old ledger's own figures)
    db.execute(
        "INSERT INTO intervals VALUES (?, 900, '2026-01-01', '2026-01-01', 1, 900, 15000, 0, 25000, 0,"
        " 7.5, 12.5, 10000, 0, 0, 0, 60000, 100000, 1, 10.0)",
        (t0,),
    )
    db.commit()
    db.close()
    tariff = parse_tariff(tomllib.loads(TARIFF), "t.toml")
    led = Ledger(path, tariff, CFG)
    assert led.db.execute("PRAGMA user_version").fetchone() == (2,)
    (m,) = led.months()
    assert m.energy_savings == pytest.approx(5.0)
    assert m.demand_savings == pytest.approx(10.0 * 40.0)
    assert led.report(1, 1)["savings_to_date"] == pytest.approx(5.0 + 400.0 - 0.2)
    for k in range(901):  # the next interval, recorded by the new ledger with its periods
        led.feed(LedgerSample(t0 + 900 + k, 60_000.0, 40_000.0, 100_000.0, True, True, True))
    buf = io.StringIO()
    write_csv(led.db, tariff, CFG, buf)
    rows = list(csv.DictReader(line for line in buf.getvalue().splitlines() if not line.startswith("#")))
    assert [(r["period"], r["price_per_kwh"]) for r in rows] == [("", ""), ("dear", "0.5")]
    assert float(rows[0]["grid_import_kwh"]) == 15.0
    assert float(rows[1]["grid_import_kwh"]) == pytest.approx(15.0)  # 900 one-second sums
    assert rebill(buf.getvalue())["2026-01-01"]["energy"] == pytest.approx(10.0)
    led.close()
