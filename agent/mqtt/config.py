"""The site file's `[mqtt]` table (broker, topics, command secret, rack-load input)."""

from __future__ import annotations

from dataclasses import dataclass

from agent.model.config import SiteConfig
from common.tomlcheck import Table

MIN_SECRET_BYTES = 16


@dataclass(frozen=True, slots=True)
class MqttConfig:
    enabled: bool
    host: str
    port: int
    client_id: str
    topic_prefix: str  # topics are <prefix>/<site>/...
    secret: bytes | None  # HMAC key for commands; None = commands refused. Never logged.
    buffer_messages: int  # outgoing messages kept while the broker is away (oldest dropped)
    keepalive_s: int
    reconnect_min_s: float
    reconnect_max_s: float
    max_skew_s: float  # a command's timestamp may differ from the agent's clock by this much
    rack_load_topic: str | None  # e.g. "dc/rack/+/power": one '+' level is the rack id
    racks: tuple[str, ...]  # racks expected on that topic (empty: whatever arrives)
    rack_stale_s: float


def topic_prefix(t: Table) -> str:
    """`topic_prefix` of an [mqtt] table (the agent's, or the fleet's reading the same topics)."""
    prefix: str = t.text("topic_prefix", "ems")
    if any(c in prefix for c in "+#") or prefix.startswith("/") or prefix.endswith("/"):
        t.fail("topic_prefix", f"must be a plain topic path without wildcards or outer '/', got {prefix!r}")
    return prefix


def reconnect_range(t: Table) -> tuple[float, float]:
    """`reconnect_min_s`, `reconnect_max_s` of an [mqtt] table: the back-off between connection attempts."""
    rmin: float = t.number("reconnect_min_s", 0.5, lo=0.01, hi=60)
    rmax: float = t.number("reconnect_max_s", 30.0, lo=0.01, hi=3600)
    if rmax < rmin:
        t.fail("reconnect_max_s", f"must be >= reconnect_min_s ({rmin:g}), got {rmax:g}")
    return rmin, rmax


def parse_mqtt(site: SiteConfig) -> MqttConfig:
    t = Table(site.sections.get("mqtt", {}), f"{site.path} [mqtt]")
    secret: bytes | None = None
    secret_file = t.text("secret_file", None)
    if secret_file is not None:
        p = (site.path.parent / secret_file).resolve()
        try:
            secret = p.read_bytes().strip()
        except OSError as e:
            t.fail("secret_file", f"cannot be read ({p}: {e.strerror})")
        if len(secret) < MIN_SECRET_BYTES:
            t.fail("secret_file", f"must hold a secret of at least {MIN_SECRET_BYTES} bytes ({p})")
    rack_topic = t.text("rack_load_topic", None)
    if rack_topic is not None and (rack_topic.split("/").count("+") != 1 or "#" in rack_topic):
        t.fail(
            "rack_load_topic",
            f"must contain exactly one '+' level (the rack id) and no '#', got {rack_topic!r}",
        )
    prefix = topic_prefix(t)
    rmin, rmax = reconnect_range(t)
    cfg = MqttConfig(
        enabled=t.flag("enabled", True),
        host=t.text("host", "127.0.0.1"),
        port=t.integer("port", 1883, lo=1, hi=65535),
        client_id=t.text("client_id", f"ems-agent-{site.id}"),
        topic_prefix=prefix,
        secret=secret,
        buffer_messages=t.integer("buffer_messages", 10_000, lo=1, hi=10_000_000),
        keepalive_s=t.integer("keepalive_s", 10, lo=1, hi=3600),
        reconnect_min_s=rmin,
        reconnect_max_s=rmax,
        max_skew_s=t.number("max_skew_s", 30.0, lo=1, hi=3600),
        rack_load_topic=rack_topic,
        racks=t.texts("racks", ()),
        rack_stale_s=t.number("rack_stale_s", site.stale_after_s, lo=0.1, hi=3600),
    )
    t.done()
    return cfg
