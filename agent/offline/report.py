"""What the offline analysis prints: baseline vs battery grid series, compared under one tariff.

Pure functions of numpy series (Unix s, W) plus one plotting edge. The `analyze` command only
has to replay the trace and hand the two grid series here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from agent.economics.billing import Bill, bill, hold_durations, interval_import
from agent.economics.tariff import FloatArray, Tariff
from agent.model.ramp_metrics import ramp_stats


def peak_w(ts: FloatArray, grid_w: FloatArray, length_s: float, tz: ZoneInfo) -> float:
    """Highest interval-average import (W) of the whole series."""
    dt = hold_durations(ts)
    g = np.where(np.isfinite(grid_w), grid_w, 0.0)
    dt = np.where(np.isfinite(grid_w), dt, 0.0)
    iv = interval_import(ts, np.maximum(g, 0.0), dt, length_s, tz)
    return float(iv.avg_import_w.max()) if len(iv.avg_import_w) else 0.0


def compare(
    timestamps: npt.ArrayLike,
    baseline_grid_w: npt.ArrayLike,
    battery_grid_w: npt.ArrayLike,
    tariff: Tariff,
    battery_w: npt.ArrayLike | None = None,
    capacity_wh: float = 0.0,
    ramp_limit_w_per_s: float = 0.0,
    degradation_cost_per_kwh: float = 0.0,
) -> dict[str, Any]:
    """Bills with breakdown, peaks, ramps and cycles of the site without and with the battery."""
    ts = np.asarray(timestamps, dtype=np.float64)
    base = np.asarray(baseline_grid_w, dtype=np.float64)
    withb = np.asarray(battery_grid_w, dtype=np.float64)
    b0, b1 = bill(ts, base, tariff), bill(ts, withb, tariff)
    out: dict[str, Any] = {
        "currency": tariff.currency,
        "tariff": tariff.name,
        "hours": float(np.sum(hold_durations(ts))) / 3600.0,
        "baseline": _side(b0, ts, base, tariff, ramp_limit_w_per_s),
        "battery": _side(b1, ts, withb, tariff, ramp_limit_w_per_s),
    }
    discharge_kwh = charge_kwh = 0.0
    if battery_w is not None:
        bw = np.asarray(battery_w, dtype=np.float64)
        dt = hold_durations(ts)
        ok = np.isfinite(bw)
        discharge_kwh = float(np.sum(np.maximum(bw[ok], 0.0) * dt[ok])) / 3.6e6
        charge_kwh = float(np.sum(np.maximum(-bw[ok], 0.0) * dt[ok])) / 3.6e6
    degradation = discharge_kwh * degradation_cost_per_kwh
    out["battery_use"] = {
        "discharge_kwh": discharge_kwh,
        "charge_kwh": charge_kwh,
        "round_trip": discharge_kwh / charge_kwh if charge_kwh > 0 else None,
        "equivalent_cycles": discharge_kwh * 1000.0 / capacity_wh if capacity_wh > 0 else None,
        "degradation_cost": degradation,
    }
    out["savings"] = {
        "energy": b0.energy_charge - b0.export_credit - (b1.energy_charge - b1.export_credit),
        "demand": b0.demand_charge - b1.demand_charge,
        "degradation": -degradation,
        "net": b0.total - b1.total - degradation,
    }
    return out


def _side(b: Bill, ts: FloatArray, g: FloatArray, tariff: Tariff, limit: float) -> dict[str, Any]:
    r = ramp_stats(ts, g, limit)
    return {
        "bill": b.as_dict(),
        "peak_kw": peak_w(ts, g, tariff.demand_interval_s, tariff.timezone) / 1000.0,
        "ramp_max_kw_per_s": r.max_w_per_s / 1000.0,
        "ramp_p99_kw_per_s": r.p99_w_per_s / 1000.0,
        "ramp_over_limit_s": r.over_limit_s,
    }


def table(report: dict[str, Any]) -> str:
    """A plain-text table of a compare() report."""
    cur = report["currency"]
    b, w = report["baseline"], report["battery"]
    rows = [
        ("energy charge", b["bill"]["energy_charge"] - b["bill"]["export_credit"],
         w["bill"]["energy_charge"] - w["bill"]["export_credit"]),
        ("demand charge", b["bill"]["demand_charge"], w["bill"]["demand_charge"]),
        ("capacity + fixed", b["bill"]["capacity_charge"] + b["bill"]["fixed_charge"],
         w["bill"]["capacity_charge"] + w["bill"]["fixed_charge"]),
        ("bill total", b["bill"]["total"], w["bill"]["total"]),
        ("peak demand (kW)", b["peak_kw"], w["peak_kw"]),
        ("max ramp (kW/s)", b["ramp_max_kw_per_s"], w["ramp_max_kw_per_s"]),
        ("p99 ramp (kW/s)", b["ramp_p99_kw_per_s"], w["ramp_p99_kw_per_s"]),
        ("time over ramp limit (s)", b["ramp_over_limit_s"], w["ramp_over_limit_s"]),
    ]  # fmt: skip
    lines = [
        f"{report['tariff']} ({cur}), {report['hours']:.1f} h",
        f"{'':26}{'baseline':>16}{'battery':>16}",
    ]
    lines += [f"{name:26}{x:16,.2f}{y:16,.2f}" for name, x, y in rows]
    s, u = report["savings"], report["battery_use"]
    lines.append(
        f"savings: energy {s['energy']:,.2f}, demand {s['demand']:,.2f}, degradation {s['degradation']:,.2f}"
        f" -> net {s['net']:,.2f} {cur}"
    )
    cyc = u["equivalent_cycles"]
    lines.append(
        f"battery: {u['discharge_kwh']:,.1f} kWh out, {u['charge_kwh']:,.1f} kWh in"
        + (f", {cyc:.2f} equivalent full cycles" if cyc is not None else "")
    )
    return "\n".join(lines)


def plot(
    timestamps: npt.ArrayLike,
    baseline_grid_w: npt.ArrayLike,
    battery_grid_w: npt.ArrayLike,
    path: Path,
    max_points: int = 20_000,
) -> Path:
    """PNG of grid import without and with the battery (decimated by block maxima to keep peaks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = np.asarray(timestamps, dtype=np.float64)
    series = [np.asarray(baseline_grid_w, dtype=np.float64), np.asarray(battery_grid_w, dtype=np.float64)]
    k = max(1, len(ts) // max_points)
    n = len(ts) // k * k
    x = (ts[:n:k] - ts[0]) / 3600.0
    fig, ax = plt.subplots(figsize=(12, 4))
    for s, label in zip(series, ("without battery", "with battery"), strict=True):
        y = s[:n].reshape(-1, k).max(axis=1) / 1e6 if k > 1 else s[:n] / 1e6
        ax.plot(x, y, label=label, linewidth=0.7)
    ax.set_xlabel("hours")
    ax.set_ylabel("grid import (MW)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def ramp_shares(report: dict[str, Any]) -> None:
    """Add the share of time over the ramp limit to both sides of a compare() report (in place)."""
    secs = report["hours"] * 3600.0
    for side in ("baseline", "battery"):
        s = report[side]
        s["ramp_over_limit_share"] = s["ramp_over_limit_s"] / secs if secs > 0 else 0.0


def representative_day(ts: FloatArray, baseline_grid_w: FloatArray, tz: Any, length_s: float) -> tuple[int, int]:
    """Index range [a, b) of the local day holding the baseline's highest interval average."""
    from datetime import datetime, timedelta

    if len(ts) == 0:
        return 0, 0
    dt = hold_durations(ts)
    iv = interval_import(ts, np.maximum(np.nan_to_num(baseline_grid_w), 0.0), dt, length_s, tz)
    t_peak = float(iv.start[int(np.argmax(iv.avg_import_w))]) if len(iv.start) else float(ts[0])
    day = datetime.fromtimestamp(t_peak, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = day.timestamp(), (day + timedelta(days=1)).timestamp()  # wall arithmetic: DST days too
    return int(np.searchsorted(ts, start)), int(np.searchsorted(ts, end))


def plot_report(
    report: dict[str, Any],
    timestamps: npt.ArrayLike,
    baseline_grid_w: npt.ArrayLike,
    battery_grid_w: npt.ArrayLike,
    soc_pct: npt.ArrayLike,
    tz: Any,
    path: Path,
    sweep: list[dict[str, Any]] | None = None,
) -> Path:
    """PNG (or HTML embedding it, by suffix): a representative day, the monthly bills, the sweep curve."""
    import base64
    import io
    from datetime import datetime

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = np.asarray(timestamps, dtype=np.float64)
    base = np.asarray(baseline_grid_w, dtype=np.float64)
    withb = np.asarray(battery_grid_w, dtype=np.float64)
    soc = np.asarray(soc_pct, dtype=np.float64)
    panels = 3 if sweep else 2
    fig, axes = plt.subplots(panels, 1, figsize=(12, 3.6 * panels))
    ax = axes[0]
    a, b = representative_day(ts, base, tz, 900.0)
    if b > a:
        k = max(1, (b - a) // 2000)  # block maxima: keep the swings visible at any step
        n = (b - a) // k * k
        x = (ts[a : a + n : k] - ts[a]) / 3600.0
        for s, label in ((base, "without battery"), (withb, "with battery")):
            y = s[a : a + n].reshape(-1, k).max(axis=1) if k > 1 else s[a : a + n]
            ax.plot(x, y / 1e6, label=label, linewidth=0.7)
        ax.set_title(f"highest-peak day {datetime.fromtimestamp(ts[a], tz):%Y-%m-%d} (local time)")
        ax.set_xlabel("hours after local midnight")
        ax.set_ylabel("grid import (MW)")
        ax.legend(loc="upper left")
        if np.any(np.isfinite(soc[a:b])):
            ax2 = ax.twinx()
            ax2.plot(x, soc[a : a + n : k], color="tab:green", linewidth=0.8, label="SoC")
            ax2.set_ylabel("fleet SoC (%)")
            ax2.set_ylim(0, 100)
    ax = axes[1]
    months = [m["start"][:7] for m in report["baseline"]["bill"]["months"]]
    xs = np.arange(len(months))
    for off, side, label in ((-0.2, "baseline", "without battery"), (0.2, "battery", "with battery")):
        ms = report[side]["bill"]["months"]
        energy = np.array([sum(e["charge"] for e in m["energy"].values()) for m in ms])
        demand = np.array([sum(d["charge"] for d in m["demand"].values()) for m in ms])
        other = np.array([m["capacity_charge"] + m["fixed_charge"] for m in ms])
        ax.bar(xs + off, energy, 0.4, label=f"{label}: energy")
        ax.bar(xs + off, demand, 0.4, bottom=energy, label=f"{label}: demand")
        ax.bar(xs + off, other, 0.4, bottom=energy + demand, label=f"{label}: capacity + fixed")
    ax.set_xticks(xs, months)
    ax.set_ylabel(f"monthly bill ({report['currency']})")
    ax.legend(fontsize=7, ncol=2)
    if sweep:
        ax = axes[2]
        n_cl = [r["clusters"] for r in sweep]
        # (None, a gap: a trace under a day gives no annual estimate)
        ax.plot(
            n_cl,
            [np.nan if r["annual_savings"] is None else r["annual_savings"] for r in sweep],
            marker="o",
            label="annual net savings",
        )
        ax.plot(n_cl, [np.nan if r["npv"] is None else r["npv"] for r in sweep], marker="s", label="NPV")
        ax.set_xlabel("clusters")
        ax.set_ylabel(report["currency"])
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.legend()
    fig.tight_layout()
    if path.suffix.lower() == ".html":
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        img = base64.b64encode(buf.getvalue()).decode("ascii")
        path.write_text(
            f"<!doctype html><meta charset='utf-8'><title>ems-agent analyze: {report['tariff']}</title>"
            f"<pre>{_html_escape(table(report))}</pre><img alt='analysis plots' src='data:image/png;base64,{img}'>\n",
            encoding="utf-8",
        )
    else:
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _html_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
