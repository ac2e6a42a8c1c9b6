"""Run only the MQTT link of a site (no devices, no control): `python -m agent.mqtt --site FILE`.

For checking a broker and the topic tree from an edge box, and for the tests that kill the
process to see the broker publish the "offline" will.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from dataclasses import replace
from pathlib import Path

from agent.live.audit import AuditLog
from agent.live.hub import Hub
from agent.model.config import load_site
from agent.mqtt import start_mqtt, stop_mqtt


async def _main(args: argparse.Namespace) -> int:
    site = load_site(args.site)
    mqtt = dict(site.sections.get("mqtt", {}))
    if args.host:
        mqtt["host"] = args.host
    if args.port:
        mqtt["port"] = args.port
    if args.client_id:
        mqtt["client_id"] = args.client_id
    site = replace(site, sections={**site.sections, "mqtt": mqtt})
    hub = Hub(site, AuditLog(None), clock=time.monotonic)
    link = start_mqtt(site, hub)
    if link is None:
        print("mqtt: disabled in the site file")
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await stop_mqtt(link)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m agent.mqtt", description=__doc__.splitlines()[0])
    p.add_argument("--site", type=Path, required=True)
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--client-id", default=None)
    return asyncio.run(_main(p.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
