"""The audit log cannot be written (issue 15, items 1 and 5): an unwritable, immutable or full
audit.jsonl must refuse operator commands with a clear error and an alarm, never end the API,
and recover when the disk does; a write cut short (full disk, crash) never leaves a torn line.

The end-to-end test runs the whole agent (Runtime in this process, the API in its own process)
against the simulators; the file is made unwritable by putting a directory where it belongs,
which works with and without root. The root-only tests use a real immutable file (chattr +i) and
a real full filesystem (a 64 KiB tmpfs); they are skipped with the reason otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from agent.api.auth import digest
from agent.live import audit as audit_mod
from agent.live.audit import AuditLog, AuditUnavailable
from agent.live.hub import Hub
from agent.live.runtime import restore_operator
from agent.model.config import load_site
from agent.model.operator import OperatorState
from agent.mqtt import sign
from agent.mqtt.auth import Verifier
from agent.mqtt.commands import CommandHandler
from simulators.site import SimulatedSite

from .agent_harness import DEMO, ROOT, agent_on_simulators
from .conftest import free_port
from .loop_rig import site_text
from .tinyfs import ROOT_ONLY, tiny_tmpfs

WHEN = datetime(2026, 12, 5, 12, 0, 0)


def _lines(p: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in p.read_text().splitlines()]


async def test_an_unwritable_audit_log_refuses_commands_keeps_the_api_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    state = tmp_path / "state"
    audit = state / "audit.jsonl"
    async with agent_on_simulators(state, demo=True) as h:
        assert h.rt.api is not None
        api_pid = h.rt.api.pid
        op = {"Authorization": f"Bearer {h.rt.demo_token}"}
        async with httpx.AsyncClient(base_url=h.url, timeout=10) as c:
            r = await c.post("/api/control/mode", json={"mode": "idle"}, headers=op)
            assert r.status_code == 200
            audit.rename(tmp_path / "audit.saved")
            audit.mkdir()  # the path cannot be opened for writing, by root or anyone
            for _ in range(3):
                r = await c.post("/api/control/mode", json={"mode": "conservative"}, headers=op)
                assert r.status_code == 503
                assert r.json()["detail"] == (
                    f"audit log {audit} cannot be written: Is a directory; the command was not applied"
                )
            assert h.rt.hub.operator.mode == "idle"  # not applied
            # A malformed body is still refused (422), even though its refusal cannot be audited.
            r = await c.post("/api/control/mode", json={"mode": 7}, headers=op)
            assert r.status_code == 422
            await h.cycles(2)
            alarms = (await c.get("/api/alarms")).json()["active"]
            mine = [a for a in alarms if a["id"] == "audit_write_failed@audit"]
            assert len(mine) == 1 and mine[0]["severity"] == "critical"
            assert mine[0]["message"] == (
                f"audit log {audit} cannot be written: Is a directory;"
                " operator commands are refused until it can be written"
            )
            # Reads keep working, from the same API process, and the supervisor is still there.
            assert (await c.get("/healthz")).status_code == 200
            assert (await c.get("/api/site")).json()["mode"] == "idle"
            assert h.rt.api.pid == api_pid and h.rt.api.restarts == 0
            assert h.rt.api._task is not None and not h.rt.api._task.done()
            # The disk comes back: the alarm clears by itself (the runtime probes), commands work.
            audit.rmdir()
            (tmp_path / "audit.saved").rename(audit)
            await h.until(lambda: h.rt.hub.audit.failure is None, 30.0, "the probe to see the log writable")
            await h.cycles(2)
            alarms = (await c.get("/api/alarms")).json()
            assert "audit_write_failed@audit" not in [a["id"] for a in alarms["active"]]
            r = await c.post("/api/control/mode", json={"mode": "conservative"}, headers=op)
            assert r.status_code == 200 and h.rt.hub.operator.mode == "conservative"
            await h.cycles(2)
            alarms = (await c.get("/api/alarms")).json()
            assert "audit_write_failed@audit" not in [a["id"] for a in alarms["active"]]
            assert "audit_write_failed@audit" in [a["id"] for a in alarms["history"]]
    # The agent stopped cleanly (the harness re-raises a failed run): every part closed.
    stopped = [r for r in caplog.records if r.getMessage() == "agent stopped"]
    assert len(stopped) == 1 and stopped[0].fields["failed"] == ""  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.exc_info is not None]
    errors = [r.getMessage() for r in caplog.records if r.name == "ems.audit" and r.levelno >= logging.ERROR]
    assert errors == ["audit log write failed; operator commands are refused"]  # once, not per command
    assert [(e["action"], e["accepted"]) for e in _lines(audit)] == [
        ({"command": "SetMode", "mode": "idle"}, True),
        ({"command": "SetMode", "mode": "conservative"}, True),
    ]


def _hub(path: Path) -> Hub:
    return Hub(load_site(DEMO), AuditLog(path), clock=lambda: 0.0)


@ROOT_ONLY
def test_an_immutable_audit_log_raises_the_alarm_and_recovers(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    hub = _hub(p)
    hub.audit.record(WHEN, "olga", "api", {"command": "SetMode"}, True)
    if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i not supported on this filesystem")
    try:
        with pytest.raises(AuditUnavailable, match=f"audit log {p} cannot be written: Operation not permitted"):
            hub.audit.record(WHEN, "olga", "api", {"command": "SetMode"}, True)
        assert [a.id for a in hub.alarms.active()] == ["audit_write_failed@audit"]
    finally:
        subprocess.run(["chattr", "-i", str(p)], check=True)
    hub.audit.record(WHEN, "olga", "api", {"command": "SetMode"}, True)
    assert hub.alarms.active() == [] and len(_lines(p)) == 2


@ROOT_ONLY
def test_a_full_disk_refuses_the_record_and_leaves_no_torn_line(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "fs", "64k") as fs:
        p = fs / "audit.jsonl"
        hub = _hub(p)
        big = {"command": "SetMode", "note": "x" * 3000}  # about one page per line
        written = 0
        with pytest.raises(AuditUnavailable, match="No space left on device"):
            for _ in range(1000):
                hub.audit.record(WHEN, "olga", "api", big, True)
                written += 1
        assert 0 < written < 1000
        assert p.read_bytes().endswith(b"\n") and len(_lines(p)) == written  # nothing torn
        assert [a.id for a in hub.alarms.active()] == ["audit_write_failed@audit"]
        shutil.rmtree(fs / "lost+found", ignore_errors=True)
        assert hub.audit.probe() is False  # still full
        lines = p.read_text().splitlines(keepends=True)
        p.write_text("".join(lines[: written // 2]))  # space freed (the operator rotated the log)
        assert hub.audit.probe() is True and hub.alarms.active() == []
        assert not (fs / "audit.jsonl.probe").exists() and len(_lines(p)) == written // 2
        hub.audit.record(WHEN, "olga", "api", big, True)
        assert hub.alarms.active() == [] and len(_lines(p)) == written // 2 + 1


def test_an_injected_short_write_then_enospc_is_cut_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "audit.jsonl"
    hub = _hub(p)
    hub.audit.record(WHEN, "olga", "api", {"command": "SetMode", "mode": "idle"}, True)
    real_write = os.write
    calls = 0

    def half_then_full(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(audit_mod.os, "write", half_then_full)
    with pytest.raises(AuditUnavailable, match=f"audit log {p} cannot be written: No space left on device"):
        hub.audit.record(WHEN, "olga", "api", {"command": "SetMode", "mode": "conservative"}, True)
    monkeypatch.undo()
    assert calls == 2
    assert [e["action"] for e in _lines(p)] == [{"command": "SetMode", "mode": "idle"}]  # no torn half
    hub.audit.record(WHEN, "olga", "api", {"command": "SetMode", "mode": "auto"}, True)
    assert [e["action"] for e in _lines(p)] == [
        {"command": "SetMode", "mode": "idle"},
        {"command": "SetMode", "mode": "auto"},
    ]


def test_a_torn_last_line_is_cut_on_open_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    p = tmp_path / "audit.jsonl"
    AuditLog(p).record(WHEN, "olga", "api", {"command": "SetMode", "mode": "idle"}, True)
    good = p.read_bytes()
    torn = b'{"time":"2026-12-05T12:00:01","actor":"olga","via":"api","action":{"command":"SetM'
    p.write_bytes(good + torn)  # a power cut in the middle of the next write
    caplog.set_level(logging.WARNING, logger="ems.audit")
    log = AuditLog(p)
    assert p.read_bytes() == good
    warnings = [(r.getMessage(), r.fields) for r in caplog.records]  # type: ignore[attr-defined]
    msg = "audit log: torn last line from an interrupted write skipped"
    assert warnings == [(msg, {"path": str(p), "bytes": len(torn)})]
    log.record(WHEN, "olga", "api", {"command": "SetMode", "mode": "conservative"}, True)
    AuditLog(p)  # a clean file: no second warning
    assert len(caplog.records) == 1
    site = load_site(DEMO)
    hub = Hub(site, AuditLog(None), clock=lambda: 0.0)
    restored = restore_operator(OperatorState(maintenance=site.maintenance), p, hub.limits())
    assert restored.mode == "conservative"  # both complete records read; the second not glued to a torn one


async def test_the_real_agent_survives_an_immutable_audit_log_and_sigterm_closes_everything(tmp_path: Path) -> None:
    """`ems-agent run` as a site runs it (API process, local telemetry, ledger, health), the audit
    log made unwritable while it runs: commands refused with 503, reads served, then SIGTERM:
    exit 0, no traceback, every part closed. (Before: the API died for good, and SIGTERM ended in
    a PermissionError traceback with telemetry, health and ledger left open.)"""
    sim_file = tmp_path / "sim.toml"
    sim_file.write_text(site_text(cycle_s=0.5))
    sim = SimulatedSite(load_site(sim_file), any_port=True, control_port=0)
    await sim.start(ticking=True)
    token = "audit-test-operator-token"
    (tmp_path / "tokens.toml").write_text(f'[[token]]\nname = "t"\nrole = "operator"\nsha256 = "{digest(token)}"\n')
    port = free_port()
    ports = {d.port: sim.ports[d.id] for d in sim.site.devices}
    site = tmp_path / "site.toml"
    site.write_text(site_text(ports, cycle_s=0.5, extra=f'\n[api]\nport = {port}\ntokens_file = "tokens.toml"\n'))
    state = tmp_path / "state"
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "run", "--site", str(site), "--state-dir", str(state)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    op = {"Authorization": f"Bearer {token}"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get("/healthz", headers=op)).status_code == 200:
                        break
                assert agent.poll() is None and time.monotonic() < deadline, "the agent never served"
                await asyncio.sleep(0.2)
            assert (await c.post("/api/control/mode", json={"mode": "idle"}, headers=op)).status_code == 200
            while (await c.get("/api/site", headers=op)).json()["mode"] != "idle":  # the next cycle shows it
                assert time.monotonic() < deadline, "the mode never reached the cycle"
                await asyncio.sleep(0.2)
            audit = state / "audit.jsonl"
            audit.rename(tmp_path / "audit.saved")
            audit.mkdir()
            r = await c.post("/api/control/mode", json={"mode": "conservative"}, headers=op)
            assert r.status_code == 503 and "cannot be written" in r.json()["detail"]
            for _ in range(3):
                assert (await c.get("/healthz", headers=op)).status_code == 200
                assert (await c.get("/api/site", headers=op)).json()["mode"] == "idle"
                await asyncio.sleep(0.5)
        agent.send_signal(signal.SIGTERM)
        _, err_b = agent.communicate(timeout=60)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(10)
        await sim.stop()
    err = err_b.decode()
    assert agent.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    stopped = [line for line in err.splitlines() if "agent stopped" in line]
    assert len(stopped) == 1 and "failed= " in stopped[0] + " ", stopped


def test_a_signed_mqtt_command_is_refused_with_a_reason_when_the_audit_log_cannot_be_written(tmp_path: Path) -> None:
    p = tmp_path / "audit.jsonl"
    hub = _hub(p)
    p.mkdir()
    secret = b"0123456789abcdef-test-secret"
    now = datetime.now(hub.site.timezone)
    handler = CommandHandler(hub, Verifier(secret, 30.0), lambda: now)
    msg = {"id": "m1", "actor": "ops-anna", "ts": now.timestamp(), "nonce": "n" * 32,
           "command": {"command": "set_mode", "mode": "idle"}}  # fmt: skip
    ack = handler.handle(json.dumps(sign(secret, msg)).encode())
    assert (ack["id"], ack["accepted"]) == ("m1", False)
    assert ack["reason"] == f"audit log {p} cannot be written: Is a directory; the command was not applied"
    assert hub.operator.mode == "auto" and handler.rejected == 1
    assert [a.id for a in hub.alarms.active()] == ["audit_write_failed@audit"]
    # Refused before it reached the hub (bad signature): still answered, the refusal just not audited.
    bad = handler.handle(json.dumps({**sign(secret, {**msg, "nonce": "m" * 32}), "sig": "0" * 64}).encode())
    assert bad["accepted"] is False and bad["reason"].startswith("unauthenticated")
