"""A live campus for integration tests: the demo campus's feeders simulated in this process (one
SimulatedCampus, real Modbus TCP on loopback), a real `ems-agent run` per feeder, a real
`ems-agent coordinate`, all on a real mosquitto. (No tests here.)

The site and campus files are the shipped example (agent/sites/campus_demo), moved to free ports
and the test's broker; the simulation starts at noon with noise off. Every sample of the plant is
taken from the simulator itself: the campus import as the utility sees it (1 s averages from the
meters' energy counters), each feeder's grid import, and when each PCS was last written.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.campus.config import load_campus
from agent.model.config import load_site
from simulators.campus import SimulatedCampus
from tests.fakes import ROOT

EXAMPLE = ROOT / "agent" / "sites" / "campus_demo"
KEY = b"integration-test-campus-key-0123456789"


@dataclass
class Sample:
    t: float  # monotonic, s
    campus_w: float  # 1 s average import at the campus meter
    feeder_w: dict[str, float]  # each feeder's grid import now
    oldest_write_s: float  # the longest any PCS has gone without a setpoint write


@dataclass
class CampusRig:
    tmp: Path
    broker_port: int
    campus: SimulatedCampus
    campus_file: Path
    site_files: dict[str, Path]
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    coordinator: subprocess.Popen[bytes] | None = None
    samples: list[Sample] = field(default_factory=list)
    _wh: dict[str, tuple[float, float]] = field(default_factory=dict)  # site -> (model t, net Wh)

    @property
    def limit_w(self) -> float:
        return load_campus(self.campus_file).limits.import_limit_w

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "agent.cli", *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def log(self, name: str) -> str:
        p = self.tmp / f"{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def start_agents(self) -> None:
        for sid, f in self.site_files.items():
            self.agents[sid] = self._spawn(
                sid, ["run", "--site", str(f), "--state-dir", str(self.tmp / f"state-{sid}")]
            )

    def start_coordinator(self) -> None:
        self.coordinator = self._spawn(
            "coordinator",
            ["coordinate", "--campus", str(self.campus_file), "--state-dir", str(self.tmp / "state-campus")],
        )

    def kill_coordinator(self) -> None:
        assert self.coordinator is not None
        self.coordinator.send_signal(signal.SIGKILL)
        self.coordinator.wait(10)

    def sample(self) -> Sample:
        """One sample of the plant; the campus figure is the average since the previous sample, from
        each feeder meter's energy counters over its own simulated time (whole physics ticks)."""
        sites = self.campus.sites
        campus_w = 0.0
        for sid, s in sites.items():
            t, wh = s.model.t, s.model.grid.import_wh - s.model.grid.export_wh
            t0, wh0 = self._wh.get(sid, (t, wh))
            campus_w += (wh - wh0) * 3600.0 / (t - t0) if t - t0 > 0.2 else s.model.grid.power_w
            self._wh[sid] = (t, wh)
        now = time.monotonic()
        oldest = max(s.model.t - p.last_write_t for s in sites.values() for p in s.model.plant.pcs.values())
        feeder = {sid: s.model.grid.power_w for sid, s in sites.items()}
        out = Sample(now, campus_w, feeder, oldest)
        self.samples.append(out)
        return out

    async def watch(self, seconds: float) -> list[Sample]:
        """Sample the plant about once a second for `seconds`."""
        out: list[Sample] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            await asyncio.sleep(1.0)
            out.append(self.sample())
        return out

    async def stop(self) -> None:
        procs = [*self.agents.values(), *([self.coordinator] if self.coordinator else [])]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        await self.campus.stop()


def _moved(text: str, ports: dict[int, int]) -> str:
    return re.sub(
        r"^port = (\d+)$", lambda m: f"port = {ports.get(int(m.group(1)), int(m.group(1)))}", text, flags=re.M
    )


@contextlib.asynccontextmanager
async def campus_rig(tmp: Path, broker_port: int, example: Path = EXAMPLE):  # type: ignore[no-untyped-def]
    """The campus of `example` (a directory laid out as agent/sites/campus_demo) on loopback."""
    key = tmp / "campus.key"
    key.write_bytes(KEY)
    sim_files = {}
    for f in sorted(example.glob("feeder_*.toml")):
        text = f.read_text().replace("soc_pct = 60", "soc_pct = 60\nstart_hour = 12\nnoise = false")
        text = text.replace('key_file = "campus.key"', f'key_file = "{key}"')
        sim_files[f.stem] = tmp / f"sim_{f.name}"
        sim_files[f.stem].write_text(text)
    campus_text = (example / "CAMPUS.toml").read_text().replace('key_file = "campus.key"', f'key_file = "{key}"')
    meter = load_campus(example / "CAMPUS.toml").meter
    meter_port = meter.port
    sites = [load_site(p) for p in sim_files.values()]
    campus = SimulatedCampus(sites, meter, any_port=True)
    await campus.start()
    rig: CampusRig | None = None
    try:
        site_files = {}
        for site in sites:
            ports = {d.port: campus.sites[site.id].ports[d.id] for d in site.devices}
            text = _moved(sim_files[f"{site.id}"].read_text(), ports)
            text = re.sub(r"^port = 1883$", f"port = {broker_port}", text, flags=re.M)
            text = re.sub(r"^\[api\]\nport = \d+", "[api]\nport = 0", text, flags=re.M)  # no API
            text += "\n[telemetry]\nenabled = false\n"
            text += f'\n[mqtt]\nport = {broker_port}\nclient_id = "agent-{site.id}"\n'
            site_files[site.id] = tmp / f"{site.id}.toml"
            site_files[site.id].write_text(text)
        ctext = campus_text.replace("port = 1883", f"port = {broker_port}")
        ctext = ctext.replace(f"port = {meter_port}", f"port = {campus.ports['campus']}")
        for sid, f in site_files.items():
            ctext = ctext.replace(f'site = "{sid}.toml"', f'site = "{f}"')
        campus_file = tmp / "CAMPUS.toml"
        campus_file.write_text(ctext)
        load_campus(campus_file)  # the files the processes get are valid
        rig = CampusRig(tmp, broker_port, campus, campus_file, site_files)
        yield rig
    finally:
        if rig is not None:
            await rig.stop()
        else:
            await campus.stop()
