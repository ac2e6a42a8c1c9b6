"""The API in its own process, against the real agent on the simulators: what an operator and a
site owner rely on when the API process misbehaves.

- a command sent to the API process's HTTP port takes effect in the control loop, and the audit
  log (written by the control process) records who did it;
- an API process killed by a signal is logged, restarted, and serves again; the loop never stops;
- an API process that stops reading (SIGSTOP) never stalls the loop, and catches up when resumed;
- killing the agent (kill -9) takes the API process with it: no orphan keeps the port.

Bounds are generous (a shared 2-vCPU machine): behaviour is asserted, not timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent.api.bridge import BACKLOG_CYCLES

from .agent_harness import AgentOnSim, agent_on_simulators
from .conftest import free_port
from .loop_rig import site_text

ROOT = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out |= {int(x) for x in (task / "children").read_text().split()}
    return out


async def _until(pred: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting for {what}"
        await asyncio.sleep(0.05)


def _api_pid(h: AgentOnSim) -> int:
    assert h.rt.api is not None and h.rt.api.pid is not None
    return h.rt.api.pid


async def test_a_command_through_the_api_process_reaches_the_loop_and_is_audited(tmp_path: Path) -> None:
    async with agent_on_simulators(tmp_path / "state", demo=True) as h:
        pid = _api_pid(h)
        assert pid != os.getpid() and pid in _children(os.getpid())  # served by another process
        op = {"Authorization": f"Bearer {h.rt.demo_token}"}
        async with httpx.AsyncClient(base_url=h.url, timeout=10) as c:
            r = await c.post("/api/control/clusters/c04/maintenance", json={"on": True})
            assert r.status_code == 401  # demo reads are open; control never is
            r = await c.post("/api/control/mode", json={"mode": "turbo"}, headers=op)
            assert (r.status_code, r.json()["detail"]) == (
                400,
                "mode: must be one of auto, idle, conservative, got 'turbo'",
            )
            r = await c.post("/api/control/clusters/c04/derate", json={"max_power_pct": 5}, headers=op)
            assert r.status_code == 422  # malformed: refused in the API process, audited by the agent
            r = await c.post("/api/control/clusters/c99/maintenance", json={"on": True}, headers=op)
            assert (r.status_code, r.json()["detail"]) == (404, "cluster_id: unknown cluster 'c99'")
            r = await c.post("/api/control/clusters/c04/maintenance", json={"on": True}, headers=op)
            assert r.status_code == 200 and r.json()["operator"]["maintenance"] == ["c04"]
            assert h.rt.hub.operator.maintenance == frozenset({"c04"})  # the control process's state
            for _ in range(40):  # its PCS ramps out first (at the live ramp step a cycle), then c04 has no share
                rec = await h.cycles(1)
                if rec.plan.cluster_setpoints_w.get("c04", 0.0) == 0.0:
                    break
            assert rec.plan.cluster_setpoints_w.get("c04", 0.0) == 0.0
            # Read back through the API process: its mirror shows the loop's next cycles.
            await h.cycles(2)
            c4 = (await c.get("/api/clusters/c04")).json()
            assert c4["maintenance"] is True and c4["setpoint_w"] == 0.0
            audit = (await c.get("/api/audit")).json()
        assert [(a["actor"], a["via"], a["accepted"]) for a in audit] == [
            ("demo-operator", "api", True),
            ("demo-operator", "api", False),
            ("demo-operator", "api", False),
            ("demo-operator", "api", False),
        ]
    lines = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert lines[-1]["action"] == {"command": "SetMaintenance", "cluster_id": "c04", "on": True}
    assert lines[-1]["actor"] == "demo-operator" and lines[-1]["accepted"] is True
    assert h.rt.demo_token not in (tmp_path / "state" / "audit.jsonl").read_text()


async def test_a_killed_api_process_is_restarted_and_the_loop_keeps_cycling(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ems.api")
    async with agent_on_simulators(tmp_path, demo=True) as h:
        assert h.rt.api is not None
        first = _api_pid(h)
        seq = h.rt.loop.seq
        os.kill(first, signal.SIGKILL)
        await h.until(lambda: h.rt.api is not None and h.rt.api.pid not in (None, first), 30, "a new API process")
        await h.rt.api.started()
        assert h.rt.api.restarts >= 1 and not _alive(first)
        async with httpx.AsyncClient(base_url=h.url, timeout=10) as c:
            # until the loop's next cycle reaches the new process it says it is starting (503), honestly
            r = await c.get("/healthz")
            deadline = time.monotonic() + 20.0
            while r.status_code == 503 and r.json()["status"] == "starting" and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                r = await c.get("/healthz")
            assert r.status_code == 200 and r.json()["seq"] > seq
            await h.cycles(4)
            # The new process's mirror follows the loop; commands work again.
            r = await c.post(
                "/api/control/mode",
                json={"mode": "conservative"},
                headers={"Authorization": f"Bearer {h.rt.demo_token}"},
            )
            assert r.status_code == 200 and h.rt.hub.operator.mode == "conservative"
        assert h.rt.loop.seq > seq + 4
    restarts = [r for r in caplog.records if r.getMessage() == "api process exited; restarting it"]
    assert len(restarts) == 1 and restarts[0].levelno == logging.ERROR
    assert restarts[0].fields["returncode"] == -signal.SIGKILL  # type: ignore[attr-defined]


async def test_a_stuck_api_process_never_stalls_the_loop(tmp_path: Path) -> None:
    async with agent_on_simulators(tmp_path, demo=True) as h:
        assert h.rt.api is not None
        pid = _api_pid(h)
        bridge = h.rt.api.bridge
        async with httpx.AsyncClient(base_url=h.url, timeout=20) as c:
            stream = c.stream("GET", "/api/stream")
            async with stream as resp:  # a live SSE client while the process is stopped
                assert resp.status_code == 200
                os.kill(pid, signal.SIGSTOP)
                try:
                    seq0, over0, t0 = h.rt.loop.seq, h.rt.hub.stats.overruns, time.monotonic()
                    # Until the channel is full (~12 KB a cycle; the socket buffer takes some
                    # hundreds of KB), then on: cycles the stopped process cannot take wait, bounded.
                    await h.until(lambda: bridge.queued_cycles >= 3, 90, "the channel to fill up")
                    await asyncio.sleep(2.0)
                    cycles = h.rt.loop.seq - seq0
                    expected = (time.monotonic() - t0) / h.site.cycle_s
                    assert cycles >= expected / 2, (cycles, expected)
                    assert h.rt.hub.stats.overruns - over0 <= expected / 4
                    assert bridge.pending and 3 <= bridge.queued_cycles <= BACKLOG_CYCLES
                finally:
                    os.kill(pid, signal.SIGCONT)
            # Resumed: it catches up with the loop and serves the current cycle.
            seq = h.rt.loop.seq

            async def caught_up() -> bool:
                r = await c.get("/api/site")
                return r.status_code == 200 and r.json()["seq"] >= seq

            deadline = time.monotonic() + 20
            while not await caught_up():
                assert time.monotonic() < deadline, "the API process never caught up"
                await asyncio.sleep(0.1)
        assert h.rt.api.pid == pid and h.rt.api.restarts == 0  # stopped is not dead: not restarted


def test_the_api_process_exits_when_the_agent_is_killed(tmp_path: Path) -> None:
    api_port = free_port()
    site = tmp_path / "site.toml"
    # No simulator: the loop cycles on comm errors, which is all this needs.
    site.write_text(
        site_text(cycle_s=0.5, extra=f"\n[api]\nport = {api_port}\nopen_read = true\n")
        + "\n[telemetry]\nenabled = false\n"
    )
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--site", str(site), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: set[int] = set()
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2).status_code in (200, 503):
                    break
            assert agent.poll() is None, "the agent exited"
            assert time.monotonic() < deadline, "the agent's API never came up"
            time.sleep(0.2)
        children = _children(agent.pid)
        assert len(children) == 1  # the API process
        (child,) = children
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        deadline = time.monotonic() + 15
        while _alive(child):
            assert time.monotonic() < deadline, "the API process outlived the agent"
            time.sleep(0.1)
        with pytest.raises(httpx.HTTPError):  # nobody serves the port any more
            httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=2)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(5)
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
