"""Issue 3 bench (3): grid ramp with and without the battery on a replay of the shared H100 trace.

The measured 8x H100 node trace (../shared/data/h100-node-training-100stepsync.csv, ~0.1 s, ~700 s:
idle, then compute plateaus of ~4.4 kW and communication dips of ~1 kW) is scaled to 600 nodes
(swings of ~2 MW) and repeated back to back (a job restarting every ~12 minutes). The site is the
demo site: 12 clusters of 418 kWh / 209 kW behind 4 x 630 kW PCS (~2.5 MW), ramp limit 200 kW/s.

The replay is `agent.offline.replay.replay` (the same `decide` as the live agent) at the trace's 0.1 s
resolution with the agent deciding every cycle_s (`decide_every`): on what the meters show at that
instant; the PCS follow with the simulator's first-order response (tau 0.1 s). Two PCS modes:

- setpoint: every PCS follows the setpoint written each cycle (SunSpec 704 WSet);
- fast: setpoints, the agent at 1 s and the fast lane (agent.control.fast, the function the live
  lane runs) every --fast-lane-s between its cycles, on the load and grid meters and the window
  the last plan granted;
- pcc: every PCS in grid-power (PCC) control: each cycle the agent writes a grid import target,
  ramp (up to 50 % of the limit: agent.control.pcc.reference_ramp), share and limits; the PCS's
  own loop samples the site meter every 20 ms (one sample of meter latency) inside the physics
  step and regulates the grid toward the target.

The grid as a utility meter sees it is the 1 s average; its ramp is the change between consecutive
seconds. Reported: share of seconds over the limit with and without the battery, p99/max ramp, SoC band.
The seconds over the limit are split by cause (over_limit_causes): with the battery at its power
limit; in PCC mode, beyond the PCS's own loop (its response to the load alone moves the second by
more than the limit: agent.offline.pcc_loop), then over with the reference held (that loop within
the battery's power, its reference still: pcc_loop.held_reference_change); the rest. `--explain`
lists each such second, the grid's change split into the PCS loop's part and the rest (and the
change with the reference held), with what the load did.

    .venv/bin/python bench/ramp_bench.py [--minutes 60] [--cycle-s 1.0 0.2] [--pcc-cycle-s 1.0]
        [--fast-lane-s 0.2]   # the fast lane (agent.control.fast) at these periods, the agent at 1 s
        [--pcc-sample-s 0.02] [--pcc-gain G] [--tau-s 0.1]      # the PCS model, for sensitivity runs
        [--band-hz 0.1 2]     # the oscillation band: the grid's energy in it against the load's
        [--trace 100stepsync 200stepsync] [--nodes 300 600 1000] [--restart-seeds 1]  # variations
        [--battery-scale 2] [--explain]   # the battery x 2; each over-limit second's causes
        [--operator-mode idle]  # an operator's command in every run: the plan 0 W, handed over at the ramp

Variations: either node trace, scaled to other node counts, and each also with the job restarting
at random points (--restart-seeds). The last line says in how many runs the battery made the
grid's swings worse than without it (more seconds over the limit, or a larger p99 ramp).

The oscillation figure (agent.model.spectrum) is the share of the load's swing energy in the band
that the battery keeps off the grid (negative: it adds to it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from agent.economics.tariff import bundled
from agent.model.config import SiteConfig, load_site
from agent.model.operator import OperatorState
from agent.model.ramp_metrics import SLACK, ramp_stats
from agent.model.spectrum import DEFAULT_BAND_HZ, band_energy
from agent.offline.pcc_loop import held_reference_change, loop_residual, second_changes
from agent.offline.replay import PcsModel, Trace, battery_spec, replay

ROOT = Path(__file__).resolve().parent.parent

# beside the repository (../shared/data), else where this machine keeps it (a clone elsewhere)
DATA = next(
    (p for p in (ROOT.parent / "shared" / "data", Path("/work/shared/data")) if p.is_dir()),
    ROOT.parent / "shared" / "data",
)
# the two measured 8x H100 node traces (shared/data/README.md: GitHub grantwilkins/training_profile)
TRACES = {
    "100stepsync": DATA / "h100-node-training-100stepsync.csv",
    "200stepsync": DATA / "h100-node-training-200stepsync.csv",
}
TRACE = TRACES["100stepsync"]
NODES = 600
DT = 0.1  # load and physics resolution, s
LIMIT_W_PER_S = 200_000.0
START = datetime(2026, 7, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # flat price: ramp support only


def node_trace(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(seconds from the first sample, W) of one node trace; the 200stepsync file has no seconds
    column, so they come from its timestamps."""
    head = path.read_text(encoding="utf-8").split("\n", 1)[0]
    if "time_seconds" in head:
        raw = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(1, 2))
        return raw[:, 1] - raw[0, 1], raw[:, 0]
    stamps = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(0,), dtype="datetime64[ms]")
    w = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=(1,))
    return (stamps - stamps[0]).astype(np.float64) / 1000.0, w


