"""`ems-agent health-replay`: measured cell aging replayed into the live cluster-health module.

    ems-agent health-replay AGING.csv [--site SITE.toml] [--cycles-per-day 1] [--seed 0]
                            [--id-col C] [--time-col C] [--capacity-col C] [--resistance-col C]
                            [--temperature-col C] [--alike] [--out DIR] [--sim-days N [--sim-sample-s S]]

CSV with a header line: one row per cell (or cluster) and cycle (or day). Columns are found by
name (`cell`/`cluster`/`id`, `cycle`/`day`, `capacity_ah`/`capacity`, optional
`resistance_ohm`/`resistance`, optional `temperature_c`/`temperature`) or named by the options.
Record i goes to the site's cluster i (file order) at the cluster's nameplate; without `--site`
the clusters are c01, c02, ... of the demo cluster's nameplate. Errors name the file, line and
column, and end the command with exit code 2.

Prints per cluster the predicted and true end of life and the first recommendation's lead, and
for the fleet the Spearman rank correlation, false alarms and misses; `--out` also writes the
report (Markdown + PNG plots + a self-contained HTML page, the daily report's format).
`--sim-days N` also runs N days of the simulator's fleet aged to the record's first N days
and reports how well the module's own estimators recover the injected capacity and resistance;
`--sim-sample-s 1` reads the simulated fleet every second through those days, as the live loop does
(the default reads it at the agent's cycle boundaries only, which is all the estimators use).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.cli.files import read_text
from agent.health.replay import (
    CAPACITY_NOISE_PCT,
    RESISTANCE_NOISE_PCT,
    AgingRecord,
    ReplayConfig,
    history_of,
    map_records,
    replay,
)
from agent.health.score import FleetScore, score
from agent.model.config import load_site
from common.tomlcheck import ConfigError

DEFAULT_NAMEPLATE_WH = 418_000.0  # the demo site's cluster
ID_COLS = ("cell", "cluster", "cluster_id", "id")
TIME_COLS = ("cycle", "day")
CAPACITY_COLS = ("capacity_ah", "capacity", "capacity_wh", "capacity_pct")
RESISTANCE_COLS = ("resistance_ohm", "resistance_mohm", "resistance")
TEMPERATURE_COLS = ("temperature_c", "temp_c", "temperature")


def _column(
    path: Path, header: list[str], given: str | None, names: Sequence[str], what: str, need: bool
) -> int | None:
    if given is not None:
        if given not in header:
            raise ConfigError(f"{path}: line 1: no column {given!r} for {what} (columns: {', '.join(header)})")
        return header.index(given)
    for n in names:
        if n in header:
            return header.index(n)
    if need:
        raise ConfigError(
            f"{path}: line 1: no {what} column (looked for {', '.join(names)}; columns: {', '.join(header)}); "
            f"name it with --{what}-col"
        )
    return None


def read_records(
    path: Path,
    id_col: str | None = None,
    time_col: str | None = None,
    capacity_col: str | None = None,
    resistance_col: str | None = None,
    temperature_col: str | None = None,
) -> list[AgingRecord]:
    """Aging records in order of first appearance; ConfigError names the file, line and column."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    if not any(header):
        raise ConfigError(f"{path}: line 1: empty file, expected a header line")
    cols = {
        "id": _column(path, header, id_col, ID_COLS, "id", True),
        "time": _column(path, header, time_col, TIME_COLS, "time", True),
        "capacity": _column(path, header, capacity_col, CAPACITY_COLS, "capacity", True),
        "resistance": _column(path, header, resistance_col, RESISTANCE_COLS, "resistance", False),
        "temperature": _column(path, header, temperature_col, TEMPERATURE_COLS, "temperature", False),
    }
    data: dict[str, dict[str, list[float]]] = {}
    for parts in reader:
        n = reader.line_num
        if not parts or not "".join(parts).strip():
            continue
        if len(parts) != len(header):
            raise ConfigError(f"{path}: line {n}: expected {len(header)} fields like the header, got {len(parts)}")
        rid = parts[cols["id"] or 0].strip()
        if not rid:
            raise ConfigError(f"{path}: line {n}, column {header[cols['id'] or 0]!r}: empty id")
        rec = data.setdefault(rid, {"time": [], "capacity": [], "resistance": [], "temperature": []})
        for key in ("time", "capacity", "resistance", "temperature"):
            i = cols[key]
            if i is None:
                continue
            raw = parts[i].strip()
            try:
                v = float(raw)
            except ValueError:
                raise ConfigError(f"{path}: line {n}, column {header[i]!r}: {raw!r} is not a number") from None
            if key in ("time", "capacity") and not math.isfinite(v):
                raise ConfigError(f"{path}: line {n}, column {header[i]!r}: {raw!r} must be a finite number")
            if key in ("capacity", "resistance") and v <= 0:
                raise ConfigError(f"{path}: line {n}, column {header[i]!r}: {raw!r} must be > 0")
            if key == "time" and rec["time"] and v <= rec["time"][-1]:
                raise ConfigError(
                    f"{path}: line {n}, column {header[i]!r}: {raw} for {rid} is not after {rec['time'][-1]:g}"
                )
            rec[key].append(v)
    if not data:
        raise ConfigError(f"{path}: no data rows after the header")
    return [
        AgingRecord(rid, tuple(r["time"]), tuple(r["capacity"]), tuple(r["resistance"]), tuple(r["temperature"]))
        for rid, r in data.items()
    ]


