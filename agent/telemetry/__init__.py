"""Telemetry sinks: every cycle to InfluxDB 2 (with a durable spool) or to the embedded store.

Wiring (from the runtime, inside the running event loop):

    sink = start_telemetry(site, hub, state_dir, racks=rack_source.per_rack)   # or None if disabled
    ...
    sink.close()   # on shutdown: flushes or spools what is queued

Schema and code tables: agent/telemetry/schema.py and TELEMETRY.md.
"""

from __future__ import annotations

from pathlib import Path

from agent.live.hub import Hub
from agent.model.config import SiteConfig
from agent.telemetry.background import BackgroundSink
from agent.telemetry.config import TelemetryConfig, parse_telemetry
from agent.telemetry.feed import Feed, RackProvider
from agent.telemetry.influx import InfluxSink
from agent.telemetry.localstore import LocalStore, LocalStoreSink, Series


def start_telemetry(
    site: SiteConfig, hub: Hub, state_dir: Path, racks: RackProvider | None = None
) -> InfluxSink | LocalStoreSink | None:
    """Build the configured sink, start its writer thread, register it with the hub (as a sink
    and as the "telemetry" read-out). Raises ConfigError naming the [telemetry] key at fault."""
    cfg = parse_telemetry(site, state_dir)
    if not cfg.enabled:
        return None
    feed = Feed(hub, cfg.ledger_every_s, racks)
    sink: InfluxSink | LocalStoreSink = InfluxSink(cfg, feed) if cfg.influx is not None else LocalStoreSink(cfg, feed)
    sink.start()
    hub.sinks.append(sink)
    hub.providers["telemetry"] = sink.status
    return sink


__all__ = [
    "BackgroundSink",
    "Feed",
    "InfluxSink",
    "LocalStore",
    "LocalStoreSink",
    "Series",
    "TelemetryConfig",
    "parse_telemetry",
    "start_telemetry",
]
