"""The fleet file (`ems-agent fleet --fleet FLEET.toml`): broker, topic prefix, HTTP bind, sites.

    [fleet]
    stale_after_s = 10            # no state from a site for this long: "stale"

    [mqtt]                        # one broker (a mosquitto, or an EMQX cluster's address)
    host = "127.0.0.1"
    port = 1883
    topic_prefix = "ems"          # as the agents' [mqtt] topic_prefix
    client_id = "ems-fleet"

    [http]
    host = "127.0.0.1"
    port = 8090
    tokens_file = "tokens.toml"   # as the agent's [api]: viewer tokens read (agent/api/auth.py)
    open_read = false

    [[site]]                      # optional: sites listed first, in this order, shown even if silent
    id = "hall-a"
    name = "Shanghai hall A"
    url = "http://10.0.0.5:8080/" # the site's own dashboard (the drill-down)

Sites not listed appear too, as soon as they publish. Errors name the file and key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.fleet.state import SiteInfo
from agent.mqtt.config import reconnect_range, topic_prefix
from common.tomlcheck import Table, load_toml


@dataclass(frozen=True, slots=True)
class FleetConfig:
    path: Path
    stale_after_s: float
    host: str  # broker
    port: int
    topic_prefix: str
    client_id: str
    keepalive_s: int
    reconnect_min_s: float
    reconnect_max_s: float
    http_host: str
    http_port: int  # 0: a free port
    tokens_file: Path | None
    open_read: bool
    sites: tuple[SiteInfo, ...]


def load_fleet(path: Path) -> FleetConfig:
    """Read and validate a fleet file. Raises ConfigError naming the file, table and key."""
    root = Table(load_toml(path), str(path))
    fleet = root.table("fleet")
    stale = fleet.number("stale_after_s", 10.0, lo=0.5, hi=86400)
    fleet.done()
    mq = root.table("mqtt")
    prefix = topic_prefix(mq)
    rmin, rmax = reconnect_range(mq)
    host, port = mq.text("host", "127.0.0.1"), mq.integer("port", 1883, lo=1, hi=65535)
    client_id, keepalive = mq.text("client_id", "ems-fleet"), mq.integer("keepalive_s", 10, lo=1, hi=3600)
    mq.done()
    http = root.table("http")
    tokens = http.text("tokens_file", None)
    tokens_path = None
    if tokens is not None:
        tokens_path = (path.parent / tokens).resolve()  # relative to the fleet file, like the agent's
        if not tokens_path.is_file():
            http.fail("tokens_file", f"names a file that does not exist: {tokens_path}")
    http_host, http_port = http.text("host", "127.0.0.1"), http.integer("port", 8090, lo=0, hi=65535)
    open_read = http.flag("open_read", False)
    http.done()
    sites: list[SiteInfo] = []
    for t in root.tables("site"):
        sid = t.text("id")
        if not sid or any(c in sid for c in "/+#"):
            t.fail("id", f"must be a site id as in the agent's topics (no '/', '+', '#'), got {sid!r}")
        if sid in {s.id for s in sites}:
            t.fail("id", f"{sid!r} is listed twice")
        url = t.text("url", None)
        if url is not None and not url.startswith(("http://", "https://", "/")):
            t.fail("url", f"must be an http(s) URL or a path, got {url!r}")
        sites.append(SiteInfo(sid, t.text("name", sid), url))
        t.done()
    root.done()
    return FleetConfig(
        path=path,
        stale_after_s=stale,
        host=host,
        port=port,
        topic_prefix=prefix,
        client_id=client_id,
        keepalive_s=keepalive,
        reconnect_min_s=rmin,
        reconnect_max_s=rmax,
        http_host=http_host,
        http_port=http_port,
        tokens_file=tokens_path,
        open_read=open_read,
        sites=tuple(sites),
    )
