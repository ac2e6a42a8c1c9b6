"""The site file's `[telemetry]` table.

With `url` set, points go to InfluxDB 2 (org, bucket, token or token_file required) through a
durable spool; without it, to the embedded local store (SQLite) the dashboard reads history from.
Relative paths (token_file) resolve against the site file's folder; spool and store paths
against the agent's state directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.model.config import SiteConfig
from common.tomlcheck import ConfigError, Table


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    url: str
    org: str
    bucket: str
    token: str  # never logged
    timeout_s: float


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    enabled: bool
    influx: InfluxConfig | None  # None: the embedded local store
    batch_points: int  # points per write request
    flush_interval_s: float  # longest a point waits in memory before a write is attempted
    queue_records: int  # cycles buffered in memory between the loop and the writer thread
    spool_path: Path
    spool_max_bytes: int
    retry_min_s: float  # first back-off after a failed write; doubles up to retry_max_s
    retry_max_s: float
    local_path: Path
    local_retention_s: float
    local_interval_s: float  # the local store keeps one cycle per interval (downsampling on write)
    ledger_every_s: float


def parse_telemetry(site: SiteConfig, state_dir: Path) -> TelemetryConfig:
    t = Table(site.sections.get("telemetry", {}), f"{site.path} [telemetry]")
    enabled = t.flag("enabled", True)
    url = t.text("url", None)
    influx = None
    org = t.text("org", None)
    bucket = t.text("bucket", None)
    token = t.text("token", None)
    token_file = t.text("token_file", None)
    timeout_s = t.number("timeout_s", 5.0, lo=0.1, hi=120)
    if url is not None:
        if not url.startswith(("http://", "https://")):
            t.fail("url", f"must start with http:// or https://, got {url!r}")
        if org is None:
            t.fail("org", "is required when 'url' is set")
        if bucket is None:
            t.fail("bucket", "is required when 'url' is set")
        if token is not None and token_file is not None:
            t.fail("token_file", "and 'token' are both set; use one")
        if token_file is not None:
            p = (site.path.parent / token_file).resolve()
            try:
                token = p.read_text(encoding="utf-8").strip()
            except OSError as e:
                t.fail("token_file", f"cannot be read ({p}: {e.strerror})")
            if not token:
                t.fail("token_file", f"names an empty file: {p}")
        if token is None:
            t.fail("token", "or 'token_file' is required when 'url' is set")
        influx = InfluxConfig(url.rstrip("/"), org, bucket, token, timeout_s)
    retry_min = t.number("retry_min_s", 0.5, lo=0.01, hi=60)
    retry_max = t.number("retry_max_s", 30.0, lo=0.01, hi=3600)
    cfg = TelemetryConfig(
        enabled=enabled,
        influx=influx,
        batch_points=t.integer("batch_points", 5000, lo=1, hi=1_000_000),
        flush_interval_s=t.number("flush_interval_s", 1.0, lo=0.01, hi=60),
        queue_records=t.integer("queue_records", 600, lo=1, hi=1_000_000),
        spool_path=state_dir / t.text("spool_path", "telemetry-spool.db"),
        spool_max_bytes=int(t.number("spool_max_mb", 256.0, lo=0.001, hi=1_000_000) * 1_000_000),
        retry_min_s=retry_min,
        retry_max_s=retry_max,
        local_path=state_dir / t.text("local_path", "history.db"),
        local_retention_s=t.number("local_retention_h", 48.0, lo=0.01, hi=24 * 3650) * 3600.0,
        local_interval_s=t.number("local_interval_s", 5.0, lo=0.0, hi=3600),
        ledger_every_s=t.number("ledger_every_s", 60.0, lo=1, hi=86400),
    )
    t.done()
    if retry_max < retry_min:
        raise ConfigError(f"{t.where}: key 'retry_max_s' must be >= retry_min_s ({retry_min:g}), got {retry_max:g}")
    return cfg
