"""The site file's `[api]` table: where the API listens, who may use it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.model.config import SiteConfig
from common.tomlcheck import Table


@dataclass(frozen=True, slots=True)
class ApiConfig:
    host: str = "127.0.0.1"  # loopback unless the site file says otherwise
    port: int = 8080  # 0 = no API
    tokens_file: Path | None = None  # TOML `[[token]]` list (see agent/api/auth.py)
    open_read: bool = False  # True: reads (and the dashboard's read-only view) need no token


def api_config(site: SiteConfig) -> ApiConfig:
    """Validate `[api]` (absent = defaults). Raises ConfigError naming the file and key."""
    t = Table(site.sections.get("api", {}), f"{site.path} [api]")
    host = t.text("host", "127.0.0.1")
    port = t.integer("port", 8080, lo=0, hi=65535)
    tokens = t.text("tokens_file", None)
    open_read = t.flag("open_read", False)
    t.done()
    tokens_path = None
    if tokens is not None:
        # Relative to the site file, like the tariff: a site directory is self-contained.
        tokens_path = (site.path.parent / tokens).resolve()
        if not tokens_path.is_file():
            t.fail("tokens_file", f"names a file that does not exist: {tokens_path}")
    return ApiConfig(host=host, port=port, tokens_file=tokens_path, open_read=open_read)
