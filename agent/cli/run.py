"""`ems-agent run` (the live agent) and `ems-agent demo` (bundled simulators + agent + dashboard)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.live.runtime import Runtime
from agent.logs import kv
from agent.model.clock import SiteClock
from agent.model.config import SiteConfig, load_site
from common.tomlcheck import ConfigError

log = logging.getLogger("ems.cli")


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("run", help="run the agent against the devices in a site file")
    p.add_argument("--site", required=True, type=Path, help="site file (TOML)")
    p.add_argument("--state-dir", type=Path, default=None, help="where ledger, spool, audit live")
    p.add_argument("--api-port", type=int, default=None, help="override [api] port (0 = no API)")
    p.add_argument(
        "--speed", type=float, default=1.0,
        help="run on an accelerated simulator's clock: its --speed (site seconds per real second)",
    )  # fmt: skip
    p.add_argument("--epoch", type=float, default=None, help="... and its --epoch (printed by `simulate`)")
    p.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="start the simulated site and the agent with its dashboard")
    d.add_argument("--site", type=Path, default=Path(__file__).resolve().parent.parent / "sites" / "demo.toml")
    d.add_argument("--state-dir", type=Path, default=Path("var/demo"))
    d.add_argument("--api-port", type=int, default=8080)
    d.add_argument(
        "--speed", type=float, default=1.0,
        help="simulated seconds per real second: the site, the agent and the ledger on one clock (60: a day in 24 min)",
    )  # fmt: skip
    d.set_defaults(func=cmd_demo)


def state_dir_for(site: SiteConfig, arg: Path | None) -> Path:
    """The agent's state directory: `--state-dir`, else $EMS_STATE_DIR (default var) / site id."""
    return arg or Path(os.environ.get("EMS_STATE_DIR", "var")) / site.id


def _state_dir(site: SiteConfig, arg: Path | None) -> Path:
    """Where the state lives; Runtime creates and checks it (agent/live/statedir.py)."""
    return state_dir_for(site, arg)


async def _serve(rt: Runtime) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, rt.reload)
    task = asyncio.create_task(rt.run())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    rt.stop()
    await task
    stopper.cancel()


def _clock(speed: float, epoch: float | None) -> SiteClock:
    if not (speed > 0.0 and math.isfinite(speed)):
        raise ConfigError(f"--speed: must be a number > 0, got {speed!r}")
    if speed != 1.0 and epoch is None:
        raise ConfigError("--speed: give the simulator's --epoch too (both processes must share one clock)")
    return SiteClock(speed, time.time() if epoch is None else epoch)


def cmd_run(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    clock = _clock(args.speed, args.epoch)
    rt = Runtime(site, _state_dir(site, args.state_dir), api_port=args.api_port, clock=clock)
    asyncio.run(_serve(rt))
    return 0


def _wait_ports(ports: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    pending = set(ports)
    while pending and time.monotonic() < deadline:
        for port in list(pending):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pending.discard(port)
        time.sleep(0.1)
    return not pending


def cmd_demo(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    clock = _clock(args.speed, time.time())  # one clock: the simulator and the agent get the same
    sim = subprocess.Popen(
        [
            sys.executable, "-m", "agent.cli", "simulate", "--site", str(args.site),
            "--speed", repr(clock.speed), "--epoch", repr(clock.epoch),
        ],
    )  # fmt: skip
    try:
        ports = sorted({d.port for d in site.devices})
        if not _wait_ports(ports, 30.0):
            print("ems-agent demo: the simulators did not open their ports", file=sys.stderr)
            return 1
        rt = Runtime(site, _state_dir(site, args.state_dir), api_port=args.api_port, demo=True, clock=clock)
        print(
            f"\n  ems-agent demo: dashboard on http://127.0.0.1:{args.api_port}/  (Ctrl-C to stop)"
            f"\n  operator token for this run (Log in on the dashboard): {rt.demo_token or '(from the tokens file)'}\n",
            flush=True,
        )
        asyncio.run(_serve(rt))
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(10)
        except subprocess.TimeoutExpired:
            sim.kill()
    log.info("demo stopped", extra=kv(site=site.id))
    return 0
