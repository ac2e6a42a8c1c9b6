"""`ems-agent coordinate --campus CAMPUS.toml`: the campus coordinator process."""

from __future__ import annotations

import argparse
import asyncio
import os
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
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the campus demand state is kept across restarts (default $EMS_STATE_DIR, else var, / campus id)",
    )
    p.set_defaults(func=cmd_coordinate)


def cmd_coordinate(args: argparse.Namespace) -> int:
    cfg = load_campus(args.campus)  # ConfigError (exit 2) names the file and key
    # as an agent's state directory (agent/cli/run.py state_dir_for), named by the campus id
    state_dir = args.state_dir or Path(os.environ.get("EMS_STATE_DIR", "var")) / cfg.id
    return asyncio.run(_coordinate(cfg, state_dir))


async def _coordinate(cfg: CampusConfig, state_dir: Path) -> int:
    from agent.campus.coordinator import Coordinator
    from agent.campus.saved import FILE_NAME

    coord = Coordinator(cfg, state_path=state_dir / FILE_NAME)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, coord.stop)
    await coord.run()
    return 0
