"""`ems-agent coordinate --campus CAMPUS.toml`: the campus coordinator process."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from agent.campus.config import CampusConfig, load_campus


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser(
        "coordinate",
        help="coordinate the agents of a campus: share its import cap, ramp and demand target among them",
    )
    p.add_argument("--campus", required=True, type=Path, help="campus file (TOML)")
    p.set_defaults(func=cmd_coordinate)


def cmd_coordinate(args: argparse.Namespace) -> int:
    cfg = load_campus(args.campus)  # ConfigError (exit 2) names the file and key
    return asyncio.run(_coordinate(cfg))


async def _coordinate(cfg: CampusConfig) -> int:
    from agent.campus.coordinator import Coordinator

    coord = Coordinator(cfg)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, coord.stop)
    await coord.run()
    return 0
