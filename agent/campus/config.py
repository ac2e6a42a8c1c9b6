"""The two campus files: a site's `[campus]` table (the agent's side) and CAMPUS.toml (the coordinator's).

A site file joins a campus with:

    [campus]
    id = "campus_demo"             # the campus (MQTT topics: <topic_prefix>/campus/<id>/...)
    host = "127.0.0.1"             # the broker
    port = 1883
    topic_prefix = "ems"
    key_file = "campus.key"        # HMAC key shared with the coordinator (>= 16 bytes; relative to this file)
    stale_after_s = 6              # no valid share for this long: the fallback share, alarm campus_fallback
    fallback_import_cap_w = 2.5e6  # the conservative share held without the coordinator (0 = off)
    fallback_ramp_w_per_s = 1e5
    fallback_demand_target_w = 0

The coordinator's file:

    [campus]
    id = "campus_demo"
    cycle_s = 1.0
    import_limit_w = 9e6           # the campus's limits at its utility meter (0 = off)
    ramp_limit_w_per_s = 4e5
    demand_target_w = 0            # 0: economic, the campus's level per demand window (levels.py)
    stale_after_s = 3              # a feeder's report older than this: its fallback share
    [mqtt]                         # host, port, topic_prefix, key_file, client_id
    [meter]                        # the campus meter: the keys of a site's grid [[meter]]
    [[feeder]]
    site = "feeder_a.toml"         # each feeder's site file: its id and its [campus] fallback

Cross-checks (errors name the file and key): every feeder's site file joins this campus on the same
broker, prefix and key, with the same demand interval, time zone and tariff (one utility bill: the
coordinator decides the campus's recharge for demand on that tariff); its stale_after_s is at least
the campus's plus LEAD_CYCLES cycles; with a limit on, every feeder has a fallback share of it above 0
(0 would be "no limit" to its controllers) and the fallbacks sum to at most the limit, so a campus
whose every feeder is on its fallback still holds the limit while their batteries can carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.campus.allocate import MIN_SHARE, CampusLimits, Share
from agent.model.config import ID_PATTERN, ID_RULE, DeviceConfig, SiteConfig, load_site, parse_device
from common.tomlcheck import ConfigError, Table, load_toml

MIN_SECRET_BYTES = 16
UTC_ZONE = ZoneInfo("UTC")
# A feeder silent to the coordinator (no report, or reporting that it hears no shares) for the
# campus's stale_after_s is put on its fallback share; the others get the rest one report, one
# coordinator cycle and one agent cycle later. The feeder's own stale_after_s (when it falls back by
# itself) must be at least that much longer, or its fallback and the others' old shares could add
# up to more than the limit for those cycles.
LEAD_CYCLES = 3


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    topic_prefix: str
    client_id: str
    secret: bytes  # never logged
    keepalive_s: int = 10

    def __repr__(self) -> str:  # never show the key
        return f"Broker({self.host}:{self.port}, prefix={self.topic_prefix!r}, client_id={self.client_id!r})"


@dataclass(frozen=True, slots=True)
class FeederConfig:
    """A site's [campus] table."""

    campus: str
    broker: Broker
    stale_after_s: float
    fallback: Share


@dataclass(frozen=True, slots=True)
class CampusConfig:
    path: Path
    id: str
    cycle_s: float
    limits: CampusLimits
    stale_after_s: float
    broker: Broker
    meter: DeviceConfig
    feeders: tuple[str, ...]  # site ids, in file order
    feeder_files: tuple[Path, ...]  # their site files, in the same order
    fallback: dict[str, Share]  # each feeder's, from its site file
    # the feeders' [control] demand_interval_s (all alike): the demand target is split once per interval
    demand_interval_s: float = 900.0
    # the feeders' [site] timezone (all alike: one utility bill): the campus's day profile is kept by
    # local demand slot, as each agent keeps its own (agent/campus/keep.py)
    timezone: ZoneInfo = UTC_ZONE
    # the feeders' [site] tariff (all alike: one utility bill; None: none): the coordinator decides
    # the campus's recharge for demand on it (agent/campus/recharge.py)
    tariff_path: Path | None = None


def _id(t: Table, key: str) -> str:
    v: str = t.text(key)
    if not ID_PATTERN.fullmatch(v):
        t.fail(key, f"must be {ID_RULE}, got {v!r}")
    return v


