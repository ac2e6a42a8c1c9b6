"""Live campus bench: the coordinator's cycle with N agents over a real mosquitto on loopback.

Run: .venv/bin/python bench/campus_live_bench.py [--feeders 8] [--seconds 60] [--cycle 1.0] [--json]

The coordinator is the real one (agent.campus.coordinator.Coordinator: its MQTT link, report
verification, allocation, signed shares), polling a campus meter served over Modbus TCP with the
simulator's register image of `meter_sunspec_203` (its power: the sum of the feeders' imports).
The agents are light report publishers, not full agents: 8 agents x 64 clusters would be 512 BMS
and 128 PCS Modbus servers plus 8 control loops, more than this shared 2-core machine carries
beside the coordinator it is measuring. Each publishes a signed report every cycle on its own MQTT
connection (agent.campus.messages.signed_report, what the live agent's campus link sends: net load
swinging along its own phase, grid import, battery power and energy) and verifies each share it
receives as the agent does (agent.mqtt.auth.Verifier, parse_share).

Measured (wall clock, this machine under the other engineers' load):
- coordinator cycle: the meter poll + allocate + signing the N shares and its state (`cycle()`);
- allocate alone, on the coordinator's own inputs;
- a share's age at its agent: from the share's signed timestamp to its arrival and verification;
- shares received per agent against the coordinator's cycles, shares refused by the agents.
Broker, meter and clients bind 127.0.0.1; everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import numpy as np

from agent.campus.allocate import CampusLimits, FeederState, Share, allocate
from agent.campus.config import Broker, CampusConfig
from agent.campus.coordinator import Coordinator
from agent.campus.messages import decode, parse_share, report_topic, share_topic, signed_report
from agent.model.config import DeviceConfig
from agent.mqtt.auth import AuthError, Verifier
from drivers import keys as K
from simulators.faults import CommFaults
from simulators.image import image_for
from simulators.server import PortServer, ServedUnit

PREFIX = "ems"
CAMPUS = "bench"
FEEDER_W = 3e6  # each feeder's mean net load: the campus (8 x 3 MW) within the meter profile's +-30 MW W register


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """Debian's mosquitto on a free loopback port, stopped by its PID."""

    def __init__(self, work: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        conf = work / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = (work / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)

    def wait(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not open 127.0.0.1:{self.port} in {timeout_s} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class TimedCoordinator(Coordinator):
    """The coordinator with each cycle timed, and allocate() timed again on the same inputs."""

    def __init__(self, cfg: CampusConfig) -> None:
        super().__init__(cfg)
        self.cycle_s: list[float] = []
        self.allocate_s: list[float] = []

    async def cycle(self) -> dict[str, Share]:
        t0 = time.perf_counter()
        out = await super().cycle()
        self.cycle_s.append(time.perf_counter() - t0)
        feeders = self.feeders(self.clock())
        a = time.perf_counter()
        allocate(self.cfg.limits, feeders, fallback=self.cfg.fallback, stale_after_s=self.cfg.stale_after_s)
        self.allocate_s.append(time.perf_counter() - a)
        return out


class Agent:
    """A light agent: a signed report every cycle, each share verified on arrival."""

    def __init__(self, site: str, i: int, n: int, broker: Broker, cycle_s: float) -> None:
        self.site = site
        self.phase = 2.0 * math.pi * i / n
        self.broker = broker
        self.cycle_s = cycle_s
        self.verifier = Verifier(broker.secret, 3.0, not_before=time.time())
        self.ages: list[float] = []
        self.refused = 0
        self.reports = 0
        self.imports = 0.0  # what it says it imports now (the campus meter sums these)

    def state(self, t: float) -> FeederState:
        net = FEEDER_W * (1.0 + 0.2 * math.sin(2.0 * math.pi * t / 60.0 + self.phase))
        grid = min(net, FEEDER_W)
        self.imports = grid
        return FeederState(self.site, net, grid, 0.5 * FEEDER_W, 0.5 * FEEDER_W, FEEDER_W * 3600.0)

    async def run(self, stop: asyncio.Event) -> None:
        b = self.broker
        async with aiomqtt.Client(b.host, b.port, identifier=f"bench-agent-{self.site}") as client:
            await client.subscribe(share_topic(PREFIX, CAMPUS, self.site), qos=0)
            listener = asyncio.create_task(self._listen(client))
            try:
                while not stop.is_set():
                    now = time.time()
                    payload = signed_report(b.secret, self.state(now), now)
                    await client.publish(report_topic(PREFIX, CAMPUS, self.site), payload, qos=0)
                    self.reports += 1
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.cycle_s)
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            raw = message.payload
            payload = raw if isinstance(raw, bytes) else str(raw).encode()
            try:
                msg = decode(payload)
                self.verifier.verify(msg, time.time())
                parse_share(msg, self.site)
            except (AuthError, ValueError):
                self.refused += 1
                continue
            self.ages.append(time.time() - float(msg["ts"]))


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else math.nan


async def run(feeders: int, seconds: float, cycle_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="campus-live-") as tmp:
        broker_proc = Mosquitto(Path(tmp))
        meter_srv: PortServer | None = None
        try:
            broker_proc.wait()
            ids = [f"f{i + 1}" for i in range(feeders)]
            broker = Broker("127.0.0.1", broker_proc.port, PREFIX, "bench-coordinator", secrets.token_bytes(32))
            meter = DeviceConfig("campus", "meter", "meter_sunspec_203", "127.0.0.1", 0, 1, 0.5, 1, role="grid")
            image = image_for(meter)
            unit = ServedUnit(meter.id, image, CommFaults(), lambda: True, lambda _: None)
            meter_srv = PortServer(0, {meter.unit: unit})
            await meter_srv.start()
            limit = FEEDER_W * feeders
            cfg = CampusConfig(
                path=Path(tmp) / "CAMPUS.toml",
                id=CAMPUS,
                cycle_s=cycle_s,
                limits=CampusLimits(import_limit_w=limit, ramp_limit_w_per_s=0.01 * limit, demand_target_w=limit),
                stale_after_s=3.0 * cycle_s,
                broker=broker,
                meter=DeviceConfig(
                    "campus", "meter", "meter_sunspec_203", "127.0.0.1", meter_srv.port, 1, 0.5, 1, role="grid"
                ),
                feeders=tuple(ids),
                feeder_files=tuple(Path(tmp) / f"{i}.toml" for i in ids),  # not read: the agents are light
                fallback={i: Share(0.5 * limit / feeders, 0.005 * limit / feeders, 0.5 * limit / feeders) for i in ids},
            )
            coord = TimedCoordinator(cfg)
            agents = [Agent(s, i, feeders, broker, cycle_s) for i, s in enumerate(ids)]
            stop = asyncio.Event()

            async def meter_feed() -> None:  # the campus meter reads the sum of what the agents import
                while not stop.is_set():
                    image.refresh({K.POWER_W: sum(a.imports for a in agents), K.VOLTAGE_V: 230.0, K.STATE: 1})
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.1)

            tasks = [asyncio.create_task(a.run(stop)) for a in agents] + [asyncio.create_task(meter_feed())]
            await asyncio.sleep(1.0)  # the agents connected and reporting before the coordinator starts
            ctask = asyncio.create_task(coord.run())
            await asyncio.sleep(seconds)
            coord.stop()
            await ctask
            stop.set()
            await asyncio.gather(*tasks)
        finally:
            if meter_srv is not None:
                await meter_srv.stop()
            broker_proc.stop()
    warm = coord.cycle_s[2:]  # the first cycles connect the meter and meet the first reports
    ages = [x for a in agents for x in a.ages]
    return {
        "feeders": feeders,
        "seconds": seconds,
        "cycle_s": cycle_s,
        "cycles": len(coord.cycle_s),
        "cycle_ms": {"p50": pct(warm, 50) * 1e3, "p99": pct(warm, 99) * 1e3, "max": max(warm) * 1e3},
        "allocate_us": {"p50": pct(coord.allocate_s, 50) * 1e6, "p99": pct(coord.allocate_s, 99) * 1e6},
        "share_age_ms": {"p50": pct(ages, 50) * 1e3, "p99": pct(ages, 99) * 1e3, "max": max(ages) * 1e3},
        "shares_received_min": min(len(a.ages) for a in agents),
        "shares_refused": sum(a.refused for a in agents),
        "reports_refused_by_coordinator": dict(coord.refused),
        "feeders_on_fallback_at_end": sorted(coord.stale),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeders", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--cycle", type=float, default=1.0, help="coordinator and agent cycle, s [1]")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = asyncio.run(run(args.feeders, args.seconds, args.cycle))
    c, a, g = out["cycle_ms"], out["allocate_us"], out["share_age_ms"]
    print(
        f"{out['feeders']} agents, {out['cycles']} coordinator cycles of {out['cycle_s']:g} s over real mosquitto:"
        f"\n  coordinator cycle p50 {c['p50']:.2f} ms, p99 {c['p99']:.2f} ms, max {c['max']:.2f} ms"
        f" (meter poll + allocate + {out['feeders']} signed shares)"
        f"\n  allocate() p50 {a['p50']:.0f} us, p99 {a['p99']:.0f} us"
        f"\n  share age at the agent p50 {g['p50']:.1f} ms, p99 {g['p99']:.1f} ms, max {g['max']:.1f} ms;"
        f" fewest shares received by one agent {out['shares_received_min']};"
        f" refused: by the agents {out['shares_refused']}, by the coordinator {out['reports_refused_by_coordinator']};"
        f" on fallback at the end: {out['feeders_on_fallback_at_end'] or 'none'}"
    )
    if args.json:
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
