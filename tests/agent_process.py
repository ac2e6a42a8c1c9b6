"""The real `ems-agent run` process against the ticking simulated site, for kill tests. (No tests here.)

`overridden_agent` starts the simulator, writes an operator token and a site file pointing at the
simulator's ports, starts the agent, posts an operator override through its HTTP API once it is up,
and waits until the plant shows it (`reached`). `kill_and_time` then kills the agent with SIGKILL
and returns how long the plant took to settle (`settled`). Both stop by themselves on a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from agent.api.auth import digest
from agent.model.config import load_site
from simulators.physics import Pcs
from simulators.site import SimulatedSite
from tests.conftest import free_port
from tests.fakes import ROOT
from tests.loop_rig import site_text

PlantCheck = Callable[[dict[str, Pcs]], bool]


def post(url: str, token: str, body: dict[str, float]) -> dict[str, object]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return dict(json.loads(r.read()))


@contextlib.asynccontextmanager
async def overridden_agent(
    tmp_path: Path,
    cycle_s: float,
    override_w: float,
    reached: PlantCheck,
    *,
    pcc: bool = False,
    timeout_s: float = 40.0,
) -> AsyncIterator[tuple[SimulatedSite, subprocess.Popen[bytes]]]:
    full = tmp_path / "sim.toml"
    full.write_text(site_text(cycle_s=cycle_s, pcc=pcc))
    sim = SimulatedSite(load_site(full), any_port=True, control_port=0)
    await sim.start(ticking=True)
    token = "kill-test-operator-token"
    (tmp_path / "tokens.toml").write_text(f'[[token]]\nname = "t"\nrole = "operator"\nsha256 = "{digest(token)}"\n')
    api_port = free_port()
    ports = {d.port: sim.ports[d.id] for d in sim.site.devices}
    site = tmp_path / "site.toml"
    api = f'\n[api]\nport = {api_port}\ntokens_file = "tokens.toml"\n'
    site.write_text(site_text(ports, cycle_s=cycle_s, pcc=pcc, extra=api) + "\n[telemetry]\nenabled = false\n")
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--site", str(site), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    pcs = sim.model.plant.pcs
    try:
        deadline = time.monotonic() + timeout_s
        body = {"setpoint_w": override_w, "duration_s": 600}
        while True:
            with contextlib.suppress(OSError):
                post(f"http://127.0.0.1:{api_port}/api/control/override", token, body)
                break
            assert time.monotonic() < deadline, "the agent's API never came up"
            await asyncio.sleep(0.2)
        while not reached(pcs):
            assert time.monotonic() < deadline, ("the override never reached the plant", {
                p.id: p.power_w for p in pcs.values()})  # fmt: skip
            await asyncio.sleep(0.05)
        yield sim, agent
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(5)
        await sim.stop()


async def kill_and_time(
    agent: subprocess.Popen[bytes], sim: SimulatedSite, settled: PlantCheck, limit_s: float
) -> float:
    """SIGKILL the agent; seconds until `settled` holds for the plant (asserting it within `limit_s`)."""
    pcs = sim.model.plant.pcs
    agent.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    agent.wait(5)
    while not settled(pcs):
        assert time.monotonic() - killed < limit_s, {p.id: (p.power_w, p.reverted) for p in pcs.values()}
        await asyncio.sleep(0.05)
    return time.monotonic() - killed
