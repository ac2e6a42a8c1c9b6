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

from agent.model.tomlcheck import ConfigError

# Modules providing `add_subcommands(subparsers)`; each sets `func` on its parsers.
SUBCOMMAND_MODULES = (
    "simulators.cli",
    "agent.cli.run",
    "agent.cli.analyze",
    "agent.cli.health_replay",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ems-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue  # that subsystem is not installed in this build
            raise
        mod.add_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from agent.logs import setup_logging

    setup_logging(args.log_level)
    try:
        rc = args.func(args)
    except ConfigError as e:
        print(f"ems-agent: config error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