def clusters_for(n: int, site_path: str | None) -> list[tuple[str, float]]:
    """(cluster id, nameplate Wh) for n records: the site file's clusters in order, or c01..."""
    if site_path is None:
        return [(f"c{i + 1:02d}", DEFAULT_NAMEPLATE_WH) for i in range(n)]
    site = load_site(site_path)
    if len(site.clusters) < n:
        raise ConfigError(
            f"{site_path}: the site has {len(site.clusters)} clusters for {n} aging records "
            "(one record per cluster): use a site with enough clusters, or leave --site out"
        )
    return [(c.id, c.capacity_wh) for c in site.clusters[:n]]


def table(sc: FleetScore) -> str:
    head = f"{'cluster':<8} {'record':<16} {'last':>5} {'true EOL':>9} {'first rec':>9} {'indicator':<16} "
    head += f"{'predicted EOL (interval)':<26} {'lead':>5}"
    lines = [head]
    for c in sc.clusters:
        true = str(c.true_eol) if c.true_eol is not None else "-"
        first = str(c.first_rec_day) if c.first_rec_day is not None else "-"
        pred = _pred(c.predicted_eol, c.interval)
        lead = str(c.lead) if c.lead is not None else "-"
        lines.append(
            f"{c.cluster_id:<8} {c.source_id[-16:]:<16} {c.last_day:>5} {true:>9} {first:>9} {c.indicator or '-':<16} "
            f"{pred:<26} {lead:>5}"
        )
    return "\n".join(lines)


def _pred(mid: float, interval: tuple[float, float]) -> str:
    if not math.isfinite(mid):
        return "-"
    lo, hi = interval
    if math.isnan(lo):
        return f"{mid:.0f}"
    return f"{mid:.0f} ({lo:.0f}-{hi:.0f})"  # hi may be inf: the curve may level off first


def summary_lines(sc: FleetScore) -> list[str]:
    leads = sc.leads
    scored = [c for c in sc.clusters if c.scored]
    censored = [c for c in sc.clusters if not c.scored]
    out = [
        f"clusters reaching end of life: {len(scored)}; records stopping before it (listed, not scored): "
        f"{len(censored)}",
        "lead of the first recommendation: " + (f"{min(leads)}-{max(leads)} days" if leads else "-"),
        f"Spearman rank correlation, predicted vs true end of life: {sc.spearman:.3f}",
        "true end of life inside the interval given at the first recommendation: {} of {}".format(*sc.covered),
        f"first {sc.n_first} to fail flagged before any other: {'yes' if sc.first_flagged_first else 'no'}",
        f"false alarms: {len(sc.false_alarms)}",
        *(f"  {x}" for x in sc.false_alarms),
        f"misses: {len(sc.misses)}",
        *(f"  {x}" for x in sc.misses),
        f"connection findings (resistance its capacity does not echo; not wear, not scored): {len(sc.connection)}",
        *(f"  {x}" for x in sc.connection),
    ]
    for c in censored:
        out.append(f"censored {c.cluster_id} ({c.source_id}, record ends day {c.last_day}): {c.said}")
    return out


