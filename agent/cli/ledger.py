"""`ems-agent ledger export`: the savings ledger as CSV, with the tariff it was billed on (LEDGER.md)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

from agent.cli.run import state_dir_for
from agent.economics.ledger_export import write_csv
from agent.economics.roi import economics_config
from agent.economics.tariff import load_tariff
from agent.model.config import load_site
from common.tomlcheck import ConfigError


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("ledger", help="the savings ledger: export it for an audit")
    lsub = p.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    e = lsub.add_parser("export", help="write every interval, per price period, as CSV with the tariff used")
    e.add_argument("--site", required=True, type=Path, help="site file (TOML): its tariff and [economics]")
    e.add_argument("--state-dir", type=Path, default=None, help="the agent's state directory [as `run`]")
    e.add_argument("--db", type=Path, default=None, help="ledger database [[economics] db_path or STATE/ledger.db]")
    e.add_argument("-o", "--output", type=Path, default=None, help="CSV file to write [standard output]")
    e.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    if site.tariff_path is None:
        raise ConfigError(f"{args.site}: [site] has no tariff: the agent keeps no ledger without one")
    tariff = load_tariff(site.tariff_path)
    econ = economics_config(site)
    db_path = args.db or econ.db_path or state_dir_for(site, args.state_dir) / "ledger.db"
    if not db_path.is_file():
        print(f"ems-agent ledger export: no ledger database at {db_path}", file=sys.stderr)
        return 1
    # read-only: safe while the agent is writing it (WAL)
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        if args.output is None:
            n = write_csv(db, tariff, econ, sys.stdout)
        else:
            with args.output.open("w", encoding="utf-8", newline="") as f:
                n = write_csv(db, tariff, econ, f)
    except sqlite3.DatabaseError as e:
        print(f"ems-agent ledger export: {db_path}: {e}", file=sys.stderr)
        return 1
    finally:
        db.close()
    if args.output is not None:
        print(f"{n} rows written to {args.output}", file=sys.stderr)
    return 0
