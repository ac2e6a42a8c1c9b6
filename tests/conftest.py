"""Shared fixtures: real servers on free loopback ports, and real cycle records.

`mosquitto` and `victoria_metrics` start the Debian binaries with small configs and stop them by
PID. When a binary is missing the test is skipped, unless EMS_REQUIRE_SERVICES=1 (CI), where it
fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.live.audit import AuditLog
from agent.live.hub import Hub

from .fakes import demo_site


def _need(binary: str) -> str:
    path = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        if os.environ.get("EMS_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{binary} is not installed and EMS_REQUIRE_SERVICES=1")
        pytest.skip(f"{binary} is not installed")
    return path


_ISSUED_PORTS: set[int] = set()


def free_port() -> int:
    """A loopback port free now and not handed out before in this test session.

    The kernel may give the same ephemeral port to two bind(0) calls in a row; a test that
    asks for several ports (one per simulated device) would then start two servers on one port.
    """
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _ISSUED_PORTS:
            _ISSUED_PORTS.add(port)
            return port


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"server did not open 127.0.0.1:{port} in {timeout_s} s")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


# --- mosquitto ---------------------------------------------------------------------------------
class Broker:
    """A mosquitto broker that a test can stop and start again on the same port."""

    def __init__(self, exe: str, tmp: Path) -> None:
        self.exe = exe
        self.host = "127.0.0.1"
        self.port = free_port()
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = tmp / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as lf:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)], stdout=lf, stderr=subprocess.STDOUT
            )
        _wait_port(self.port, self.proc, 10.0, self.log)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = Broker(_need("mosquitto"), tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# --- VictoriaMetrics ---------------------------------------------------------------------------
class VictoriaMetrics:
    """A VictoriaMetrics server that a test can stop and start again (same port, same data)."""

    def __init__(self, exe: str, data: Path, log: Path) -> None:
        self.exe = exe
        self.data = data
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as lf:
            self.proc = subprocess.Popen(
                [
                    self.exe,
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    f"-storageDataPath={self.data}",
                    "-retentionPeriod=100y",
                    "-loggerLevel=WARN",
                ],
                stdout=lf,
                stderr=subprocess.STDOUT,
            )
        _wait_port(self.port, self.proc, 20.0, self.log)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def export(self, match: str) -> list[dict[str, Any]]:
        """Every stored series matching a PromQL selector: [{metric, values, timestamps}]."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10):
            pass
        q = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{q}", timeout=30) as r:
            return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]

    def export_settled(self, match: str, values: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """export(), again until the series hold `values` values in all or `timeout_s` passes: data the
        store acknowledged can take seconds to be searchable on a loaded machine even after a flush (a
        new series' index entry: a CI run beside two benchmarks found one agent's series absent,
        every write acknowledged). Returns the last answer: the caller asserts on it, so data that
        never arrives still fails."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.export(match)
            if sum(len(r["values"]) for r in rows) >= values or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


@pytest.fixture
def victoria_metrics(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(_need("victoria-metrics"), tmp_path / "vmdata", tmp_path / "vm.log")
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


@pytest.fixture
def make_hub(tmp_path: Path) -> Callable[..., Hub]:
    def make(sections: dict[str, Any] | None = None, clock: Callable[[], float] = time.monotonic) -> Hub:
        return Hub(demo_site(sections), AuditLog(tmp_path / "audit.jsonl"), clock=clock)

    return make
