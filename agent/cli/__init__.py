"""`ems-agent` command line: one entry point, a subcommand per job.

Each subsystem registers its own subcommands (`add_subcommands(subparsers)`), so this file
only lists them. A bad config file ends the process with a message naming the file and key
and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agent.live.statedir import StateDirError
from common.tomlcheck import ConfigError

# Subcommand -> the module that adds it (`add_subcommands(subparsers)`, which sets `func` on its
# parsers). Only the named command's module is imported, so `ems-agent run` never loads the
# simulators or the offline analysis (scipy, highspy, matplotlib); help and a mistyped command load
# every module, so the usage lists them all.
SUBCOMMANDS = {
    "run": "agent.cli.run",
    "demo": "agent.cli.run",
    "analyze": "agent.cli.analyze",
    "simulate": "simulators.cli",
    "sim-fault": "simulators.cli",
    "ledger": "agent.cli.ledger",
    "health-replay": "agent.cli.health_replay",
    "coordinate": "agent.campus.cli",
    "fleet": "agent.fleet.serve",
}


def _command(argv: Sequence[str] | None) -> str | None:
    """The subcommand named on the command line, if any (before the full parse)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--log-level")
    pre.add_argument("command", nargs="?")
    known, _ = pre.parse_known_args(argv)
    cmd = known.command
    return cmd if isinstance(cmd, str) else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with `command`'s subcommands (every subcommand when None or unknown)."""
    parser = argparse.ArgumentParser(prog="ems-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    names = [SUBCOMMANDS[command]] if command in SUBCOMMANDS else list(dict.fromkeys(SUBCOMMANDS.values()))
    for name in names:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # that subsystem is not installed in this build
            raise
        mod.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(_command(argv))
    args = parser.parse_args(argv)
    from agent.logs import setup_logging

    setup_logging(args.log_level)
    try:
        rc = args.func(args)
    except ConfigError as e:
        print(f"ems-agent: config error: {e}", file=sys.stderr)
        return 2
    except StateDirError as e:
        print(f"ems-agent: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
