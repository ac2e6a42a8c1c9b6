"""Issue 3 bench (3): grid ramp with and without the battery on a replay of the shared H100 trace.

The measured 8x H100 node trace (../shared/data/h100-node-training-100stepsync.csv, ~0.1 s, ~700 s:
idle, then compute plateaus of ~4.4 kW and communication dips of ~1 kW) is scaled to 600 nodes
(swings of ~2 MW) and repeated back to back (a job restarting every ~12 minutes). The site is the
demo site: 12 clusters of 418 kWh / 209 kW behind 4 x 630 kW PCS (~2.5 MW), ramp limit 200 kW/s.

The replay is `agent.offline.replay.replay` (the same `decide` as the live agent) at the trace's 0.1 s
resolution with the agent deciding every cycle_s (`decide_every`): on what the meters show at that
instant; the PCS follow with the simulator's first-order response (tau 0.1 s). Two PCS modes:

- setpoint: every PCS follows the setpoint written each cycle (SunSpec 704 WSet);
- pcc: every PCS in grid-power (PCC) control: each cycle the agent writes a grid import target,
  ramp (75 % of the limit), share and limits; the PCS's own loop samples the site meter every 20 ms
  (one sample of meter latency) inside the physics step and regulates the grid toward the target.

The grid as a utility meter sees it is the 1 s average; its ramp is the change between consecutive
seconds. Reported: share of seconds over the limit with and without the battery, p99/max ramp, SoC band.

    .venv/bin/python bench/ramp_bench.py [--minutes 60] [--cycle-s 1.0 0.2] [--pcc-cycle-s 1.0]
        [--pcc-sample-s 0.02] [--pcc-gain G] [--tau-s 0.1]      # the PCS model, for sensitivity runs
        [--band-hz 0.1 2]     # the oscillation band: the grid's energy in it against the load's

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
from agent.model.ramp_metrics import ramp_stats
from agent.model.spectrum import DEFAULT_BAND_HZ, band_energy
from agent.offline.replay import PcsModel, Trace, replay

ROOT = Path(__file__).resolve().parent.parent

TRACE = ROOT.parent / "shared" / "data" / "h100-node-training-100stepsync.csv"
NODES = 600
DT = 0.1  # load and physics resolution, s
LIMIT_W_PER_S = 200_000.0
START = datetime(2026, 7, 15, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # flat price: ramp support only


def load_trace(minutes: float) -> np.ndarray:
    """Site load at DT resolution: the node trace resampled, x NODES, repeated to `minutes`."""
    raw = np.genfromtxt(TRACE, delimiter=",", skip_header=1, usecols=(1, 2))
    t, w = raw[:, 1], raw[:, 0]
    grid = np.arange(0.0, t[-1], DT)
    one = np.interp(grid, t, w) * NODES
    reps = int(np.ceil(minutes * 60.0 / (len(one) * DT)))
    return np.tile(one, reps)[: int(minutes * 60.0 / DT)]


DEFAULT_PCS = PcsModel()  # the simulator's PCS


def ramp_share(grid_w: np.ndarray) -> tuple[float, float, float]:
    """(share of seconds whose 1 s-average grid power moved by more than the limit, p99 and max ramp W/s)."""
    r = ramp_stats(np.arange(len(grid_w)) * DT, grid_w, LIMIT_W_PER_S)
    return r.over_limit_s / r.samples, r.p99_w_per_s, r.max_w_per_s


def run(
    site: SiteConfig, load: np.ndarray, cycle_s: float, mode: str, pcs: PcsModel, band: tuple[float, float]
) -> dict[str, Any]:
    """One replay of `load` (W at DT) with the agent every `cycle_s`; mode "setpoint" or "pcc"."""
    if mode == "pcc":
        site = replace(site, pcs=tuple(replace(p, grid_control="pcc") for p in site.pcs))
    ts = np.asarray(START.timestamp() + np.arange(len(load)) * DT, dtype=np.float64)
    trace = Trace(ts, load, None, f"{TRACE.name} x {NODES}")
    every = max(1, round(cycle_s / DT))
    res = replay(site, bundled("shanghai_ci_two_part"), trace, seed_profile=False, decide_every=every, pcs_model=pcs)
    share, p99, worst = ramp_share(res.grid_w)
    return {
        "mode": mode,
        "cycle_s": cycle_s,
        "over_limit_share": share,
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--cycle-s", type=float, nargs="*", default=[1.0, 0.2], help="setpoint-mode agent cycles")
    ap.add_argument("--pcc-cycle-s", type=float, nargs="*", default=[1.0], help="grid-power (PCC) mode agent cycles")
    ap.add_argument("--pcc-sample-s", type=float, default=DEFAULT_PCS.pcc_sample_s, help="PCS meter sample period")
    ap.add_argument("--pcc-gain", type=float, default=None, help="PCS local loop gain (default: critically damped)")
    ap.add_argument("--band-hz", type=float, nargs=2, default=list(DEFAULT_BAND_HZ), help="oscillation band, Hz")
    ap.add_argument("--tau-s", type=float, default=DEFAULT_PCS.tau_s, help="PCS first-order response time constant")
    args = ap.parse_args()
    pcs = PcsModel(args.tau_s, args.pcc_sample_s, args.pcc_gain)
    site = load_site(ROOT / "agent" / "sites" / "demo.toml")
    load = load_trace(args.minutes)
    share, p99, worst = ramp_share(load)
    swings = np.abs(np.diff(load))
    out: dict[str, Any] = {
        "trace": f"{TRACE.name} x {NODES} nodes, {args.minutes:g} min at {DT} s",
        "load_min_w": float(load.min()),
        "load_max_w": float(load.max()),
        "largest_0.1s_step_w": float(swings.max()),
        "limit_w_per_s": LIMIT_W_PER_S,
        "pcs_model": {"tau_s": pcs.tau_s, "pcc_sample_s": pcs.pcc_sample_s, "pcc_gain": pcs.pcc_gain},
        "without_battery": {"over_limit_share": share, "p99_ramp_w_per_s": p99, "max_ramp_w_per_s": worst},
        "with_battery": [],
    }
    soc_window = (site.control.soc_min_pct, site.control.soc_max_pct)
    runs = [("setpoint", c) for c in args.cycle_s] + [("pcc", c) for c in args.pcc_cycle_s]
    for mode, c in runs:
        r = run(site, load, c, mode, pcs, (args.band_hz[0], args.band_hz[1]))
        r["soc_within_window"] = soc_window[0] <= r["soc_min_pct"] and r["soc_max_pct"] <= soc_window[1]
        out["with_battery"].append(r)
        print(
            f"  {mode} mode, cycle {c:g} s: {100 * r['over_limit_share']:.3f} % of seconds over the limit "
            f"(without battery {100 * share:.2f} %), p99 ramp {r['p99_ramp_w_per_s'] / 1e3:.0f} kW/s "
            f"(without {p99 / 1e3:.0f}), {band_text(r['oscillation'])}, "
            f"SoC {r['soc_min_pct']:.1f}-{r['soc_max_pct']:.1f} %",
            file=sys.stderr,
        )
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
