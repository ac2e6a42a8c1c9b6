"""The fast lane: a sub-second loop for PCS on setpoints ([control] fast_lane_s, e.g. 0.1-0.25 s).

Each tick it reads only the grid meter and the load meters (one poll each, on the loop's own
device objects: one Modbus request per meter with the bundled profiles) and writes the PCS
setpoints agent.control.fast decides inside the window the last 1 s plan granted
(Plan.fast_window): every safety bound of the 1 s policy holds, and the decision is the function
the offline replay runs (bench/ramp_bench.py, mode "fast").

It writes nothing when the 1 s plan gives no window (failsafe, outage, an operator's mode or
override, PCC control, grid down), when the window is stale (the 1 s loop stopped or lags by
STALE_CYCLES cycles), when a meter reading is not good, and never to a PCS whose revert timer the
1 s loop's writer has not armed or that it put in grid-power control: then the 1 s loop's setpoint
stands, and if the agent stops the PCS revert timers take the plant to 0 W as before. A new window
(the 1 s loop has just written its own setpoints) makes it tick at once, so the 1 s write stands
only for the few ms the tick takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.control.fast import FAST0, fast_step, max_age_s, window_ok
from agent.live.assemble import GRID_UP_MIN_V, measured
from agent.live.hub import CycleRecord
from agent.live.loop import AgentLoop
from agent.logs import kv
from agent.model.config import FAST_LANE_MIN_S
from agent.model.plan import FastWindow
from drivers import keys as k
from drivers.device import ModbusDevice

log = logging.getLogger("ems.fast_lane")

LOAD_ROLES = ("load", "rack")


@dataclass
class LaneStats:
    """What the lane did since it started (the budget bench and the log read it)."""

    ticks: int = 0
    wrote: int = 0  # ticks that wrote setpoints
    held: int = 0  # ticks that wrote nothing: no or stale window, a meter not good
    missed: int = 0  # tick slots skipped because a tick ran over its period
    reads: int = 0  # Modbus read requests to the meters (one per profile block)
    pcs_writes: int = 0  # PCS setpoint writes (each a write request and its read-back)
    write_failures: int = 0
    last_error: str = ""
    tick_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    @property
    def requests(self) -> int:
        """Modbus requests the lane sent: meter reads, and a write plus a read-back per PCS write."""
        return self.reads + 2 * self.pcs_writes

    def as_dict(self) -> dict[str, Any]:
        ms = sorted(self.tick_ms)

        def pct(q: float) -> float | None:
            return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))] if ms else None

        return {
            "ticks": self.ticks,
            "wrote": self.wrote,
            "held": self.held,
            "missed": self.missed,
            "requests": self.requests,
            "reads": self.reads,
            "pcs_writes": self.pcs_writes,
            "write_failures": self.write_failures,
            "last_error": self.last_error,
            "tick_ms_p50": pct(0.5),
            "tick_ms_p99": pct(0.99),
        }


class FastLane:
    """`FastLane(loop)` hands itself the loop's plans (loop.on_cycle); `await lane.run()` until `stop()`."""

    def __init__(self, loop: AgentLoop, clock: Callable[[], float] | None = None) -> None:
        self.loop = loop
        self.clock = clock or loop.clock
        self.window: FastWindow | None = None
        self.state = FAST0
        self.stats = LaneStats()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        loop.on_cycle.append(self.take)

    def take(self, rec: CycleRecord) -> None:
        """The 1 s loop's plan: its window, and a tick at once (it has just written its setpoints)."""
        self.window = rec.plan.fast_window
        self._wake.set()

    def _meters(self) -> tuple[ModbusDevice | None, list[ModbusDevice]]:
        site, devs = self.loop.site, self.loop.devs.devices
        grid = site.meter("grid")
        loads = [devs[m.id] for m in site.meters if m.role in LOAD_ROLES and m.id in devs]
        return (devs.get(grid.id) if grid is not None else None), loads

    async def _read(self, grid_dev: ModbusDevice, load_devs: list[ModbusDevice]) -> tuple[float, float]:
        """(grid W, load W) read now; NaN where a reading is not good or the grid is down."""
        devs = [grid_dev, *load_devs]
        readings = await asyncio.gather(*(d.poll() for d in devs))
        self.stats.reads += sum(len(d.profile.blocks) for d in devs)
        now, stale = self.clock(), self.loop.site.stale_after_s
        g = measured(readings[0].get(k.POWER_W), now, stale)
        v = measured(readings[0].get(k.VOLTAGE_V), now, stale)
        grid = g.value if g.ok and not (v.ok and v.value < GRID_UP_MIN_V) else math.nan
        load = 0.0
        for r in readings[1:]:
            m = measured(r.get(k.POWER_W), now, stale)
            load = load + m.value if m.ok else math.nan
        return grid, load

    async def tick(self) -> dict[str, float] | None:
        """One tick: read the meters, decide, write. The setpoints written (None: nothing written)."""
        t0 = self.clock()
        self.stats.ticks += 1
        max_age = max_age_s(self.loop.site.cycle_s)
        grid_dev, load_devs = self._meters()
        out: dict[str, float] | None = None
        if window_ok(self.window, t0, max_age) and grid_dev is not None and load_devs and not self.loop.stopping:
            grid, load = await self._read(grid_dev, load_devs)
            out, self.state = fast_step(self.window, self.state, self.clock(), grid, load, max_age)
        else:
            self.state = FAST0  # the next window starts afresh from the measured grid
        if out is not None and not self.loop.stopping:  # the loop closes the devices as it stops
            out = await self._write(out)
        if out:
            self.stats.wrote += 1
        else:
            self.stats.held += 1
        self.stats.tick_ms.append((self.clock() - t0) * 1000.0 / self.loop.speed)
        return out or None

    async def _write(self, setpoints: dict[str, float]) -> dict[str, float]:
        """Write each PCS its setpoint, only where the 1 s loop's writer armed the revert timer and
        did not put it in grid-power control; the setpoints written."""
        writer, devs = self.loop.writer, self.loop.devs
        todo = {
            pid: w
            for pid, w in setpoints.items()
            if pid in writer.revert_ok and pid not in writer.pcc_on and pid in devs.devices
        }
        results = await asyncio.gather(
            *(devs.devices[pid].write(devs.writable(pid, {k.SETPOINT_W: w})) for pid, w in todo.items()),
            return_exceptions=True,
        )
        done: dict[str, float] = {}
        for (pid, w), r in zip(todo.items(), results, strict=True):
            self.stats.pcs_writes += 1
            if isinstance(r, BaseException):
                # the 1 s loop's next write raises write_failed (and re-arms the timer) if it persists
                self.stats.write_failures += 1
                self.stats.last_error = str(r)
            else:
                done[pid] = w
        return done

    async def run(self) -> None:
        period = self.loop.site.control.fast_lane_s
        log.info("fast lane started", extra=kv(site=self.loop.site.id, fast_lane_s=period))
        next_t = self.clock()
        while not (self._stop.is_set() or self.loop.stopping):
            try:
                await self.tick()
            except Exception:  # pragma: no cover - last line of defence; the 1 s loop's setpoint stands
                log.exception("fast lane tick failed")
            # (re-read: a reload may change it; at 0 the plans grant no window and the lane idles)
            period = self.loop.site.control.fast_lane_s or self.loop.site.cycle_s
            next_t += period
            now = self.clock()
            if now > next_t:
                missed = int((now - next_t) // period) + 1
                self.stats.missed += missed
                next_t += missed * period
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, next_t - self.clock()) / self.loop.speed)
            if self._wake.is_set():  # a new window (or stop): tick now, and count the period from here
                next_t = self.clock()
        st = self.stats.as_dict()
        log.info("fast lane stopped", extra=kv(ticks=st["ticks"], missed=st["missed"], requests=st["requests"]))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


def start_fast_lane(loop: AgentLoop) -> tuple[FastLane, asyncio.Task[None]] | None:
    """The lane for a site that sets [control] fast_lane_s, running; None when it is off."""
    period = loop.site.control.fast_lane_s
    if period <= 0.0:
        return None
    if period / loop.speed < FAST_LANE_MIN_S:  # an accelerated simulation (demo --speed)
        log.warning(
            "fast lane off: at this speed its period would be too short in real time",
            extra=kv(fast_lane_s=period, speed=loop.speed, real_ms=1000.0 * period / loop.speed),
        )
        return None
    lane = FastLane(loop)
    return lane, asyncio.get_running_loop().create_task(lane.run(), name="fast-lane")
