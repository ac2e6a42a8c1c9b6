"""Connection flood against the real agent's API (issue 15, item 2): does /healthz keep answering,
and how much does the agent log?

    .venv/bin/python -m bench.api_flood [--connections 24000] [--seconds 30] [--agent-root DIR]

- the simulated demo site, in this process (Modbus TCP on free loopback ports);
- `ems-agent run` (the real process, with its API process), from --agent-root (default: this
  checkout; point it at an unpacked older commit to measure the same flood before a fix), its
  stderr to a file;
- two flooder children, each opening half of --connections TCP connections to the API port (every
  tenth sends a partial request head and nothing more) and holding them for --seconds.

Meanwhile /healthz is probed every 0.5 s on a fresh connection (2 s timeout). Reported: probes
answered during the flood, seconds until /healthz answers after the flood ends, the agent's log
during the flood (bytes, lines, "accept() out of system resource" lines, tracebacks), the API
process's file descriptors at most, and the connections the flooders got (a refused or reset
connection counts as opened: the point is what the server does with them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def flooder(port: int, n: int, seconds: float) -> None:
    """Child: open `n` connections (every tenth with a partial head), hold them, then exit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks: list[socket.socket] = []
    opened = 0
    t_end = time.monotonic() + seconds
    for i in range(n):
        if time.monotonic() > t_end:
            break
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        if i % 10 == 0:
            with contextlib.suppress(OSError):
                s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
        opened += 1
    print(json.dumps({"opened": opened}), flush=True)
    time.sleep(max(0.0, t_end - time.monotonic()))
    for s in socks:
        s.close()


def healthz(port: int) -> str:
    """ "ok", or why not: the HTTP status, or the error (a timeout, a reset...)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return "ok" if r.status == 200 else str(r.status)
    except urllib.error.HTTPError as e:
        return str(e.code)
    except OSError as e:
        why = getattr(e, "reason", e)
        return f"{type(why).__name__} {getattr(why, 'errno', '') or ''}".strip()


def api_fds(agent_pid: int) -> int:
    try:
        children = Path(f"/proc/{agent_pid}/task/{agent_pid}/children").read_text().split()
    except OSError:
        return 0
    best = 0
    for c in children:
        with contextlib.suppress(OSError):
            best = max(best, len(os.listdir(f"/proc/{c}/fd")))
    return best


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from agent.model.config import load_site
    from simulators.site import SimulatedSite
    from tests.loop_rig import site_text

    tmp = Path(tempfile.mkdtemp(prefix="api-flood-"))
    sim_file = tmp / "sim.toml"
    sim_file.write_text(site_text(cycle_s=1.0))
    sim = SimulatedSite(load_site(sim_file), any_port=True, control_port=0)
    await sim.start(ticking=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ports = {d.port: sim.ports[d.id] for d in sim.site.devices}
    site = tmp / "site.toml"
    site.write_text(site_text(ports, cycle_s=1.0, extra=f"\n[api]\nport = {port}\nopen_read = true\n"))
    log_path = tmp / "agent.log"
    with log_path.open("wb") as log_f:
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "run", "--site", str(site), "--state-dir", str(tmp / "state")],
            cwd=args.agent_root,
            stdout=subprocess.DEVNULL,
            stderr=log_f,
            env={**os.environ, "PYTHONPATH": str(args.agent_root)},
        )
    out: dict[str, Any] = {"connections": args.connections, "seconds": args.seconds, "agent_root": str(args.agent_root)}
    try:
        deadline = time.monotonic() + 60
        while await asyncio.to_thread(healthz, port) != "ok":
            assert agent.poll() is None and time.monotonic() < deadline, "the agent never served"
            await asyncio.sleep(0.2)
        log_before = log_path.stat().st_size
        lines_before = len(log_path.read_bytes().splitlines())
        half = args.connections // 2
        floods = [
            subprocess.Popen(
                [sys.executable, __file__, "--flooder", str(port), str(half), str(args.seconds)],
                stdout=subprocess.PIPE,
                cwd=ROOT,
            )
            for _ in range(2)
        ]
        ok = probes = fds = 0
        failures: dict[str, int] = {}
        while any(f.poll() is None for f in floods):
            probes += 1
            got = await asyncio.to_thread(healthz, port)
            ok += got == "ok"
            if got != "ok":
                failures[got] = failures.get(got, 0) + 1
            fds = max(fds, api_fds(agent.pid))
            await asyncio.sleep(0.5)
        ended = time.monotonic()
        while await asyncio.to_thread(healthz, port) != "ok":
            await asyncio.sleep(0.1)
            if time.monotonic() - ended > 120:
                break
        back_s = time.monotonic() - ended
        text = log_path.read_bytes()
        flood_log = text[log_before:]
        out |= {
            "opened": sum(json.loads(f.stdout.read() or b'{"opened": 0}')["opened"] for f in floods if f.stdout),
            "healthz_ok_during": ok,
            "healthz_probes_during": probes,
            "healthz_failures_during": failures,
            "healthz_back_after_s": round(back_s, 2),
            "log_bytes_during": len(flood_log),
            "log_lines_during": len(text.splitlines()) - lines_before,
            "accept_error_lines": flood_log.count(b"accept() out of system resource"),
            "tracebacks": flood_log.count(b"Traceback"),
            "api_fds_max": fds,
        }
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(60)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(10)
        out["agent_exit"] = agent.returncode
        await sim.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--flooder":
        flooder(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--connections", type=int, default=24000)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--agent-root", type=Path, default=ROOT)
    args = p.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=1))


if __name__ == "__main__":
    main()