def _broker(t: Table, base: Path, client_id: str) -> Broker:
    key_file = t.text("key_file")
    p = (base / key_file).resolve()
    try:
        secret = p.read_bytes().strip()
    except OSError as e:
        t.fail("key_file", f"cannot be read ({p}: {e.strerror})")
    if len(secret) < MIN_SECRET_BYTES:
        t.fail("key_file", f"must hold a key of at least {MIN_SECRET_BYTES} bytes ({p})")
    prefix = t.text("topic_prefix", "ems")
    if any(c in prefix for c in "+#") or prefix.startswith("/") or prefix.endswith("/"):
        t.fail("topic_prefix", f"must be a plain topic path without wildcards or outer '/', got {prefix!r}")
    return Broker(
        host=t.text("host", "127.0.0.1"),
        port=t.integer("port", 1883, lo=1, hi=65535),
        topic_prefix=prefix,
        client_id=t.text("client_id", client_id),
        secret=secret,
        keepalive_s=t.integer("keepalive_s", 10, lo=1, hi=3600),
    )


def parse_feeder(site: SiteConfig) -> FeederConfig | None:
    """The site's [campus] table, or None without one. ConfigError names the file and key."""
    if "campus" not in site.sections:
        return None
    t = Table(site.sections["campus"], f"{site.path} [campus]")
    campus = _id(t, "id")
    broker = _broker(t, site.path.parent, f"ems-agent-{site.id}-campus")
    stale = t.number("stale_after_s", max(5.0, 3.0 * site.cycle_s), lo=2.0 * site.cycle_s, hi=3600)
    fallback = Share(
        import_cap_w=t.number("fallback_import_cap_w", 0.0, lo=0),
        ramp_w_per_s=t.number("fallback_ramp_w_per_s", 0.0, lo=0),
        demand_target_w=t.number("fallback_demand_target_w", 0.0, lo=0),
    )
    t.done()
    return FeederConfig(campus, broker, stale, fallback)


_LIMIT_KEYS = (
    ("import_limit_w", "import_cap_w", "fallback_import_cap_w"),
    ("ramp_limit_w_per_s", "ramp_w_per_s", "fallback_ramp_w_per_s"),
    ("demand_target_w", "demand_target_w", "fallback_demand_target_w"),
)


def load_campus(path: Path | str) -> CampusConfig:
    """Read and check a campus file and the feeders' site files it names."""
    path = Path(path)
    root = Table(load_toml(path), str(path))
    c = root.table("campus", required=True)
    campus_id = _id(c, "id")
    cycle_s = c.number("cycle_s", 1.0, lo=0.2, hi=60.0)
    limits = CampusLimits(
        import_limit_w=c.number("import_limit_w", 0.0, lo=0),
        ramp_limit_w_per_s=c.number("ramp_limit_w_per_s", 0.0, lo=0),
        demand_target_w=c.number("demand_target_w", 0.0, lo=0),
    )
    stale = c.number("stale_after_s", 3.0 * cycle_s, lo=cycle_s, hi=3600)
    c.done()
    m = root.table("mqtt", required=True)
    broker = _broker(m, path.parent, f"ems-coordinator-{campus_id}")
    m.done()
    mt = root.table("meter", required=True)
    meter = parse_device(mt, "meter")
    if meter.role != "grid":
        mt.fail("role", f'must be "grid" (the campus meter at the utility connection), got {meter.role!r}')
    feeder_tables = root.tables("feeder")
    root.done()
    if not feeder_tables:
        raise ConfigError(f"{path}: no [[feeder]]: name each feeder's site file (site = ...)")
    ids: list[str] = []
    files: list[Path] = []
    fallback: dict[str, Share] = {}
    intervals: list[float] = []
    zones: list[ZoneInfo] = []
    tariffs: list[Path | None] = []
    for ft in feeder_tables:
        site_file = (path.parent / ft.text("site")).resolve()
        ft.done()
        try:
            site = load_site(site_file)
        except ConfigError as e:
            ft.fail("site", f"names a site file that does not load: {e}")
        fc = parse_feeder(site)
        if fc is None:
            ft.fail("site", f"names {site_file}, which has no [campus] table")
        if site.id in fallback:
            ft.fail("site", f"names site {site.id!r} a second time")
        _same_campus(ft, site_file, campus_id, broker, fc)
        lead = stale + LEAD_CYCLES * max(cycle_s, site.cycle_s)
        if fc.stale_after_s < lead:
            ft.fail(
                "site",
                f"{site_file} [campus] key 'stale_after_s' is {fc.stale_after_s:g} s: it must be at least {lead:g} s,"
                f" this file's [campus] stale_after_s ({stale:g} s) plus {LEAD_CYCLES} cycles, so the others are"
                " off their old shares before this feeder falls back by itself",
            )
        if intervals and site.control.demand_interval_s != intervals[0]:
            ft.fail(
                "site",
                f"{site_file} [control] key 'demand_interval_s' is {site.control.demand_interval_s:g} s, but"
                f" {files[0]} has {intervals[0]:g} s: a campus's feeders must bill the same demand interval",
            )
        if zones and site.timezone != zones[0]:
            ft.fail(
                "site",
                f"{site_file} [site] timezone is {site.timezone.key!r}, but {files[0]} has {zones[0].key!r}:"
                " a campus's feeders are billed on one local clock",
            )
        if files and site.tariff_path != tariffs[0]:
            ft.fail(
                "site",
                f"{site_file} [site] tariff is {site.tariff_path}, but {files[0]} has {tariffs[0]}:"
                " a campus's feeders are billed on one tariff",
            )
        tariffs.append(site.tariff_path)
        zones.append(site.timezone)
        intervals.append(site.control.demand_interval_s)
        ids.append(site.id)
        files.append(site_file)
        fallback[site.id] = fc.fallback
    _check_fallbacks(path, limits, fallback)
    return CampusConfig(
        path,
        campus_id,
        cycle_s,
        limits,
        stale,
        broker,
        meter,
        tuple(ids),
        tuple(files),
        fallback,
        intervals[0],
        zones[0],
        tariffs[0],
    )


