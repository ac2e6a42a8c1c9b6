"""The fleet process: the MQTT subscriber and the HTTP server on one event loop.

`Fleet` starts both and stops both (tests and the bench run it in-process); `ems-agent fleet`
runs one until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from argparse import Namespace
from dataclasses import replace
from pathlib import Path
from typing import Any

from agent.api.app import ApiServer
from agent.api.auth import TokenStore
from agent.fleet.app import create_fleet_app
from agent.fleet.config import FleetConfig, load_fleet
from agent.fleet.subscriber import FleetState, FleetSubscriber
from agent.logs import kv

log = logging.getLogger("ems.fleet")


class Fleet:
    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg
        self.state = FleetState(cfg)
        self.sub = FleetSubscriber(self.state)
        tokens = TokenStore.load(cfg.tokens_file) if cfg.tokens_file is not None else None
        app = create_fleet_app(self.state, self.sub, tokens, cfg.open_read)
        self.server = ApiServer(app, cfg.http_host, cfg.http_port)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.sub.run(), name="fleet-mqtt"),
            asyncio.create_task(self.server.run(), name="fleet-http"),
        ]
        await self.server.started()
        log.info("fleet view serving", extra=kv(url=self.url, broker=f"{self.cfg.host}:{self.cfg.port}"))

    async def stop(self) -> None:
        self.sub.stop()
        self.server.stop()
        if not self._tasks:  # never started: only the listening socket to release
            self.server.sock.close()
            return
        _, pending = await asyncio.wait(self._tasks, timeout=10.0)
        for t in pending:
            t.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def _serve(cfg: FleetConfig) -> int:
    fleet = Fleet(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await fleet.start()
    print(f"fleet view: {fleet.url}/", flush=True)
    await stop.wait()
    await fleet.stop()
    return 0


def cmd_fleet(args: Namespace) -> int:
    cfg = load_fleet(args.fleet)
    if args.port is not None:
        cfg = replace(cfg, http_port=args.port)
    return asyncio.run(_serve(cfg))


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("fleet", help="the fleet view: every site's state from MQTT, one page and API")
    p.add_argument("--fleet", required=True, type=Path, help="fleet file (TOML; see agent/fleet/config.py)")
    p.add_argument("--port", type=int, default=None, help="override [http] port (0 = a free port)")
    p.set_defaults(func=cmd_fleet)
