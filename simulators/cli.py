"""`ems-agent simulate` (run a simulated site) and `ems-agent sim-fault` (inject faults into it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.model.config import load_site
from common.tomlcheck import ConfigError
from simulators.faults import EXCEPTION_CODES

# sim-fault KIND -> (control command, what the target is)
FAULT_KINDS: dict[str, tuple[str, str]] = {
    "cluster-fault": ("cluster_fault", "cluster id"),
    "cluster-remove": ("cluster_remove", "cluster id"),
    "pcs-trip": ("pcs_trip", "pcs id"),
    "silent": ("silent", "device id"),
    "exception": ("exception", "device id"),
    "corrupt": ("corrupt", "device id"),
    "grid-outage": ("grid", ""),
    "load-step": ("load_offset", ""),
    "clear": ("clear", ""),
    "status": ("status", ""),
}


def add_subcommands(sub: Any) -> None:
    p = sub.add_parser("simulate", help="serve a simulated site (every device in the site file) on loopback")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--site", type=Path, help="site file (TOML)")
    which.add_argument(
        "--campus", type=Path, help="campus file (TOML): every feeder's site and the campus meter, in one process"
    )
    p.add_argument("--speed", type=float, default=None, help="simulated seconds per real second")
    p.add_argument(
        "--epoch", type=float, default=None,
        help="Unix time at which the simulated clock equals the real one (give the agent the same) [now]",
    )  # fmt: skip
    p.add_argument("--control-port", type=int, default=None, help="fault-injection socket port (0 = any)")
    p.set_defaults(func=cmd_simulate)

    f = sub.add_parser(
        "sim-fault",
        help="inject or clear a fault in a running `ems-agent simulate`",
        description=(
            "Kinds: cluster-fault ID, cluster-remove ID, pcs-trip ID, silent ID, exception ID [CODE], "
            "corrupt ID KEY VALUE (number or nan), grid-outage, load-step WATTS, clear, status. "
            "--clear undoes the named fault."
        ),
    )
    f.add_argument("kind", choices=sorted(FAULT_KINDS))
    f.add_argument("args", nargs="*", help="target id, then value(s)")
    f.add_argument("--clear", action="store_true", help="undo this fault")
    f.add_argument("--port", type=int, default=None, help="control port printed by `simulate`")
    f.add_argument("--site", type=Path, default=None, help="site file naming [simulation] control_port")
    f.set_defaults(func=cmd_sim_fault)


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.site import SimulatedSite

    if args.campus is not None:
        return _simulate_campus(args.campus)

    site = load_site(args.site)
    epoch = time.time() if args.epoch is None else args.epoch
    try:
        sim = SimulatedSite(site, speed=args.speed, control_port=args.control_port, epoch=epoch)
    except ConfigError:
        raise
    except ValueError as e:  # model construction (e.g. a load trace that cannot be read)
        raise ConfigError(f"{args.site}: {e}") from None
    return _serve(sim, lambda: _announce_site(sim, epoch))


def _serve(sim: Any, announce: Callable[[], None]) -> int:
    """Start `sim` (a SimulatedSite or SimulatedCampus), `announce` where it listens, serve until
    SIGINT or SIGTERM."""

    async def serve() -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await sim.start()
        announce()
        try:
            await stop.wait()
        finally:
            await sim.stop()
        print("simulator stopped", flush=True)
        return 0

    try:
        return asyncio.run(serve())
    except OSError as e:
        print(f"ems-agent simulate: {e}", file=sys.stderr)
        return 1


def _announce_site(sim: Any, epoch: float) -> None:
    print(f"simulating site {sim.site.id!r} at speed x{sim.speed:g} (Ctrl-C to stop)")
    if sim.speed != 1.0:
        print(f"  agent on the same clock: ems-agent run --site ... --speed {sim.speed:g} --epoch {epoch:.3f}")
    for dev in sim.site.devices:
        print(f"  {dev.kind:8s} {dev.id:10s} 127.0.0.1:{sim.ports[dev.id]} unit {dev.unit} ({dev.profile})")
    print(
        f"  control  127.0.0.1:{sim.control_port} (ems-agent sim-fault --port {sim.control_port} ...)",
        flush=True,
    )


def _simulate_campus(path: Path) -> int:
    from agent.campus.config import load_campus
    from simulators.campus import SimulatedCampus

    cfg = load_campus(path)
    sites = [load_site(f) for f in cfg.feeder_files]
    try:
        campus = SimulatedCampus(sites, cfg.meter)
    except ValueError as e:
        raise ConfigError(f"{path}: {e}") from None
    return _serve(campus, lambda: _announce_campus(campus))


def _announce_campus(campus: Any) -> None:
    print(f"simulating a campus of {len(campus.sites)} feeders (Ctrl-C to stop)")
    print(f"  campus meter {campus.meter.id} 127.0.0.1:{campus.ports[campus.meter.id]} unit {campus.meter.unit}")
    for sid, sim in campus.sites.items():
        print(f"  feeder {sid}: {len(sim.site.devices)} devices, control 127.0.0.1:{sim.control_port}", flush=True)


def build_command(kind: str, args: list[str], clear: bool) -> dict[str, Any]:
    """The control-socket command for `sim-fault KIND ARGS [--clear]` (ValueError on bad use)."""
    name, target = FAULT_KINDS[kind]
    cmd: dict[str, Any] = {"cmd": name}
    rest = list(args)
    if target:
        if not rest:
            raise ValueError(f"{kind} needs a {target}")
        cmd["id"] = rest.pop(0)
        cmd["on"] = not clear
    if kind == "exception" and rest:
        code = rest.pop(0)
        if not code.isdigit() or int(code) not in EXCEPTION_CODES:
            raise ValueError(f"exception CODE must be one of {sorted(EXCEPTION_CODES)}, got {code!r}")
        cmd["code"] = int(code)
    elif kind == "corrupt":
        if len(rest) < (1 if clear else 2):
            raise ValueError("corrupt needs a device id, a point key and a value (number or nan)")
        cmd["key"] = rest.pop(0)
        cmd["value"] = None if clear else rest.pop(0)
    elif kind == "grid-outage":
        cmd["up"] = clear
    elif kind == "load-step":
        if clear:
            cmd["w"] = 0.0
        else:
            if not rest:
                raise ValueError("load-step needs WATTS")
            try:
                cmd["w"] = float(rest.pop(0))
            except ValueError:
                raise ValueError("load-step WATTS must be a number") from None
    if rest:
        raise ValueError(f"{kind}: unexpected argument(s) {' '.join(rest)}")
    return cmd


def cmd_sim_fault(args: argparse.Namespace) -> int:
    from simulators.control import send_command

    port = args.port
    if port is None and args.site is not None:
        from simulators.simconfig import parse_simulation

        port = parse_simulation(load_site(args.site)).control_port or None
    if port is None:
        print("ems-agent sim-fault: give --port (printed by `simulate`) or a --site with control_port",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        cmd = build_command(args.kind, args.args, args.clear)
    except ValueError as e:
        print(f"ems-agent sim-fault: {e}", file=sys.stderr)
        return 2
    try:
        answer = asyncio.run(send_command(port, cmd))
    except (OSError, TimeoutError) as e:
        print(f"ems-agent sim-fault: no simulator on 127.0.0.1:{port}: {e}", file=sys.stderr)
        return 1
    if not answer.get("ok"):
        print(f"ems-agent sim-fault: {answer.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(answer["status"], indent=1) if args.kind == "status" else "ok")
    return 0
