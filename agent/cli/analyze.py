"""`ems-agent analyze`: replay a load trace through the control policy and report what the battery saves.

    ems-agent analyze LOAD.csv [--site SITE.toml] [--tariff FILE_OR_NAME] [--pv PV.csv]
                      [--clusters N | --sweep-clusters 0,4,8] [--ramp-limit KW_PER_S]
                      [--json] [--plot OUT.png|OUT.html] [--no-optimum] [--start-soc PCT] [--quiet]
                      [--band-hz LOW HIGH] [--cycle S] [--max-hold S]
                      [--planner]
    ems-agent analyze BASE.csv --growth GROWTH.toml [--growth-savings replay|optimum] [--growth-cache FILE]
                      [--plot OUT.png] [--site ...]

`--growth`: a staged expansion plan for a load that grows over years (agent/offline/growth.py has
the file's keys): each plan year's load replayed with each candidate cluster count, then when to
add how many clusters for the highest NPV (agent/economics/expansion.py), against buying it all on
day one and against no battery.

`--planner`: predictive dispatch (agent/control/replan.py) in the replay: the same forecaster, fed
only the past, and planner at every demand interval; the report adds its solves, their time and
the forecast's accuracy. A site file whose `[planner]` is enabled plans without the flag, and its
`[planner]` settings (horizon, history, margin, time limit) are the replay's, as the agent's.

CSV: `timestamp,power_w` (a header line is optional); timestamps are Unix seconds or ISO 8601
(without an offset they are site-local time); one regular step from 0.1 s to 15 min. A PV trace
in the same format is interpolated onto the load's timestamps. Errors name the file and line
and end the command with exit code 2.

A trace coarser than a minute (`--max-hold`) is replayed in sub-steps of at most a minute, the
load held at each step's mean, so the policy decides as it would live rather than once per step
(agent/offline/replay.py's module doc); the report gives the sub-steps.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from agent.cli.files import read_text
from agent.control.replan import Replanner
from agent.economics.roi import EconomicsConfig, economics_config
from agent.economics.tariff import FloatArray, Tariff, bundled, load_tariff
from agent.live.plan_config import parse_planner
from agent.model.config import SiteConfig, check_demand_interval, load_site
from agent.model.spectrum import DEFAULT_BAND_HZ, band_energy
from agent.offline import replay_cache
from agent.offline.expansion import SOURCES, distinct_loads, expansion_report, expansion_text, savings_table
from agent.offline.expansion_plot import plot_expansion
from agent.offline.growth import load_growth, year_trace
from agent.offline.replay import (
    MAX_HOLD_S,
    MAX_STEP_S,
    MIN_STEP_S,
    Trace,
    decide_every_for,
    evaluate,
    plan_battery,
    planner_report,
    replay,
    site_for,
)
from agent.offline.report import plot_report, table
from common.tomlcheck import ConfigError

DEMO_SITE = Path(__file__).resolve().parent.parent / "sites" / "demo.toml"


# --- input ---------------------------------------------------------------------------------------


def _timestamp(text: str, tz: ZoneInfo) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    t = datetime.fromisoformat(text)  # ValueError names the text
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    return t.timestamp()


def read_csv(path: Path, tz: ZoneInfo) -> tuple[FloatArray, FloatArray]:
    """(Unix timestamps, W) from a `timestamp,power_w` file; ConfigError names the file and line."""
    text = read_text(path)
    ts: list[float] = []
    ws: list[float] = []
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(",")
        if len(parts) != 2:
            raise ConfigError(f"{path}: line {n}: expected 2 fields 'timestamp,power_w', got {len(parts)}")
        a, b = parts[0].strip(), parts[1].strip()
        if not ts and a.lower() == "timestamp" and b.lower() == "power_w":
            continue  # header
        try:
            t = _timestamp(a, tz)
        except ValueError:
            raise ConfigError(f"{path}: line {n}: timestamp {a!r} is neither Unix seconds nor ISO 8601") from None
        try:
            w = float(b)
        except ValueError:
            raise ConfigError(f"{path}: line {n}: power_w {b!r} is not a number") from None
        if not (math.isfinite(t) and math.isfinite(w)):
            raise ConfigError(f"{path}: line {n}: timestamp and power_w must be finite numbers")
        if ts and t <= ts[-1]:
            raise ConfigError(f"{path}: line {n}: timestamp {a!r} does not come after the previous line's")
        ts.append(t)
        ws.append(w)
    if len(ts) < 2:
        raise ConfigError(f"{path}: needs at least 2 samples, got {len(ts)}")
    return np.asarray(ts), np.asarray(ws)


def load_trace(load_path: Path, pv_path: Path | None, tz: ZoneInfo) -> Trace:
    ts, load = read_csv(load_path, tz)
    pv = None
    if pv_path is not None:
        pts, pw = read_csv(pv_path, tz)
        if pts[0] > ts[0] or pts[-1] < ts[-1]:
            raise ConfigError(
                f"{pv_path}: covers {pts[0]:.0f}..{pts[-1]:.0f} s, not all of the load trace"
                f" ({ts[0]:.0f}..{ts[-1]:.0f} s)"
            )
        if np.any(pw < 0):
            i = int(np.flatnonzero(pw < 0)[0])
            raise ConfigError(f"{pv_path}: sample {i + 1}: power_w must be >= 0 for PV, got {pw[i]:g}")
        pv = np.interp(ts, pts, pw)
    try:
        return Trace(ts, load, pv, str(load_path))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def load_tariff_arg(arg: str | None, site: SiteConfig) -> Tariff:
    if arg is None:
        if site.tariff_path is None:
            raise ConfigError(f"{site.path}: [site] has no 'tariff'; give one with --tariff")
        return load_tariff(site.tariff_path)
    p = Path(arg)
    if p.suffix == ".toml" or p.exists():
        return load_tariff(p)
    try:
        return bundled(arg)
    except (FileNotFoundError, ConfigError):
        raise ConfigError(f"--tariff: {arg!r} is neither a tariff file nor a bundled tariff name") from None


def parse_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--sweep-clusters: expected a list like 0,4,8, got {text!r}") from None
    if not counts or any(c < 0 or c > 1000 for c in counts):
        raise ConfigError(f"--sweep-clusters: counts must be 0..1000, got {text!r}")
    return sorted(set(counts))


# --- output --------------------------------------------------------------------------------------


class Progress:
    """A one-line progress bar on stderr, redrawn at most a few times a second."""

    def __init__(self, label: str, quiet: bool) -> None:
        self.label = label
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        if done < total and now - self.last < 0.25:
            return
        self.last = now
        frac = done / total if total else 1.0
        bar = "#" * int(30 * frac)
        eta = (now - self.t0) * (1 - frac) / frac if frac > 0 else math.inf
        end = "\n" if done >= total else ""
        print(
            f"\r{self.label} [{bar:<30}] {frac:6.1%} {done:,}/{total:,} steps, {eta:5.0f} s left",
            end=end,
            file=sys.stderr,
            flush=True,
        )


def sweep_table(rows: list[dict[str, Any]], currency: str) -> str:
    lines = [
        f"{'clusters':>8}{'kWh':>10}{'peak kW':>10}{'net/month':>14}{'capex':>14}{'NPV':>14}{'IRR':>8}{'payback y':>10}"
    ]
    for r in rows:
        irr = f"{r['irr']:.1%}" if r["irr"] is not None else "-"
        pb = f"{r['payback_years']:.1f}" if r["payback_years"] is not None else "-"
        npv = f"{r['npv']:,.0f}" if r["npv"] is not None else "-"  # none under a day of trace
        lines.append(
            f"{r['clusters']:>8}{r['capacity_kwh']:>10,.0f}{r['peak_kw']:>10,.0f}{r['net_per_month']:>14,.0f}"
            f"{r['capex']:>14,.0f}{npv:>14}{irr:>8}{pb:>10}"
        )
    return f"ROI over battery size ({currency})\n" + "\n".join(lines)


def summary_lines(rep: dict[str, Any]) -> list[str]:
    out = []
    se = rep["stored_energy"]
    out.append(
        f"stored energy {se['start_kwh']:,.0f} -> {se['end_kwh']:,.0f} kWh"
        f" (worth {se['value']:,.2f} {rep['currency']}); adjusted net savings {se['adjusted_net_savings']:,.2f}"
    )
    lim = rep["ramp_limit_kw_per_s"]
    if lim > 0:
        out.append(
            f"time over the {lim:g} kW/s ramp limit: {rep['baseline']['ramp_over_limit_share']:.2%} without,"
            f" {rep['battery']['ramp_over_limit_share']:.2%} with the battery"
        )
    gc = rep["grid_connection"]
    out.append(
        f"smallest grid connection this battery holds: {gc['smallest_kw']:,.0f} kW"
        f" (peak net load {gc['peak_net_kw']:,.0f} kW; {gc['method']})"
    )
    if gc["limit_kw"] is not None:
        out.append(
            f"  grid_import_limit_w {gc['limit_kw']:,.0f} kW: above it in {gc['steps_above_limit']:,} steps"
            f" of the replay; avoided upgrade {gc['avoided_kw']:,.0f} kW ="
            f" {gc['avoided_upgrade_capex']:,.0f} {rep['currency']} (off the capex)"
        )
    r = rep["roi"]
    pb = r["simple_payback_years"]
    irr = r["irr"]
    est = rep["annual_estimate"]
    if r["annual_savings"] is None:
        out.append(f"ROI: capex {r['capex']:,.0f}; {est['note']}")
    else:
        out.append(
            f"ROI: capex {r['capex']:,.0f}, annual savings {r['annual_savings']:,.0f}"
            f" (range {est['low']:,.0f} to {est['high']:,.0f}), NPV {r['npv']:,.0f}, "
            + (f"IRR {irr:.1%}, " if irr is not None else "IRR -, ")
            + (f"payback {pb:.1f} years" if pb is not None else "no payback")
        )
        out.append(f"  annual estimate: {est['note']}")
    o = rep["optimum"]
    if o is not None and "skipped" in o:
        out.append(f"optimum: skipped ({o['skipped']})")
    elif o is not None:
        share = o["controller_share"]
        out.append(
            f"perfect-foresight optimum (same end SoC {o['end_soc_pct']:.1f} %): savings {o['savings']:,.2f}"
            + (f"; the controller reaches {share:.1%} of it" if share is not None else "")
        )
    osc = rep.get("oscillation")
    if osc is not None:
        out.append(oscillation_line(osc))
    pl = rep.get("planner")
    if pl is not None:
        f, ms = pl["forecast"], pl["solve_ms"]
        out.append(
            f"planner: {pl['solves']} solves ({pl['failures']} failed, {pl['intervals_without_forecast']} intervals"
            f" before a day of history), solve p50 {ms['p50'] or 0:.0f} ms, p99 {ms['p99'] or 0:.0f} ms;"
            f" forecast MAPE {_share(f['mape'])}, error at the daily peak {_share(f['daily_peak_abs_error'])}"
        )
    rp = rep["replay"]
    # (a step read from Unix timestamps carries float noise: 0.0999999 s)
    every = f", deciding every {rp['cycle_s']:.3g} s" if rp["cycle_s"] != rp["step_s"] else ""
    if rp["substeps"] > 1:
        # the policy is replayed as live, but the trace has no swings inside its steps: a finer
        # trace of the same load can save more or less (BENCHMARKS.md, issue 16 second pass)
        every += f" (each step's load held over {rp['substeps']} sub-steps; swings within a step are not in the trace)"
    out.append(
        f"replay: {rp['steps']:,} steps of {rp['step_s']:.3g} s{every} in {rp['wall_s']:.1f} s ({rp['build']} build)"
    )
    if rp["build"] == "python" and rp["wall_s"] > 60.0:
        out.append("  (`make fast` installs the compiled build in .venv-fast: the same results, ~7x faster)")
    return out


def oscillation_line(osc: dict[str, Any]) -> str:
    """One line on the grid's oscillation in the band against the load's (agent.model.spectrum)."""
    lo, hi = osc["band_hz"]
    head = f"oscillation {lo:g}-{hi:g} Hz: "
    if osc["analysed_hz"] is None:
        return head + f"not measurable ({osc['note']})"
    a, b = osc["analysed_hz"]
    where = f" (analysed {a:.3g}-{b:.3g} Hz: {osc['note']})" if osc["note"] else ""
    rm = osc["removed_share"]
    removed = f", the battery removes {rm:.1%} of its energy" if rm is not None else ""
    return (
        head + f"RMS {osc['load_rms_kw']:,.1f} kW in the load, {osc['grid_rms_kw']:,.1f} kW at the grid{removed}{where}"
    )


# --- the command -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    trace = load_trace(Path(args.load), Path(args.pv) if args.pv else None, site.timezone)
    tariff = load_tariff_arg(args.tariff, site)
    where = args.tariff or str(site.tariff_path)
    check_demand_interval(site.path, site.control.demand_interval_s, tariff.demand_interval_s, where)
    ramp = args.ramp_limit * 1000.0 if args.ramp_limit is not None else None
    if ramp is not None and not (math.isfinite(ramp) and ramp >= 0):
        raise ConfigError(f"--ramp-limit: must be a number >= 0 kW/s, got {args.ramp_limit!r}")
    if args.clusters is not None and args.clusters < 0:
        raise ConfigError(f"--clusters: must be >= 0, got {args.clusters}")
    if not 0.0 <= args.start_soc <= 100.0:
        raise ConfigError(f"--start-soc: must be within 0..100 %, got {args.start_soc:g}")
    band = (args.band_hz[0], args.band_hz[1])
    if not (math.isfinite(band[0]) and math.isfinite(band[1]) and 0.0 <= band[0] < band[1]):
        raise ConfigError(f"--band-hz: expected 0 <= LOW < HIGH Hz, got {band[0]:g} {band[1]:g}")
    econ = economics_config(site)
    counts = parse_counts(args.sweep_clusters) if args.sweep_clusters else None
    main_site = site_for(site, args.clusters, ramp)
    limit = main_site.control.ramp_limit_w_per_s

    cycle = args.cycle if args.cycle is not None else site.cycle_s
    try:
        every = decide_every_for(cycle, trace.step_s)
    except ValueError as e:
        raise ConfigError(f"--cycle: {e}") from None
    hold = args.max_hold
    if not (math.isfinite(hold) and MIN_STEP_S <= hold <= MAX_STEP_S):
        raise ConfigError(f"--max-hold: must be {MIN_STEP_S:g} .. {MAX_STEP_S:g} s, got {hold!r}")

    if args.growth_cache and not args.growth:
        raise ConfigError("--growth-cache: only with --growth (it keeps the growth plan's replays)")
    if args.growth:
        return run_growth(args, site_for(site, None, ramp), tariff, econ, every, hold)

    planner = parse_planner(site)  # the agent's own [planner] settings: a replay plans as the agent would
    settings = planner.settings()

    def one(s: SiteConfig, label: str, opt: bool) -> tuple[dict[str, Any], Any]:
        prog = Progress(label, args.quiet)
        rp = Replanner(tariff, plan_battery(s), settings) if args.planner or planner.enabled else None
        res = replay(
            s, tariff, trace, start_soc_pct=args.start_soc, progress=prog, decide_every=every, replanner=rp,
            max_hold_s=hold,
        )  # fmt: skip
        r = evaluate(s, tariff, res, econ, limit, with_optimum=opt)
        r["planner"] = _nulls(planner_report(res, tariff, settings))
        return r, res

    rep, res = one(main_site, f"analyze {len(main_site.clusters)} clusters", not args.no_optimum)
    rep["oscillation"] = band_energy(trace.step_s, trace.net_w, res.grid_w, band).as_dict()
    sweep: list[dict[str, Any]] | None = None
    if counts is not None:
        sweep = []
        for c in counts:
            r = rep if c == len(main_site.clusters) else one(site_for(main_site, c), f"sweep {c} clusters", False)[0]
            days = r["hours"] / 24.0
            sweep.append(
                {
                    "clusters": c,
                    "capacity_kwh": r["site"]["capacity_kwh"],
                    "peak_kw": r["battery"]["peak_kw"],
                    "net_savings": r["stored_energy"]["adjusted_net_savings"],
                    "net_per_month": r["stored_energy"]["adjusted_net_savings"] / days * 30.4 if days else 0.0,
                    "annual_savings": r["roi"]["annual_savings"],
                    "capex": r["roi"]["capex"],
                    "npv": r["roi"]["npv"],
                    "irr": r["roi"]["irr"],
                    "payback_years": r["roi"]["simple_payback_years"],
                }
            )
        rep["sweep"] = sweep
    if args.plot:
        path = Path(args.plot)
        if path.suffix.lower() not in (".png", ".html"):
            raise ConfigError(f"--plot: {path} must end in .png or .html")
        plot_report(rep, trace.timestamps, trace.net_w, res.grid_w, res.soc_pct, site.timezone, path, sweep)
        rep["plot"] = str(path)
    if args.json:
        print(json.dumps(rep, indent=2, allow_nan=False, default=_json_default))
    else:
        print(table(rep))
        print("\n".join(summary_lines(rep)))
        if sweep:
            print(sweep_table(sweep, rep["currency"]))
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


def run_growth(
    args: argparse.Namespace, site: SiteConfig, tariff: Tariff, econ: EconomicsConfig, every: int, hold: float
) -> int:
    """`--growth`: every plan year's load replayed with every candidate count, then the staged plan
    (agent.offline.expansion); the base trace and --pv are the years' default load and PV."""
    for flag, given in (("--clusters", args.clusters is not None), ("--sweep-clusters", args.sweep_clusters),
                        ("--planner", args.planner)):  # fmt: skip
        if given:
            raise ConfigError(f"{flag}: not with --growth (the growth plan's [plan] clusters are the sizes replayed)")
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        raise ConfigError(f"--plot: {args.plot} must end in .png with --growth")  # before the replays
    plan = load_growth(Path(args.growth), site, econ)
    base, base_pv = Path(args.load), Path(args.pv) if args.pv else None
    traces = [
        year_trace(plan, plan.years.index(y) + 1, base, base_pv, load_trace, site.timezone)
        for y in distinct_loads(plan)
    ]
    cache: dict[str, dict[str, Any]] | None = None
    if args.growth_cache:
        cache, warning = replay_cache.load(Path(args.growth_cache))
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    table = savings_table(
        plan, site, tariff, econ, traces, source=args.growth_savings, start_soc_pct=args.start_soc, decide_every=every,
        progress=lambda label: Progress(label, args.quiet), cache=cache, max_hold_s=hold,
        code=replay_cache.code_digest() if cache is not None else "",
    )  # fmt: skip
    if cache is not None and table.replays:
        replay_cache.save(Path(args.growth_cache), cache)
    # the heuristic policy only: a planned replay solves ~3,000 time-limited plans a month per cell
    # (their results depend on the machine's load), and --planner is refused above
    planned = parse_planner(site).enabled and args.growth_savings == "replay"
    why = f"{site.path} [planner] is enabled, but the growth replays run the heuristic policy without it"
    rep = expansion_report(plan, table, tariff.currency, [why] if planned else [])
    if args.plot:
        rep["plot"] = str(plot_expansion(rep, Path(args.plot)))
    if args.json:
        print(json.dumps(rep, indent=2, allow_nan=False, default=_json_default))
    else:
        print(expansion_text(rep))
        if args.plot:
            print(f"plot: {args.plot}")
    return 0