def load_trace(
    minutes: float, trace: str = "100stepsync", nodes: int = NODES, restarts: int | None = None
) -> np.ndarray:
    """Site load at DT resolution: the node trace resampled, x `nodes`, repeated to `minutes`.

    `restarts` (a seed): the job restarts at random points instead of running the trace out: each
    run is the trace's first 25-100 % (its idle start and ramp-up again after every restart)."""
    t, w = node_trace(TRACES[trace])
    one = np.interp(np.arange(0.0, t[-1], DT), t, w) * nodes
    n = int(minutes * 60.0 / DT)
    if restarts is None:
        runs = [one] * int(np.ceil(n / len(one)))
    else:
        rng = np.random.default_rng(restarts)
        runs, total = [], 0
        while total < n:
            runs.append(one[: int(rng.integers(len(one) // 4, len(one) + 1))])
            total += len(runs[-1])
    return np.concatenate(runs)[:n]


DEFAULT_PCS = PcsModel()  # the simulator's PCS


AT_POWER_LIMIT = 0.98  # a battery within 2 % of its power capability counts as at its limit


def over_limit_causes(
    grid_w: np.ndarray,
    battery_w: np.ndarray,
    power_w: float,
    loop_w: np.ndarray | None,
    load_w: np.ndarray | None = None,
    pcs: PcsModel = DEFAULT_PCS,
) -> dict[str, Any]:
    """The seconds whose 1 s-average grid moved by more than the limit, by cause (shares of seconds):
    `at_power_limit`, with the battery at its power limit in either of the two seconds compared (the
    load's swing exceeds what the battery can take; counted apart as the issue counts them for the
    month at 1 s); `beyond_pcs_loop`, the others in which the PCS's own grid-power loop, its reference
    held, moves that second by more than the limit on the load alone (`loop_w`:
    agent.offline.pcc_loop.loop_residual; PCC mode only): no reference the agent hands it can keep
    them within the limit; `beyond_held`, the others in which that loop at the battery's power
    (`power_w`), from the battery's power at their start, its reference held through the two seconds,
    still moves them by more than the limit (`load_w` given, PCC mode: pcc_loop.held_reference_change;
    the reference's part is the rest); `left`: the rest. `seconds`: each over-limit second (index,
    grid change, the PCS loop's part of it, at power limit, the change with the reference held or
    None) for --explain."""
    per_s = round(1.0 / DT)
    n = len(grid_w) // per_s
    dg = second_changes(grid_w, DT)
    over = np.abs(dg) > LIMIT_W_PER_S * SLACK
    peak = np.abs(battery_w[: n * per_s]).reshape(n, per_s).max(axis=1) >= AT_POWER_LIMIT * power_w
    at_limit = over & (peak[:-1] | peak[1:])
    dl = second_changes(loop_w, DT) if loop_w is not None else np.zeros(len(dg))
    beyond = over & ~at_limit & (np.abs(dl) > LIMIT_W_PER_S * SLACK)
    held: dict[int, float] = {}
    if load_w is not None and loop_w is not None:
        for s in np.flatnonzero(over & ~at_limit & ~beyond).tolist():
            k = s * per_s
            b0 = float(battery_w[k - 1]) if k > 0 else 0.0
            held[s] = held_reference_change(
                load_w[k : k + 2 * per_s], b0, DT, power_w, pcs.tau_s, pcs.pcc_sample_s, pcs.pcc_gain
            )
    beyond_held = np.zeros(len(dg), dtype=bool)
    beyond_held[[s for s, v in held.items() if abs(v) > LIMIT_W_PER_S * SLACK]] = True
    m = max(1, len(over))
    return {
        "over": float(over.sum()) / m,
        "at_power_limit": float(at_limit.sum()) / m,
        "beyond_pcs_loop": float(beyond.sum()) / m,
        "beyond_held": float(beyond_held.sum()) / m,
        "left": float((over & ~at_limit & ~beyond & ~beyond_held).sum()) / m,
        "seconds": [
            (int(s), float(dg[s]), float(dl[s]) if loop_w is not None else None, bool(at_limit[s]), held.get(int(s)))
            for s in np.flatnonzero(over)
        ],
    }


def ramp_share(grid_w: np.ndarray) -> tuple[float, float, float]:
    """(share of seconds whose 1 s-average grid power moved by more than the limit, p99 and max ramp W/s)."""
    r = ramp_stats(np.arange(len(grid_w), dtype=np.float64) * DT, grid_w, LIMIT_W_PER_S)
    return r.over_limit_s / r.samples, r.p99_w_per_s, r.max_w_per_s


def run(
    site: SiteConfig,
    load: np.ndarray,
    cycle_s: float,
    mode: str,
    pcs: PcsModel,
    band: tuple[float, float],
    label: str = f"{TRACE.name} x {NODES} nodes",
    loop_w: np.ndarray | None = None,
    op: OperatorState | None = None,
) -> dict[str, Any]:
    """One replay of `load` (W at DT) with the agent every `cycle_s`; mode "setpoint" or "pcc", or
    "fast": the agent at the site's cycle (1 s) and the fast lane every `cycle_s`. `loop_w`: the PCS
    loop's response to this load alone (over_limit_causes), used in "pcc" mode."""
    if mode == "pcc":
        site = replace(site, pcs=tuple(replace(p, grid_control="pcc") for p in site.pcs))
    agent_s = cycle_s
    site = replace(site, control=replace(site.control, fast_lane_s=0.0))  # the demo site's lane: only in "fast"
    if mode == "fast":
        site = replace(site, control=replace(site.control, fast_lane_s=cycle_s))
        agent_s = site.cycle_s
    ts = np.asarray(START.timestamp() + np.arange(len(load)) * DT, dtype=np.float64)
    trace = Trace(ts, load, None, label)
    every = max(1, round(agent_s / DT))
    res = replay(
        site, bundled("shanghai_ci_two_part"), trace, seed_profile=False, decide_every=every, pcs_model=pcs, op=op
    )
    share, p99, worst = ramp_share(res.grid_w)
    pcc = mode == "pcc"
    causes = over_limit_causes(
        res.grid_w, res.battery_w, battery_spec(site).power_w, loop_w if pcc else None, load if pcc else None, pcs
    )
    return {
        "mode": mode,
        "cycle_s": cycle_s,
        "over_limit_share": share,
        "over_limit_at_power_limit_share": causes["at_power_limit"],
        "over_limit_beyond_pcs_loop_share": causes["beyond_pcs_loop"],
        "over_limit_beyond_held_share": causes["beyond_held"],
        "over_limit_left_share": causes["left"],
        "over_limit_seconds": causes["seconds"],
        "p99_ramp_w_per_s": p99,
        "max_ramp_w_per_s": worst,
        "soc_min_pct": float(np.nanmin(res.soc_pct)),
        "soc_max_pct": float(np.nanmax(res.soc_pct)),
        "oscillation": band_energy(DT, load, res.grid_w, band).as_dict(),
        "decided_by": res.decided_by,
        "wall_s": res.wall_s,
    }


def band_text(osc: dict[str, Any]) -> str:
    lo, hi = osc["analysed_hz"] or osc["band_hz"]
    rm = osc["removed_share"]
    return f"{lo:g}-{hi:g} Hz energy removed {'-' if rm is None else f'{100 * rm:.0f} %'}"


def variation(
    site: SiteConfig,
    minutes: float,
    name: str,
    nodes: int,
    seed: int | None,
    runs: list[tuple[str, float]],
    pcs: PcsModel,
    band: tuple[float, float],
    explain: bool = False,
    op: OperatorState | None = None,
) -> dict[str, Any]:
    """One load trace (a node trace x nodes, restarting with `seed`) replayed in every (mode, cycle);
    `explain`: each over-limit second's causes on stderr (explain_seconds)."""
    load = load_trace(minutes, name, nodes, seed)
    loop_w = (
        loop_residual(load, DT, pcs.tau_s, pcs.pcc_sample_s, pcs.pcc_gain) if any(m == "pcc" for m, _ in runs) else None
    )
    label = f"{TRACES[name].name} x {nodes} nodes" + (f", restarting (seed {seed})" if seed is not None else "")
    share, p99, worst = ramp_share(load)
    out: dict[str, Any] = {
        "trace": f"{label}, {minutes:g} min at {DT} s",
        "load_min_w": float(load.min()),
        "load_max_w": float(load.max()),
        "largest_0.1s_step_w": float(np.abs(np.diff(load)).max()),
        "limit_w_per_s": LIMIT_W_PER_S,
        "pcs_model": {"tau_s": pcs.tau_s, "pcc_sample_s": pcs.pcc_sample_s, "pcc_gain": pcs.pcc_gain},
        "without_battery": {"over_limit_share": share, "p99_ramp_w_per_s": p99, "max_ramp_w_per_s": worst},
        "with_battery": [],
    }
    print(f"{out['trace']}:", file=sys.stderr)
    soc_window = (site.control.soc_min_pct, site.control.soc_max_pct)
    for mode, c in runs:
        r = run(site, load, c, mode, pcs, band, label, loop_w, op)
        r["soc_within_window"] = soc_window[0] <= r["soc_min_pct"] and r["soc_max_pct"] <= soc_window[1]
        out["with_battery"].append(r)
        print(
            f"  {mode} mode, {'fast lane' if mode == 'fast' else 'cycle'} {c:g} s: {100 * r['over_limit_share']:.3f} %"
            f" of seconds over the limit ({100 * r['over_limit_at_power_limit_share']:.3f} % with the battery at its"
            f" power limit{beyond_text(r)}; without battery {100 * share:.2f} %),"
            f" p99 ramp {r['p99_ramp_w_per_s'] / 1e3:.0f} kW/s "
            f"(without {p99 / 1e3:.0f}), {band_text(r['oscillation'])}, "
            f"SoC {r['soc_min_pct']:.1f}-{r['soc_max_pct']:.1f} %",
            file=sys.stderr,
        )
        if explain:
            explain_seconds(load, r["over_limit_seconds"])
    return out


def beyond_text(r: dict[str, Any]) -> str:
    if r["mode"] != "pcc":
        return ""
    return (
        f", {100 * r['over_limit_beyond_pcs_loop_share']:.3f} % beyond the PCS's own loop,"
        f" {100 * r['over_limit_beyond_held_share']:.3f} % over with the reference held"
    )


def explain_seconds(load: np.ndarray, seconds: list[tuple[int, float, float | None, bool, float | None]]) -> None:
    """One line per over-limit second: the grid's change between its 1 s averages, split (PCC mode)
    into the PCS loop's response to the load alone and the rest (the reference the agent handed the
    PCS, and the battery's power limit where it was reached), the change the PCS at the battery's
    power would have left with its reference held (where computed: over_limit_causes), and what the
    load did in those two seconds."""
    per_s = round(1.0 / DT)
    dl = second_changes(load, DT)
    for s, dg, loop, at_limit, held in seconds:
        steps = np.abs(np.diff(load[s * per_s : (s + 2) * per_s]))
        split = (
            ""
            if loop is None
            else f" = PCS loop on the load alone {loop / 1e3:+.0f} + the rest {(dg - loop) / 1e3:+.0f}"
        )
        if held is not None:
            split += f" (the reference held, the PCS at the battery's power: {held / 1e3:+.0f})"
        print(
            f"    second {s}->{s + 1}: grid {dg / 1e3:+.0f} kW{split}; load {dl[s] / 1e3:+.0f} kW"
            f" (largest {DT:g} s step {steps.max() / 1e3:.0f} kW){'; battery at its power limit' if at_limit else ''}",
            file=sys.stderr,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--cycle-s", type=float, nargs="*", default=[1.0, 0.2], help="setpoint-mode agent cycles")
    ap.add_argument("--pcc-cycle-s", type=float, nargs="*", default=[1.0], help="grid-power (PCC) mode agent cycles")
    ap.add_argument(
        "--fast-lane-s", type=float, nargs="*", default=[0.2], help="fast lane periods (setpoints, agent at 1 s)"
    )
    ap.add_argument("--pcc-sample-s", type=float, default=DEFAULT_PCS.pcc_sample_s, help="PCS meter sample period")
    ap.add_argument("--pcc-gain", type=float, default=None, help="PCS local loop gain (default: critically damped)")
    ap.add_argument("--band-hz", type=float, nargs=2, default=list(DEFAULT_BAND_HZ), help="oscillation band, Hz")
    ap.add_argument("--tau-s", type=float, default=DEFAULT_PCS.tau_s, help="PCS first-order response time constant")
    ap.add_argument("--trace", nargs="*", choices=sorted(TRACES), default=["100stepsync"], help="node traces")
    ap.add_argument("--nodes", type=int, nargs="*", default=[NODES], help="nodes running the job (the load's scale)")
    ap.add_argument(
        "--restart-seeds", type=int, nargs="*", default=[], help="also each trace with the job restarting at random"
    )
    ap.add_argument(
        "--battery-scale", type=int, default=1,
        help="the demo's battery times this: its clusters and each PCS's rating (a site sized to its load's swings)",
    )
    ap.add_argument("--explain", action="store_true", help="each over-limit second's causes, on stderr")
    ap.add_argument(
        "--operator-mode",
        choices=["auto", "idle"],
        default="auto",
        help="the operator's mode in every run (idle: the battery's plan is 0 W, handed over at the full ramp)",
    )
    args = ap.parse_args()
    pcs = PcsModel(args.tau_s, args.pcc_sample_s, args.pcc_gain)
    op = OperatorState(mode=args.operator_mode) if args.operator_mode != "auto" else None
    site = load_site(ROOT / "agent" / "sites" / "demo.toml")
    if args.battery_scale > 1:
        k = args.battery_scale
        site = site.with_clusters(k * len(site.clusters))
        site = replace(site, pcs=tuple(replace(p, rated_w=k * p.rated_w) for p in site.pcs))
    band = (args.band_hz[0], args.band_hz[1])
    runs = (
        [("setpoint", c) for c in args.cycle_s]
        + [("fast", c) for c in args.fast_lane_s]
        + [("pcc", c) for c in args.pcc_cycle_s]
    )
    variations = [
        variation(site, args.minutes, name, nodes, seed, runs, pcs, band, args.explain, op)
        for name in args.trace
        for nodes in args.nodes
        for seed in [None, *args.restart_seeds]
    ]
    # do no harm (issue 14 item 1): with the battery, never more seconds over the limit nor a
    # larger p99 ramp than without it
    harm = [
        f"{v['trace']}: {r['mode']} {r['cycle_s']:g} s"
        for v in variations
        for r in v["with_battery"]
        if r["over_limit_share"] > v["without_battery"]["over_limit_share"]
        or r["p99_ramp_w_per_s"] > v["without_battery"]["p99_ramp_w_per_s"]
    ]
    n_runs = sum(len(v["with_battery"]) for v in variations)
    print(f"worse with the battery than without: {len(harm)} of {n_runs} runs", file=sys.stderr)
    for h in harm:
        print(f"  {h}", file=sys.stderr)
    out: dict[str, Any] = variations[0] if len(variations) == 1 else {"variations": variations}
    out["worse_than_without_battery"] = harm
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
