"""A deterministic rig: the real AgentLoop against the real simulators over loopback Modbus TCP.

The simulator does not tick on its own here; each `step()` runs one agent cycle (poll over TCP,
decide, write over TCP) and then advances the site physics by one cycle. Agent clock and wall
time are injected, so a test's figures do not depend on the machine's load or the time of day.
(No tests in this module.)
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.economics.tariff import load_tariff
from agent.live.audit import AuditLog
from agent.live.hub import CycleRecord, Hub
from agent.live.loop import AgentLoop
from agent.model.config import SiteConfig, load_site
from simulators.site import SimulatedSite

from .fakes import DEMO_SITE, FakeClock

TZ = ZoneInfo("Asia/Shanghai")
NOON = datetime(2026, 7, 15, 12, 0, 0, tzinfo=TZ)  # a flat-price hour on the Shanghai tariff

# The rig's clock is injected, but a Modbus timeout runs on real time: at the demo's 0.3 s the
# in-process simulator, starved on a loaded 2-core machine, missed reads (CI: 10 alarms raised and
# one reading lost in a 5-cycle ledger check that raises none on an idle machine). Generous here,
# it costs nothing while every device answers.
LOADED_MACHINE_TIMEOUT_S = 3.0

# A GPU hall of ~1.1 MW, steady enough that what the tests measure is the agent, not the load.
QUIET_SIMULATION = """
[simulation]
load = "inference"
inference_peak_w = 1_100_000
inference_trough_w = 1_100_000
pue = 1.0
pv_peak_w = 0
noise = false
start_hour = 12
soc_pct = {soc}
"""


def site_text(ports: dict[int, int] | None = None, soc: float = 50.0, drop: tuple[str, ...] = (),
              cycle_s: float = 1.0, extra: str = "", pcc: bool = False, timeout_s: float | None = None) -> str:
    """The demo site, moved to `ports` (configured port -> served port), clusters in `drop` left out.

    `pcc`: every PCS speaks the ACME map with grid-power control and runs in that mode.
    `timeout_s`: every device's Modbus timeout instead of the demo's 0.3 s.
    """
    text = DEMO_SITE.read_text()
    if timeout_s is not None:
        text = re.sub(r"^timeout_s = [0-9.]+$", f"timeout_s = {timeout_s}", text, count=1, flags=re.M)
    if pcc:
        text = re.sub(r'^profile = "pcs_[a-z0-9_]+"$', 'profile = "pcs_vendor_acme_pcc"\ngrid_control = "pcc"', text,
                      flags=re.M)
    text = text.replace("cycle_s = 1.0", f"cycle_s = {cycle_s}")
    if ports:
        text = re.sub(r"^port = (\d+)$", lambda m: f"port = {ports[int(m.group(1))]}", text, flags=re.M)
    for cid in drop:
        text = re.sub(rf'\[\[cluster\]\]\nid = "{cid}"\n(?:[^\[\n][^\n]*\n)*', "", text)
        text = text.replace(f', "{cid}"]', "]").replace(f'"{cid}", ', "")
    return text + QUIET_SIMULATION.format(soc=soc) + extra


class Rig:
    """`await Rig.open(tmp_path)`; `await rig.step()` per cycle; `await rig.close()`."""

    def __init__(self, sim: SimulatedSite, site_file: Path, soc: float, drop: tuple[str, ...],
                 pcc: bool = False, timeout_s: float | None = None) -> None:
        self.sim = sim
        self.site_file = site_file
        self.soc = soc
        self.pcc = pcc
        self.timeout_s = timeout_s
        self.clock = FakeClock()
        self.site = load_site(site_file)
        self.hub = Hub(self.site, AuditLog(site_file.parent / "audit.jsonl"), clock=self.clock)
        assert self.site.tariff_path is not None
        self.loop = AgentLoop(
            self.site,
            self.hub,
            load_tariff(self.site.tariff_path),
            clock=self.clock,
            wall=lambda: NOON + timedelta(seconds=self.clock.t - 1000.0),
        )

    @staticmethod
    async def open(tmp_path: Path, soc: float = 50.0, drop: tuple[str, ...] = (), pcc: bool = False,
                   timeout_s: float | None = LOADED_MACHINE_TIMEOUT_S) -> Rig:
        """`timeout_s`: the agent's Modbus timeout (None: the demo's 0.3 s, for a test that times a
        device out on purpose)."""
        full = tmp_path / "sim.toml"
        full.write_text(site_text(soc=soc, pcc=pcc))
        sim = SimulatedSite(load_site(full), any_port=True, control_port=0)
        await sim.start(ticking=False)
        site_file = tmp_path / "site.toml"
        ports = {d.port: sim.ports[d.id] for d in sim.site.devices}
        site_file.write_text(site_text(ports, soc, drop, pcc=pcc, timeout_s=timeout_s))
        return Rig(sim, site_file, soc, drop, pcc, timeout_s)

    def port_map(self) -> dict[int, int]:
        return {d.port: self.sim.ports[d.id] for d in self.sim.site.devices}

    async def step(self) -> CycleRecord:
        rec = await self.loop.cycle()
        self.sim.advance(self.site.cycle_s)
        self.clock.t += self.site.cycle_s
        return rec

    async def run(self, n: int) -> list[CycleRecord]:
        return [await self.step() for _ in range(n)]

    def rewrite(self, drop: tuple[str, ...] = ()) -> SiteConfig:
        self.site_file.write_text(site_text(self.port_map(), self.soc, drop, pcc=self.pcc, timeout_s=self.timeout_s))
        return load_site(self.site_file)

    async def close(self) -> None:
        await self.loop.close()
        await self.sim.stop()