def _share(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def _nulls(x: Any) -> Any:
    """`x` with its NaN figures as None (JSON null: not computed). The planner's forecast accuracy
    has no daily-peak error when no forecast covered a whole day (a horizon under 24 h, a short
    trace): `--json` then ended in a ValueError traceback (exit 1) instead of a report."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _nulls(v) for k, v in x.items()}
    return x


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("analyze", help="offline analysis: replay a load trace, bills and savings with a battery")
    p.add_argument("load", help="load trace CSV: timestamp,power_w")
    p.add_argument("--site", default=str(DEMO_SITE), help="site file (clusters, PCS, control) [demo site]")
    p.add_argument("--tariff", help="tariff file or bundled name [the site's tariff]")
    p.add_argument("--pv", help="PV trace CSV: timestamp,power_w")
    p.add_argument("--clusters", type=int, help="cluster count instead of the site file's")
    p.add_argument("--sweep-clusters", metavar="N,N,...", help="also replay these cluster counts: ROI table")
    p.add_argument("--ramp-limit", type=float, metavar="KW_PER_S", help="grid ramp limit (control and report)")
    p.add_argument(
        "--cycle", type=float, metavar="S", help="the agent's control cycle, s, for traces finer than it [cycle_s]"
    )
    p.add_argument(
        "--max-hold",
        type=float,
        default=MAX_HOLD_S,
        metavar="S",
        help="a trace coarser than this is replayed in sub-steps of at most S (the load held), s [%(default)g]",
    )
    p.add_argument("--start-soc", type=float, default=50.0, help="initial SoC of every cluster, %% [50]")
    p.add_argument("--no-optimum", action="store_true", help="skip the perfect-foresight optimum")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", help="write a plot: a representative day and the monthly bills (.png or .html)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--band-hz",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=list(DEFAULT_BAND_HZ),
        help="frequency band for the oscillation report, Hz (cut to what the trace's sampling shows) [0.1 2]",
    )
    p.add_argument("--planner", action="store_true", help="predictive dispatch: forecast and plan every interval")
    p.add_argument(
        "--growth",
        metavar="GROWTH.toml",
        help="staged expansion: when to add how many clusters as the load grows (agent/offline/growth.py)",
    )
    p.add_argument(
        "--growth-savings",
        choices=SOURCES,
        default="replay",
        help="--growth's annual savings: the live policy replayed, or the perfect-foresight optimum (a bound) [replay]",
    )
    p.add_argument(
        "--growth-cache",
        metavar="FILE",
        help="keep --growth's replay results in FILE (JSON) and reuse those whose inputs and code are unchanged",
    )
    p.set_defaults(func=run)
