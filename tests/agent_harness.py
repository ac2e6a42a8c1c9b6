"""The whole agent (`Runtime`: loop, sinks, API) against the simulated site, in real time, in-process.

    async with agent_on_simulators(tmp_path, cycle_s=0.25, demo=True) as h:
        h.url                      # the API and dashboard, on a free loopback port
        h.sim.cluster_fault("c07") # fault injection (simulators/site.py)
        rec = await h.cycles(2)    # the record of the cycle two cycles from now
        h.rt.hub.operator          # everything else the Runtime holds

The simulator listens on free ports (`any_port`) and ticks in real time (x `speed`); the agent
polls a copy of the site whose device ports are rewired to the ports the simulator chose. On
exit the agent stops, then the simulator; nothing outlives the block. Everything binds
127.0.0.1. (No tests in this module; tests/loop_rig.py is the stepped, deterministic variant.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from agent.live.hub import CycleRecord
from agent.live.runtime import ANY_PORT, Runtime
from agent.model.clock import SiteClock
from agent.model.config import SiteConfig, load_site
from simulators.site import SimulatedSite

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "agent" / "sites" / "demo.toml"

# Reproducible, and still alive: synthetic training swings the load by MW; BMS noise on.
SIMULATION: dict[str, Any] = {"seed": 1, "start_hour": 14.0, "soc_pct": 60.0, "revert_s": 30.0}


def sim_site(
    base: Path | SiteConfig = DEMO,
    *,
    cycle_s: float | None = None,
    simulation: dict[str, Any] | None = None,
    sections: dict[str, Any] | None = None,
) -> SiteConfig:
    """`base` with a shorter cycle, a [simulation] table and extra sections ([api], [mqtt] ...)."""
    site = load_site(base) if isinstance(base, Path) else base
    changes: dict[str, Any] = {"simulation": dict(SIMULATION if simulation is None else simulation)}
    if cycle_s is not None:
        changes["cycle_s"] = cycle_s
        changes["stale_after_s"] = 3.0 * cycle_s
    if sections:
        changes["sections"] = {**site.sections, **sections}
    return replace(site, **changes)


def wired(site: SiteConfig, ports: dict[str, int]) -> SiteConfig:
    """The same site with every device moved to `ports[device id]` on 127.0.0.1."""

    def move(devs: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(replace(d, host="127.0.0.1", port=ports[d.id]) for d in devs)

    return replace(site, meters=move(site.meters), pcs=move(site.pcs), clusters=move(site.clusters))


@dataclass
class AgentOnSim:
    site: SiteConfig  # as the agent polls it (ports rewired)
    sim: SimulatedSite
    rt: Runtime
    task: asyncio.Task[None]

    @property
    def url(self) -> str:
        assert self.rt.api is not None, "started with api=False"
        return self.rt.api.url

    def _alive(self) -> None:
        if self.task.done():
            exc = None if self.task.cancelled() else self.task.exception()
            raise RuntimeError(f"the agent stopped unexpectedly: {exc!r}") from exc

    async def until(self, pred: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout_s
        while not pred():
            self._alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
            await asyncio.sleep(0.01)

    async def cycles(self, n: int = 1, timeout_s: float | None = None) -> CycleRecord:
        """Wait for `n` more cycles to be published; the record of the last one."""
        target = self.rt.loop.seq + n
        limit = timeout_s if timeout_s is not None else 5.0 + 4 * n * self.site.cycle_s
        hub = self.rt.hub
        await self.until(
            lambda: hub.latest is not None and hub.latest.snapshot.seq >= target, limit, f"cycle #{target}"
        )
        assert hub.latest is not None
        return hub.latest


@contextlib.asynccontextmanager
async def agent_on_simulators(
    state_dir: Path,
    site: SiteConfig | None = None,
    *,
    cycle_s: float = 0.25,
    speed: float = 1.0,
    api: bool = True,
    demo: bool = False,
    clock: SiteClock | None = None,
) -> AsyncIterator[AgentOnSim]:
    """Simulators + Runtime running until the block exits; waits for the first cycle (and the API).

    `site` defaults to the demo site with `sim_site(cycle_s=cycle_s)`; `demo=True` gives open
    reads and an operator token (`h.rt.demo_token`), as `ems-agent demo` does. `clock`: a site
    clock shared by the simulator and the agent (an accelerated site; its speed wins over `speed`).
    """
    site = site if site is not None else sim_site(cycle_s=cycle_s)
    state_dir.mkdir(parents=True, exist_ok=True)
    if clock is not None:  # one site clock for both (agent.model.clock): an accelerated site
        speed = clock.speed
    sim = SimulatedSite(site, speed=speed, any_port=True, control_port=0, epoch=clock.epoch if clock else None)
    await sim.start()
    task: asyncio.Task[None] | None = None
    rt: Runtime | None = None
    try:
        agent_site = wired(site, sim.ports)
        rt = Runtime(agent_site, state_dir, api_port=ANY_PORT if api else 0, demo=demo, clock=clock)
        task = asyncio.create_task(rt.run(), name="agent")
        h = AgentOnSim(agent_site, sim, rt, task)
        await h.until(lambda: rt is not None and rt.hub.latest is not None, 15.0, "the first cycle")
        if rt.api is not None:
            await rt.api.started()
        yield h
    finally:
        if rt is not None:
            rt.stop()
        try:
            if task is not None:
                await asyncio.wait_for(task, 15.0)
        finally:
            await sim.stop()