def run(args: Any) -> int:
    path = Path(args.aging)
    records = read_records(
        path, args.id_col, args.time_col, args.capacity_col, args.resistance_col, args.temperature_col
    )
    if not (args.cycles_per_day > 0 and math.isfinite(args.cycles_per_day)):
        raise ConfigError(f"--cycles-per-day: must be > 0, got {args.cycles_per_day:g}")
    for name in ("capacity_noise", "resistance_noise"):
        v = getattr(args, name)
        if not (v >= 0 and math.isfinite(v)):
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 0, got {v:g}")
    if args.sim_days < 0:
        raise ConfigError(f"--sim-days: must be >= 0, got {args.sim_days}")
    if not (args.sim_sample_s >= 0 and math.isfinite(args.sim_sample_s)):
        raise ConfigError(f"--sim-sample-s: must be >= 0 s, got {args.sim_sample_s:g}")
    cfg = ReplayConfig(args.cycles_per_day, args.capacity_noise, args.resistance_noise, seed=args.seed)
    series = map_records(records, clusters_for(len(records), args.site), cfg)
    out = replay(series, args.cycles_per_day)
    sc = score(series, out, peers_alarm=args.alike)
    print(table(sc))
    print("\n".join(summary_lines(sc)))
    if args.out:
        from agent.health.replay_report import write_replay_report

        md, page = write_replay_report(Path(args.out), f"Health replay: {path.name}", series, history_of(series), sc)
        print(f"report: {md} {page}")
    if args.sim_days:
        print("\n".join(_sim_lines(series, args.sim_days, args.seed, args.sim_sample_s)))
    return 0


def _sim_lines(series: Sequence[Any], days: int, seed: int, sample_s: float) -> list[str]:
    try:
        from simulators.recovery import recover
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("simulators"):
            raise ConfigError("--sim-days: the simulators package is not installed in this build") from None
        raise
    return recover(series, days, seed, sample_s).lines()


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("health-replay", help="replay measured cell aging into the cluster-health module and score it")
    p.add_argument("aging", help="aging CSV: id, cycle or day, capacity [, resistance, temperature], with a header")
    p.add_argument("--site", help="site file: record i becomes its cluster i [c01... at the demo nameplate]")
    p.add_argument("--cycles-per-day", type=float, default=1.0, help="cycles that make one day [1]")
    p.add_argument("--seed", type=int, default=0, help="seed of the estimator noise [0]")
    p.add_argument(
        "--capacity-noise", type=float, default=CAPACITY_NOISE_PCT,
        help=f"capacity estimator scatter, %% points (1 sigma) [{CAPACITY_NOISE_PCT:g}]",
    )  # fmt: skip
    p.add_argument(
        "--resistance-noise", type=float, default=RESISTANCE_NOISE_PCT,
        help=f"resistance estimator scatter, %% of value (1 sigma) [{RESISTANCE_NOISE_PCT:g}]",
    )  # fmt: skip
    p.add_argument("--id-col", help="column of the cell or cluster id")
    p.add_argument("--time-col", help="column of the cycle or day")
    p.add_argument("--capacity-col", help="column of the capacity")
    p.add_argument("--resistance-col", help="column of the resistance (optional)")
    p.add_argument("--temperature-col", help="column of the temperature (optional)")
    p.add_argument("--alike", action="store_true", help="the records age alike: every peer-drift alarm is false")
    p.add_argument("--out", help="write the report (Markdown, PNG, HTML) to this directory")
    p.add_argument("--sim-days", type=int, default=0, help="also run N days through the simulator: recovery error")
    p.add_argument(
        "--sim-sample-s", type=float, default=0.0,
        help="with --sim-days: read the simulated fleet every S seconds as the live loop does (1: its 1 s; "
        "slow: ~a minute a day for 28 clusters) [0: at the agent's cycle boundaries]",
    )  # fmt: skip
    p.set_defaults(func=run)