def _same_campus(ft: Table, site_file: Path, campus_id: str, broker: Broker, fc: FeederConfig) -> None:
    where = f"{site_file} [campus]"
    if fc.campus != campus_id:
        ft.fail("site", f"names {site_file}, whose [campus] id is {fc.campus!r}, not {campus_id!r}")
    b = fc.broker
    for key, mine, theirs in (
        ("host", broker.host, b.host),
        ("port", broker.port, b.port),
        ("topic_prefix", broker.topic_prefix, b.topic_prefix),
    ):
        if mine != theirs:
            ft.fail("site", f"{where} key '{key}' is {theirs!r}, the coordinator's [mqtt] {key} is {mine!r}")
    if b.secret != broker.secret:
        ft.fail("site", f"{where} key 'key_file' holds a different key from the coordinator's [mqtt] key_file")


def _check_fallbacks(path: Path, limits: CampusLimits, fallback: dict[str, Share]) -> None:
    n = len(fallback)
    for limit_key, share_key, site_key in _LIMIT_KEYS:
        limit = float(getattr(limits, limit_key))
        if limit <= 0.0:
            continue
        if limit < MIN_SHARE * n:
            raise ConfigError(f"{path}: [campus] {limit_key} = {limit:g} is too small for {n} feeders")
        for site_id, fb in fallback.items():
            if float(getattr(fb, share_key)) <= 0.0:
                raise ConfigError(
                    f"{path}: [campus] {limit_key} is on but feeder {site_id!r} has no [campus] {site_key}"
                    " (0 would be no limit at all once it stops hearing the coordinator)"
                )
        total = sum(float(getattr(fb, share_key)) for fb in fallback.values())
        if total > limit:
            raise ConfigError(
                f"{path}: the feeders' [campus] {site_key} sum to {total:g}, above [campus] {limit_key} ="
                f" {limit:g}: a campus on its fallback shares would not hold its limit"
            )


def check_reload(old: FeederConfig | None, new: FeederConfig | None, where: str) -> None:
    """Raise ConfigError (naming `where`'s key) unless a SIGHUP may apply `new` in place of `old`.

    What a reload may change is what only narrows the campus's safety: a fallback share lowered
    (or a limit of it turned on), a longer stale_after_s. The coordinator checked the fallbacks
    (they sum to at most each campus limit) and stale_after_s (at least its own plus LEAD_CYCLES
    cycles) against this file when it started, and it does not re-read them: a fallback raised or
    turned off, or a shorter stale_after_s, could break those checks unseen, so it needs the
    coordinator's files changed too and both restarted. Joining or leaving a campus, or another
    campus id, broker or key, is a new connection: a restart too.
    """
    if (old is None) != (new is None):
        what = "added" if old is None else "removed"
        raise ConfigError(f"{where}: [campus] {what}: joining or leaving a campus needs a restart")
    if old is None or new is None:
        return
    if new.campus != old.campus:
        raise ConfigError(f"{where} [campus] key 'id': changed from {old.campus!r} to {new.campus!r}: needs a restart")
    if new.broker != old.broker:  # host, port, prefix, client id, keepalive or key (never shown)
        raise ConfigError(f"{where} [campus]: the broker or key_file changed: the campus link needs a restart")
    if new.stale_after_s < old.stale_after_s:
        raise ConfigError(
            f"{where} [campus] key 'stale_after_s': {new.stale_after_s:g} s is shorter than the running"
            f" {old.stale_after_s:g} s (the coordinator checked it at its start): change both files and restart"
        )
    for _, share_key, site_key in _LIMIT_KEYS:
        was, now = float(getattr(old.fallback, share_key)), float(getattr(new.fallback, share_key))
        if was > 0.0 and not 0.0 < now <= was:
            raise ConfigError(
                f"{where} [campus] key {site_key!r}: {now:g} would widen the running {was:g}"
                " (the coordinator checked the fallbacks against the campus limit at its start):"
                " change both files and restart"
            )
