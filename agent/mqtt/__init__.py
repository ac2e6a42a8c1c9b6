"""MQTT: site state out, signed operator commands and GPU rack load in. Topic tree and payloads:
agent/mqtt/topics.py and TELEMETRY.md.

Wiring (from the runtime, inside the running event loop):

    link = start_mqtt(site, hub)          # None when [mqtt] is absent or enabled = false
    loop = AgentLoop(..., load_source=link.rack if link else None)   # when rack_load_topic is set
    ...
    await stop_mqtt(link)                 # publishes the retained "offline" status
"""

from __future__ import annotations

import asyncio
import contextlib

from agent.live.hub import Hub
from agent.model.config import SiteConfig
from agent.mqtt.auth import AuthError, Verifier, canonical, sign
from agent.mqtt.config import MqttConfig, parse_mqtt
from agent.mqtt.link import MqttLink
from agent.mqtt.rackload import RackLoad
from agent.mqtt.topics import Topics

_tasks: dict[int, asyncio.Task[None]] = {}


def start_mqtt(site: SiteConfig, hub: Hub) -> MqttLink | None:
    """Start the link (a task on the running loop) if the site file has an enabled [mqtt] table.
    Registers it as a Hub sink and as the "mqtt" read-out. Raises ConfigError naming the key."""
    if "mqtt" not in site.sections:
        return None
    cfg = parse_mqtt(site)
    if not cfg.enabled:
        return None
    link = MqttLink(cfg, hub)
    _tasks[id(link)] = asyncio.get_running_loop().create_task(link.run(), name="mqtt-link")
    hub.sinks.append(link)
    hub.providers["mqtt"] = link.status
    return link


async def stop_mqtt(link: MqttLink, timeout_s: float = 5.0) -> None:
    link.stop()
    task = _tasks.pop(id(link), None)
    if task is not None:
        try:
            await asyncio.wait_for(task, timeout_s)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = [
    "AuthError",
    "MqttConfig",
    "MqttLink",
    "RackLoad",
    "Topics",
    "Verifier",
    "canonical",
    "parse_mqtt",
    "sign",
    "start_mqtt",
    "stop_mqtt",
]
