"""Site configuration (TOML): devices, wiring of clusters behind PCS units, control targets.

One file describes a site for the live agent, the simulators and the offline analysis.
Every key is validated; an error names the file, the table and the key.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from common.tomlcheck import REQUIRED, ConfigError, Table, load_toml

METER_ROLES = ("grid", "load", "pv", "rack")
# Site and device ids name MQTT topics (`ems/<site>/cluster/<id>`: a `#`, `+` or `/` there makes
# every publish fail and the MQTT link loop on "connection lost"), telemetry tags and the state
# directory (`var/<site id>`), so they are kept to a safe alphabet and length.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
ID_RULE = "1-64 characters from A-Z a-z 0-9 _ . - starting with a letter or digit"
# [[pcs]] grid_control: "setpoint" = the PCS follows the agent's active-power setpoint (SunSpec 704
# WSet or a vendor register); "pcc" = the PCS regulates the grid import at the point of common
# coupling itself, on its own meter, toward a target and ramp the agent sets (a vendor option; the
# profile must have the pcc_* points, see drivers/profiles/pcs_vendor_acme_pcc.toml).
GRID_CONTROL_MODES = ("setpoint", "pcc")


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """Where and how to reach one Modbus device, and which register map it speaks."""

    id: str
    kind: str  # "meter" | "pcs" | "cluster"
    profile: str  # profile name (file stem under drivers/profiles/) or a path
    host: str
    port: int
    unit: int  # Modbus device id
    timeout_s: float
    retries: int
    role: str = ""  # meters: grid | load | pv | rack
    rated_w: float = 0.0  # PCS: rating
    capacity_wh: float = 0.0  # clusters: nameplate energy
    clusters: tuple[str, ...] = ()  # PCS: the clusters wired behind it
    grid_control: str = "setpoint"  # PCS: "setpoint" | "pcc" (GRID_CONTROL_MODES)


@dataclass(frozen=True, slots=True)
class CampusPart:
    """What a campus coordinator decided for the campus's demand target, as one feeder's agent takes it
    (agent/campus: decided once on the campus's profile and tariff, sent in the share). With it the
    agent's demand_target_w is its share of the campus target, and:
    - its charge raise stays at or under that share (the feeders' own raises, each up to its own
      feeder's billed peak, add up above the campus target: agent.control.demand);
    - charging spends the share's credit over the time left: it is what the coordinator gives this
      feeder now of the campus's energy left (agent.campus.allocate.split_demand), not import it saved;
    - its demand bound is its part of the campus's (`demand_w`, W: > 0 it discharges that much, < 0
      it may charge that much; NaN: its own against its share):
      bounded each against its own share, a feeder whose GPU load swung up discharged while the
      campus, where the swings cancel, needed nothing (agent/campus/bound.py);
    - time-of-use discharge keeps back `keep_wh` (stored Wh; below 0: its own keep) for the target;
    - it recharges for demand where no round trip pays only when the campus does (`recharge`: 1 yes,
      0 no, -1 not decided: its own rule, agent.control.tou.demand_charge_now)."""

    keep_wh: float = -1.0
    recharge: int = -1
    demand_w: float = math.nan
    # the feeder's net load (W) the coordinator made `demand_w` on (NaN: not sent): a charge part is
    # cut by what the feeder's own load rose since, and grows by what it fell (agent.control.demand)
    at_net_w: float = math.nan
    # how far the campus was under needing a discharge when `demand_w` was made (W, >= 0; NaN: not
    # sent): a feeder whose part is not a discharge discharges its own step up past it
    # (agent.control.demand, agent/campus/bound.py)
    room_w: float = math.nan


@dataclass(frozen=True, slots=True)
class ControlConfig:
    """Targets and limits for the control policy (SI units)."""

    soc_min_pct: float = 10.0  # hard floor of the usable window
    soc_max_pct: float = 95.0  # hard ceiling
    reserve_load_w: float = 0.0  # critical load the reserve must carry ...
    reserve_minutes: float = 0.0  # ... for this long during an outage
    ramp_limit_w_per_s: float = 0.0  # grid import ramp limit, up and down; 0 = off
    # battery power time-of-use arbitrage leaves free, each way, for ramp support to answer a load
    # swing with (W; only with a ramp limit; demand shaving may still use it all); 0 = none
    ramp_headroom_w: float = 0.0
    demand_target_w: float = 0.0  # fixed 15-min demand target; 0 = economic (automatic)
    # hard grid connection limit (transformer or contract capacity, W): import at or below it every
    # cycle while the battery can carry the excess (agent.control.grid_limit); 0 = none
    grid_import_limit_w: float = 0.0
    demand_interval_s: float = 900.0
    tou_enabled: bool = True
    charge_efficiency: float = 0.96  # one way, AC->stored
    discharge_efficiency: float = 0.96  # one way, stored->AC
    degradation_cost_per_kwh: float = 0.0  # currency per kWh discharged
    soc_target_pct: float = 50.0  # where idle/balancing returns the battery
    # the sub-second fast lane's period (s) for PCS on setpoints (agent.live.fast_lane); 0 = off
    fast_lane_s: float = 0.0
    # Not a site-file key: True only in an offline replay of a trace sampled at the agent's cycle,
    # where the load changes exactly when the agent reads it (agent.control.ramp_reference)
    load_changes_at_readings: bool = False
    # Not a site-file key: the campus coordinator's demand decisions for this feeder, while its demand
    # target is the campus's share (set by agent.control.campus_share.with_share); None: a site alone
    campus: CampusPart | None = None


@dataclass(frozen=True, slots=True)
class SiteConfig:
    path: Path
    id: str
    timezone: ZoneInfo
    cycle_s: float
    allow_export: bool
    stale_after_s: float
    tariff_path: Path | None
    control: ControlConfig
    meters: tuple[DeviceConfig, ...]
    pcs: tuple[DeviceConfig, ...]
    clusters: tuple[DeviceConfig, ...]
    maintenance: frozenset[str] = frozenset()  # clusters isolated by the site file
    simulation: dict[str, Any] = field(default_factory=dict)  # read by simulators only
    sections: dict[str, Any] = field(default_factory=dict)  # other subsystems' tables

    @property
    def devices(self) -> tuple[DeviceConfig, ...]:
        return self.meters + self.pcs + self.clusters

    def meter(self, role: str) -> DeviceConfig | None:
        for m in self.meters:
            if m.role == role:
                return m
        return None

    def with_clusters(self, n: int, per_pcs: int | None = None) -> SiteConfig:
        """The same site with `n` clusters, spread round-robin over its PCS units; with `per_pcs`,
        over as many copies of its first PCS as `n` needs at `per_pcs` clusters each (a site grown
        in blocks, agent.offline.expansion: the PCS rating grows with the clusters)."""
        if not self.clusters:
            raise ConfigError(f"{self.path}: no [[cluster]] to copy for a size of {n}")
        proto = self.clusters[0]
        clusters = tuple(replace(proto, id=f"c{i + 1:02d}", unit=proto.unit) for i in range(n))
        units = self.pcs
        if per_pcs is not None and self.pcs:
            units = tuple(replace(self.pcs[0], id=f"pcs{i + 1:02d}") for i in range(max(1, -(-n // per_pcs))))
        per_unit: dict[str, list[str]] = {p.id: [] for p in units}
        for i, c in enumerate(clusters):
            per_unit[units[i % len(units)].id].append(c.id)
        pcs = tuple(replace(p, clusters=tuple(per_unit[p.id])) for p in units)
        return replace(self, clusters=clusters, pcs=pcs, maintenance=frozenset())


BUNDLED_TARIFFS = Path(__file__).resolve().parent.parent / "economics" / "tariffs"

# Sections owned by other subsystems; each validates its own table.
OTHER_SECTIONS = ("telemetry", "mqtt", "api", "economics", "ledger", "health", "planner", "campus")
# Of those, the ones no subsystem reads a key from yet: any key there is a typo or a setting the
# agent would silently not apply, so it is refused here. (A subsystem that starts reading its
# table takes it off this list and calls Table.done() itself.)
NO_KEYS_YET = ("ledger", "health")


def _id(t: Table) -> str:
    v: str = t.text("id")
    if not ID_PATTERN.fullmatch(v):
        shown = repr(v) if len(v) <= 70 else f"{v[:60]!r}... ({len(v)} characters)"
        t.fail("id", f"must be {ID_RULE}, got {shown}")
    return v


def _device(t: Table, kind: str, defaults: Table | None) -> DeviceConfig:
    d = defaults.data if defaults is not None else {}
    dev = DeviceConfig(
        id=_id(t),
        kind=kind,
        profile=t.text("profile", d.get("profile", REQUIRED)),
        host=t.text("host", d.get("host", "127.0.0.1")),
        port=t.integer("port", lo=1, hi=65535),
        unit=t.integer("unit", 1, lo=0, hi=247),
        timeout_s=t.number("timeout_s", d.get("timeout_s", 0.3), lo=0.01, hi=30),
        retries=t.integer("retries", d.get("retries", 1), lo=0, hi=10),
        role=t.text("role", choices=METER_ROLES) if kind == "meter" else "",
        rated_w=t.number("rated_w", lo=0, lo_open=True) if kind == "pcs" else 0.0,
        capacity_wh=t.number("capacity_wh", lo=0, lo_open=True) if kind == "cluster" else 0.0,
        clusters=t.texts("clusters") if kind == "pcs" else (),
        grid_control=t.text("grid_control", "setpoint", choices=GRID_CONTROL_MODES) if kind == "pcs" else "setpoint",
    )
    _check_profile(t, dev)
    if kind == "cluster":
        t.flag("maintenance", False)
    t.done()
    return dev


def parse_device(t: Table, kind: str) -> DeviceConfig:
    """One device table with the keys of a site's [[meter]] / [[pcs]] / [[cluster]] (the campus
    file's meter is one: agent/campus/config.py)."""
    return _device(t, kind, None)


def _check_profile(t: Table, dev: DeviceConfig) -> None:
    """The profile loads, is one for this kind of device (a PCS driven through a BMS register map
    would write setpoints to BMS registers), and with grid_control = "pcc" can be commanded in
    that mode. Profiles are cached (drivers.profile), so 64 clusters cost one read."""
    from drivers import keys
    from drivers.profile import load_profile

    try:
        prof = load_profile(dev.profile)
    except (ConfigError, OSError) as e:
        t.fail("profile", f"cannot be loaded: {e}")
    if prof.kind != dev.kind:
        t.fail("profile", f"{dev.profile!r} is a {prof.kind} profile; a [[{dev.kind}]] needs a {dev.kind} profile")
    if dev.grid_control != "pcc":
        return
    missing = [k for k in keys.PCC_COMMAND_KEYS if k not in prof.writable_keys()]
    if keys.PCC_ACTIVE not in prof.points:
        missing.append(keys.PCC_ACTIVE)
    if missing:
        t.fail(
            "grid_control",
            f'is "pcc" but profile {dev.profile!r} has no grid-power control points '
            f"({', '.join(missing)}); use a profile with them (e.g. pcs_vendor_acme_pcc)"
            ' or grid_control = "setpoint"',
        )


def _control(t: Table) -> ControlConfig:
    c = ControlConfig(
        soc_min_pct=t.number("soc_min_pct", 10.0, lo=0, hi=100),
        soc_max_pct=t.number("soc_max_pct", 95.0, lo=0, hi=100),
        reserve_load_w=t.number("reserve_load_w", 0.0, lo=0),
        reserve_minutes=t.number("reserve_minutes", 0.0, lo=0, hi=24 * 60),
        ramp_limit_w_per_s=t.number("ramp_limit_w_per_s", 0.0, lo=0),
        ramp_headroom_w=t.number("ramp_headroom_w", 0.0, lo=0),
        demand_target_w=t.number("demand_target_w", 0.0, lo=0),
        grid_import_limit_w=t.number("grid_import_limit_w", 0.0, lo=0),
        demand_interval_s=t.number("demand_interval_s", 900.0, lo=60, hi=3600),
        tou_enabled=t.flag("tou_enabled", True),
        charge_efficiency=t.number("charge_efficiency", 0.96, lo=0.5, hi=1.0),
        discharge_efficiency=t.number("discharge_efficiency", 0.96, lo=0.5, hi=1.0),
        degradation_cost_per_kwh=t.number("degradation_cost_per_kwh", 0.0, lo=0),
        soc_target_pct=t.number("soc_target_pct", 50.0, lo=0, hi=100),
        fast_lane_s=t.number("fast_lane_s", 0.0, lo=0, hi=1.0),
    )
    t.done()
    if 0.0 < c.fast_lane_s < FAST_LANE_MIN_S:
        t.fail("fast_lane_s", f"must be 0 (off) or at least {FAST_LANE_MIN_S:g} s, got {c.fast_lane_s:g}")
    if c.soc_min_pct >= c.soc_max_pct:
        t.fail("soc_min_pct", f"must be below soc_max_pct ({c.soc_max_pct:g}), got {c.soc_min_pct:g}")
    if not c.soc_min_pct <= c.soc_target_pct <= c.soc_max_pct:
        t.fail("soc_target_pct", f"must lie within [soc_min_pct, soc_max_pct], got {c.soc_target_pct:g}")
    return c


FAST_LANE_MIN_S = 0.05  # below this the Modbus round trips to the meters and PCS fill the tick


def _check_fast_lane(path: Path, control: ControlConfig, cycle_s: float, meters: tuple[DeviceConfig, ...]) -> None:
    """The fast lane needs something to do (a ramp limit), a period shorter than the cycle, and the
    meters it reads: the grid meter and a load meter (it reads nothing else)."""
    key = f"{path}: [control] fast_lane_s = {control.fast_lane_s:g}"
    if control.fast_lane_s >= cycle_s:
        raise ConfigError(f"{key} must be shorter than [site] cycle_s ({cycle_s:g} s)")
    if control.ramp_limit_w_per_s <= 0:
        raise ConfigError(f"{key} but [control] ramp_limit_w_per_s is 0: the fast lane holds the grid ramp")
    roles = {m.role for m in meters}
    if "grid" not in roles or not roles & {"load", "rack"}:
        raise ConfigError(f'{key} needs a [[meter]] with role = "grid" and one with role = "load" (or "rack") to read')


def check_demand_interval(path: Path | str, interval_s: float, billed_s: float, tariff: Path | str) -> None:
    """The controller's demand interval must be the one the tariff bills: raise ConfigError naming both keys.

    The controller shaves the interval averages it counts over `[control] demand_interval_s`; the
    utility bills those over the `demand_interval_min` of the `tariff` file. Two lengths would
    defend the wrong average.
    """
    if billed_s != interval_s:
        raise ConfigError(
            f"{path}: [control] demand_interval_s = {interval_s:g} s disagrees with the tariff's"
            f" demand_interval_min = {billed_s / 60.0:g} min ({tariff}): set demand_interval_s ="
            f" {billed_s:g} (or leave it out when the tariff bills 15 min)"
        )


def parse_site(data: dict[str, Any], path: Path) -> SiteConfig:
    """Validate a parsed site file. Raises ConfigError naming file, table and key."""
    root = Table(data, str(path))
    s = root.table("site", required=True)
    site_id = _id(s)
    tz_name = s.text("timezone", "UTC")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        s.fail("timezone", f"is not a known IANA time zone, got {tz_name!r}")
    cycle_s = s.number("cycle_s", 1.0, lo=0.2, hi=60.0)
    allow_export = s.flag("allow_export", False)
    stale_after_s = s.number("stale_after_s", 3.0 * cycle_s, lo=cycle_s)
    tariff = s.text("tariff", None)
    s.done()
    tariff_path = None
    if tariff is not None:
        # A bare name is one of the tariffs shipped in agent/economics/tariffs/; anything else is a file
        # relative to the site file.
        bundled = "/" not in tariff and not tariff.endswith(".toml")
        tariff_path = (BUNDLED_TARIFFS / f"{tariff}.toml" if bundled else path.parent / tariff).resolve()
        if not tariff_path.is_file():
            shipped = ", ".join(sorted(p.stem for p in BUNDLED_TARIFFS.glob("*.toml")))
            s.fail("tariff", f"names a file that does not exist: {tariff_path} (shipped: {shipped})")

    control = _control(root.table("control"))
    if tariff_path is not None:
        # Imported here: the data model does not depend on the economics package but to cross-check.
        from agent.economics.tariff import load_tariff

        billed_s = load_tariff(tariff_path).demand_interval_s
        check_demand_interval(path, control.demand_interval_s, billed_s, tariff_path)
    defaults = root.table("defaults") if root.has("defaults") else None
    if defaults is not None:
        # Checked here, with the bounds of the device keys they stand in for: a device that takes
        # a default gets it unchecked (Table returns a default as is).
        defaults.text("profile", None)
        defaults.text("host", None)
        defaults.number("timeout_s", None, lo=0.01, hi=30)
        defaults.integer("retries", None, lo=0, hi=10)
        defaults.done()
    meters = tuple(_device(t, "meter", defaults) for t in root.tables("meter"))
    pcs = tuple(_device(t, "pcs", defaults) for t in root.tables("pcs"))
    cluster_tables = root.tables("cluster")
    clusters = tuple(_device(t, "cluster", defaults) for t in cluster_tables)
    maintenance = frozenset(
        c.id for c, t in zip(clusters, cluster_tables, strict=True) if t.data.get("maintenance", False)
    )
    simulation = root.raw("simulation", {})
    if not isinstance(simulation, dict):
        root.fail("simulation", "must be a table")
    sections = {k: root.raw(k) for k in OTHER_SECTIONS if root.has(k)}
    for k in NO_KEYS_YET:
        if root.has(k):
            root.table(k).done()
    root.done()

    _check_wiring(path, meters, pcs, clusters)
    pcc = [p.id for p in pcs if p.grid_control == "pcc"]
    if pcc and not any(m.role == "grid" for m in meters):
        raise ConfigError(
            f"{path}: [[pcs]] {pcc[0]!r} key 'grid_control' is \"pcc\" but the site has no [[meter]] with"
            ' role = "grid": the agent checks the grid import the PCS regulates on that meter'
        )
    if pcc and control.ramp_limit_w_per_s <= 0:
        raise ConfigError(
            f"{path}: [[pcs]] {pcc[0]!r} key 'grid_control' is \"pcc\" but [control] ramp_limit_w_per_s is 0:"
            ' grid-power control exists to hold the grid ramp; set the limit (W/s) or use "setpoint"'
        )
    if control.fast_lane_s > 0.0:
        _check_fast_lane(path, control, cycle_s, meters)
    return SiteConfig(
        path=path,
        id=site_id,
        timezone=tz,
        cycle_s=cycle_s,
        allow_export=allow_export,
        stale_after_s=stale_after_s,
        tariff_path=tariff_path,
        control=control,
        meters=meters,
        pcs=pcs,
        clusters=clusters,
        maintenance=maintenance,
        simulation=simulation,
        sections=sections,
    )


def _check_wiring(
    path: Path,
    meters: tuple[DeviceConfig, ...],
    pcs: tuple[DeviceConfig, ...],
    clusters: tuple[DeviceConfig, ...],
) -> None:
    seen: set[str] = set()
    for d in meters + pcs + clusters:
        if d.id in seen:
            raise ConfigError(f"{path}: device id {d.id!r} is used twice")
        seen.add(d.id)
    endpoints: dict[tuple[str, int, int], str] = {}
    for d in meters + pcs + clusters:
        key = (d.host, d.port, d.unit)
        if key in endpoints:
            raise ConfigError(f"{path}: devices {endpoints[key]!r} and {d.id!r} share {d.host}:{d.port} unit {d.unit}")
        endpoints[key] = d.id
    if sum(1 for m in meters if m.role == "grid") > 1:
        raise ConfigError(f'{path}: more than one [[meter]] has role = "grid"')
    cluster_ids = {c.id for c in clusters}
    owner: dict[str, str] = {}
    for p in pcs:
        for cid in p.clusters:
            if cid not in cluster_ids:
                raise ConfigError(f"{path}: [[pcs]] {p.id!r} key 'clusters' names unknown cluster {cid!r}")
            if cid in owner:
                raise ConfigError(f"{path}: cluster {cid!r} is wired behind both {owner[cid]!r} and {p.id!r}")
            owner[cid] = p.id
    for c in clusters:
        if c.id not in owner:
            raise ConfigError(f"{path}: cluster {c.id!r} is not listed in any [[pcs]] 'clusters'")


def load_site(path: Path | str) -> SiteConfig:
    p = Path(path)
    return parse_site(load_toml(p), p)


def pcs_of(site: SiteConfig) -> dict[str, str]:
    """cluster id -> PCS id."""
    return {cid: p.id for p in site.pcs for cid in p.clusters}
