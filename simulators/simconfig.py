"""The site file's free-form `[simulation]` table, validated (errors name file, table and key).

Every key is optional; with no table at all the demo site simulates ~1,250 8-GPU nodes
running synthetic training jobs (about 5-6 MW with cooling, swinging by MW) and clusters at
50 % SoC.

    [simulation]
    soc_pct = 50            # initial SoC of every cluster ...
    soc = { c01 = 80 }      # ... or per cluster
    load = "synthetic"      # synthetic | trace | inference
    nodes = 1250            # 8-GPU nodes (synthetic, trace)
    seed = 0
    pue = 1.2               # cooling = (pue - 1) x IT, lagging by cooling_tau_s
    cooling_tau_s = 300
    other_load_w = 0        # constant non-IT load
    inference_peak_w = 5e6  # inference model only
    inference_trough_w = 2.5e6
    pv_peak_w = 500000      # clear-sky PV (only if the site has a pv meter); 0 = none
    tau_s = 0.1             # PCS first-order response
    revert_s = 30           # PCS revert timer until the controller writes one
    pcc_sample_s = 0.02     # PCS grid-power (PCC) mode: the local loop's meter sample period
    tick_s = 0.05           # physics step and register refresh period (simulated seconds)
    speed = 1.0             # simulated seconds per real second (CLI --speed overrides)
    control_port = 0        # JSON-lines control socket on 127.0.0.1 (0 = any free port)
    start_hour = 10.5       # site-local time of day at start (default: the wall clock)
    noise = true            # measurement noise on BMS readings
    grid_voltage_v = 400
    frequency_hz = 50
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.model.config import SiteConfig
from common.tomlcheck import Table

LOAD_MODELS = ("synthetic", "trace", "inference")


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    soc_pct: float = 50.0
    soc: dict[str, float] = field(default_factory=dict)
    load: str = "synthetic"
    nodes: int = 1250
    seed: int = 0
    pue: float = 1.2
    cooling_tau_s: float = 300.0
    other_load_w: float = 0.0
    inference_peak_w: float = 5_000_000.0
    inference_trough_w: float = 2_500_000.0
    pv_peak_w: float = 500_000.0
    tau_s: float = 0.1
    revert_s: float = 30.0
    pcc_sample_s: float = 0.02
    tick_s: float = 0.05
    speed: float = 1.0
    control_port: int = 0
    start_hour: float | None = None
    noise: bool = True
    grid_voltage_v: float = 400.0
    frequency_hz: float = 50.0


def parse_simulation(site: SiteConfig) -> SimulationConfig:
    """Read `site.simulation`; raises ConfigError naming the file and key on any bad value."""
    t = Table(site.simulation, f"{site.path} [simulation]")
    d = SimulationConfig()
    soc_raw: Any = t.raw("soc", {})
    soc_t = Table(soc_raw, f"{site.path} [simulation.soc]")
    cluster_ids = {c.id for c in site.clusters}
    soc: dict[str, float] = {}
    for cid in list(soc_t.data):
        if cid not in cluster_ids:
            soc_t.fail(cid, "names no [[cluster]] of this site")
        soc[cid] = soc_t.number(cid, lo=0, hi=100)
    soc_t.done()
    cfg = SimulationConfig(
        soc_pct=t.number("soc_pct", d.soc_pct, lo=0, hi=100),
        soc=soc,
        load=t.text("load", d.load, choices=LOAD_MODELS),
        nodes=t.integer("nodes", d.nodes, lo=1, hi=1_000_000),
        seed=t.integer("seed", d.seed),
        pue=t.number("pue", d.pue, lo=1.0, hi=3.0),
        cooling_tau_s=t.number("cooling_tau_s", d.cooling_tau_s, lo=0, hi=86400),
        other_load_w=t.number("other_load_w", d.other_load_w, lo=0),
        inference_peak_w=t.number("inference_peak_w", d.inference_peak_w, lo=0),
        inference_trough_w=t.number("inference_trough_w", d.inference_trough_w, lo=0),
        pv_peak_w=t.number("pv_peak_w", d.pv_peak_w, lo=0),
        tau_s=t.number("tau_s", d.tau_s, lo=0, hi=60),
        revert_s=t.number("revert_s", d.revert_s, lo=0, hi=86400),
        pcc_sample_s=t.number("pcc_sample_s", d.pcc_sample_s, lo=0.001, hi=1.0),
        tick_s=t.number("tick_s", d.tick_s, lo=0.001, hi=10, lo_open=True),
        speed=t.number("speed", d.speed, lo=0, hi=10_000, lo_open=True),
        control_port=t.integer("control_port", d.control_port, lo=0, hi=65535),
        start_hour=t.number("start_hour", None, lo=0, hi=24),
        noise=t.flag("noise", d.noise),
        grid_voltage_v=t.number("grid_voltage_v", d.grid_voltage_v, lo=0, lo_open=True),
        frequency_hz=t.number("frequency_hz", d.frequency_hz, lo=0, lo_open=True),
    )
    t.done()
    if cfg.inference_trough_w > cfg.inference_peak_w:
        t.fail("inference_trough_w", f"must not exceed inference_peak_w ({cfg.inference_peak_w:g})")
    return cfg
