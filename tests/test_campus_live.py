"""Campus coordination live: 3 agents (each on its simulated feeder) and the coordinator, over real
mosquitto and real Modbus TCP on loopback (tests/campus_rig.py; the shipped agent/sites/campus_demo).

One test walks the whole story, since starting five processes is the expensive part:
1. with the coordinator, the campus meter's import holds the campus limit (3 MW; the feeders'
   net loads sum to about 3.3 MW), also after a load step on the feeder with the smallest
   battery (its neighbours take over what its battery cannot), within the campus ramp limit;
2. a forged share (wrong key) and a replayed one are refused;
3. SIGKILL the coordinator: every agent is on its fallback share (import <= 0.9 MW) within
   stale_after_s and a cycle or two, raises campus_fallback, keeps writing its PCS, and the
   campus stays within its limit (the fallbacks sum to 2.7 MW); an old share replayed and a
   forged one with a huge cap while it is on its fallback change nothing;
4. restart it: every agent clears the alarm and follows its share again;
5. stop the broker: the same fallback (every PCS still written, the campus within its limit);
   start it again: every agent follows its share again.
No tight timing: every wait is for a condition, with generous deadlines. Figures are printed (-s).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from agent.campus.allocate import Share
from agent.campus.messages import share_topic, signed_share, state_topic
from tests.campus_rig import CampusRig, Sample, campus_rig
from tests.conftest import Broker

LIMIT_W = 3_000_000.0  # agent/sites/campus_demo/CAMPUS.toml
RAMP_W_PER_S = 300_000.0
FALLBACK_CAP_W = 900_000.0  # each feeder's [campus] fallback_import_cap_w
STALE_AFTER_S = 6.0  # each feeder's [campus] stale_after_s
TOL = 0.01  # 1 %: the 1 s averages are from a physics stepped in 50 ms ticks, read at 1 s
FEEDERS = ("feeder_a", "feeder_b", "feeder_c")
FELL_BACK = "campus fallback campus="  # agent/live/campus_link.py's log lines
APPLIED = "campus share applied"


class Watcher:
    """Collects the agents' alarm events and feeder_a's shares off the broker."""

    def __init__(self) -> None:
        self.alarms: list[tuple[float, str, bool]] = []  # (monotonic, site, active) of campus_fallback
        self.shares: list[bytes] = []
        self.coordinator: dict[str, Any] = {}  # its newest state message

    async def run(self, port: int) -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier="campus-test-watcher") as c:
            await c.subscribe("ems/+/alarm", qos=1)
            await c.subscribe(share_topic("ems", "campus_demo", "feeder_a"), qos=0)
            await c.subscribe(state_topic("ems", "campus_demo"), qos=1)
            async for m in c.messages:
                payload = bytes(m.payload) if isinstance(m.payload, (bytes, bytearray)) else b""
                if m.topic.value == state_topic("ems", "campus_demo"):
                    self.coordinator = json.loads(payload)
                elif m.topic.value.endswith("/alarm"):
                    a = json.loads(payload)
                    if a["code"] == "campus_fallback":
                        self.alarms.append((time.monotonic(), m.topic.value.split("/")[1], bool(a["active"])))
                else:
                    self.shares.append(payload)

    def active(self, site: str) -> bool | None:
        last = [on for _, s, on in self.alarms if s == site]
        return last[-1] if last else None


async def until(what: str, cond: Callable[[], bool], timeout_s: float, rig: CampusRig) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            logs = {n: rig.log(n)[-1500:] for n in (*FEEDERS, "coordinator")}
            raise AssertionError(f"{what}: not within {timeout_s} s; logs: {logs}")
        await asyncio.sleep(0.25)
        rig.sample()
    return time.monotonic() - t0


@contextlib.asynccontextmanager
async def watching(port: int) -> AsyncIterator[Watcher]:
    w = Watcher()
    task = asyncio.create_task(w.run(port))
    try:
        yield w
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await task


def ramps(samples: list[Sample]) -> list[float]:
    return [abs(b.campus_w - a.campus_w) / (b.t - a.t) for a, b in itertools.pairwise(samples)]


async def publish(port: int, topic: str, payload: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="campus-test-attacker") as c:
        await c.publish(topic, payload, qos=1)


def refusals(rig: CampusRig, site: str, kind: str) -> int:
    return rig.log(site).count(f"campus share refused kind={kind}")


@pytest.mark.timeout(600)
async def test_campus_holds_its_limit_falls_back_without_the_coordinator_and_resumes(
    tmp_path: Path, mosquitto: Broker
) -> None:
    port = mosquitto.port
    async with campus_rig(tmp_path, port) as rig, watching(port) as w:
        rig.start_agents()
        rig.start_coordinator()
        # 1. coordinated: the campus at or below its limit, every feeder reporting
        await until(
            "the campus held at its limit",
            lambda: len(rig.samples) >= 3 and all(s.campus_w <= LIMIT_W for s in rig.samples[-3:]),
            120.0,
            rig,
        )
        await asyncio.sleep(2.0)
        steady = await rig.watch(12.0)
        print("steady: campus max", max(s.campus_w for s in steady), "ramp max", max(ramps(steady)))
        assert all(s.campus_w <= LIMIT_W * (1 + TOL) for s in steady), [s.campus_w for s in steady]
        assert sum(s.feeder_w["feeder_a"] for s in steady) / len(steady) > FALLBACK_CAP_W * 1.05  # above fallback
        assert all(s.oldest_write_s < 3.0 for s in steady)
        state = w.coordinator  # the coordinator's own read-out: every feeder on its allocated share
        assert state["status"] == "online" and state["limits"]["import_limit_w"] == LIMIT_W
        assert not any(f["fallback"] for f in state["feeders"].values()), state
        assert state["import_w"] == pytest.approx(steady[-1].campus_w, rel=0.05)

        # a load step where the battery is smallest: its neighbours take over what it cannot carry
        rig.campus.sites["feeder_c"].load_offset(250_000.0)
        await rig.watch(6.0)
        stepped = await rig.watch(10.0)
        print("after step: campus max", max(s.campus_w for s in stepped), "ramp max", max(ramps(stepped)))
        assert all(s.campus_w <= LIMIT_W * (1 + TOL) for s in stepped), [s.campus_w for s in stepped]
        assert max(ramps(steady + stepped)) <= RAMP_W_PER_S
        rig.campus.sites["feeder_c"].load_offset(0.0)  # feeder_c's battery carries its fallback cap again

        # 2. forged (wrong key) and replayed shares are refused
        topic = share_topic("ems", "campus_demo", "feeder_a")
        assert w.shares, "no share seen for feeder_a"
        captured = w.shares[-1]  # a genuine one (the watcher sees what is published below too)
        forged = signed_share(b"not-the-campus-key-0123456789", "feeder_a", Share(1.0, 1.0, 0.0), 10**6, time.time())
        await publish(port, topic, forged)
        await publish(port, topic, captured)  # applied already: its nonce is known
        await until(
            "forged and replayed shares refused",
            lambda: refusals(rig, "feeder_a", "unauthenticated") >= 1 and refusals(rig, "feeder_a", "replayed") >= 1,
            30.0,
            rig,
        )
        assert rig.samples[-1].feeder_w["feeder_a"] > FALLBACK_CAP_W  # the forged 1 W cap was not applied

        # 3. the coordinator killed: every agent on its fallback within a bounded time
        assert not any(w.active(s) for s in FEEDERS)
        before = len(rig.samples)
        rig.kill_coordinator()
        killed = time.monotonic()
        await until("every agent on its fallback", lambda: all(w.active(s) for s in FEEDERS), 60.0, rig)
        assert w.coordinator["status"] == "offline"  # its will, retained by the broker
        fell = {s: next(t for t, site, on in w.alarms if site == s and on) - killed for s in FEEDERS}
        print("fallback after SIGKILL (s):", {s: round(v, 1) for s, v in fell.items()})
        assert all(v <= STALE_AFTER_S + 5.0 for v in fell.values()), fell
        await asyncio.sleep(4.0)  # the fallback cap reached
        # an old share replayed and a forged one with a huge cap, while on the fallback: nothing changes
        await publish(port, topic, captured)
        big = signed_share(b"not-the-campus-key-0123456789", "feeder_a", Share(5e6, 1e6, 0.0), 10**6, time.time())
        await publish(port, topic, big)
        fallback = await rig.watch(10.0)
        print(
            "on fallback: feeders max",
            {s: max(x.feeder_w[s] for x in fallback) for s in FEEDERS},
            "campus max",
            max(s.campus_w for s in fallback),
        )
        assert all(x.feeder_w[s] <= FALLBACK_CAP_W * (1 + TOL) for x in fallback for s in FEEDERS)
        outage = rig.samples[before:]
        assert all(s.campus_w <= LIMIT_W * (1 + TOL) for s in outage), [round(s.campus_w) for s in outage]
        assert all(s.oldest_write_s < 3.0 for s in outage), "a PCS went without a setpoint refresh"
        assert all(w.active(s) for s in FEEDERS)  # the replayed and forged shares did not end it

        # 4. the coordinator back: alarms cleared, shares followed again
        rig.start_coordinator()
        back = time.monotonic()
        await until("every agent back on its share", lambda: not any(w.active(s) for s in FEEDERS), 90.0, rig)
        print("resumed after restart (s):", round(time.monotonic() - back, 1))
        await asyncio.sleep(3.0)
        resumed = await rig.watch(8.0)
        assert all(s.campus_w <= LIMIT_W * (1 + TOL) for s in resumed)
        assert sum(s.feeder_w["feeder_a"] for s in resumed) / len(resumed) > FALLBACK_CAP_W * 1.05
        print("resumed: campus max", max(s.campus_w for s in resumed))

        # 5. the broker gone: the same fallback (said in each agent's log; the alarms cannot reach
        # the broker), every PCS still written; the broker back: every agent follows its share again
        def count(what: str) -> dict[str, int]:
            return {s: rig.log(s).count(what) for s in FEEDERS}

        fell_before, applied_before = count(FELL_BACK), count(APPLIED)
        before = len(rig.samples)
        mosquitto.stop()
        gone = time.monotonic()
        await until(
            "every agent on its fallback without the broker",
            lambda: all(n > fell_before[s] for s, n in count(FELL_BACK).items()),
            60.0,
            rig,
        )
        print("fallback after the broker stopped (s):", round(time.monotonic() - gone, 1))
        await asyncio.sleep(4.0)
        no_broker = await rig.watch(6.0)
        assert all(x.feeder_w[s] <= FALLBACK_CAP_W * (1 + TOL) for x in no_broker for s in FEEDERS)
        assert all(s.campus_w <= LIMIT_W * (1 + TOL) for s in rig.samples[before:])
        assert all(s.oldest_write_s < 3.0 for s in rig.samples[before:])
        mosquitto.start()
        back = time.monotonic()
        await until(
            "every agent back on its share with the broker",
            lambda: all(n > applied_before[s] for s, n in count(APPLIED).items()),
            90.0,
            rig,
        )
        print("resumed after the broker restarted (s):", round(time.monotonic() - back, 1))
