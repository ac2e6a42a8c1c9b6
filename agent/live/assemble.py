"""Turn one cycle's device readings into a SiteSnapshot (pure).

Readings arrive keyed by canonical point key (drivers/keys.py), already in SI units and the
site sign convention. This module decides what each value is worth: its age, its quality,
the status of every cluster and PCS, whether the grid is up, and where the site load comes
from when no load meter is configured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime

from agent.model.build import cluster_record, pcs_record
from agent.model.config import SiteConfig
from agent.model.snapshot import MISSING, ClusterSnapshot, Measured, PcsSnapshot, SiteSnapshot
from drivers import keys as k
from drivers.reading import Quality, Reading

Readings = Mapping[str, Reading]
# (device id, raw state code) -> canonical state name (drivers.keys.STATE_*), or None if unknown.
StateNamer = Callable[[str, int], str | None]

GRID_UP_MIN_V = 50.0  # below this the utility supply is considered absent
_NO_READINGS: dict[str, Reading] = {}


def measured(r: Reading | None, now: float, stale_after_s: float) -> Measured:
    if r is None:
        return Measured.missing()
    age = max(0.0, now - r.t)
    if r.quality is Quality.GOOD and age > stale_after_s:
        return Measured(r.number() if r.value is not None else math.nan, Quality.STALE, age)
    if r.quality is not Quality.GOOD:
        v = math.nan if r.value is None or isinstance(r.value, str) else float(r.value)
        return Measured(v, r.quality, age)
    v = r.number()
    return Measured(v, Quality.GOOD if math.isfinite(v) else Quality.INVALID, age)


def _state(dev_id: str, rd: Readings, namer: StateNamer) -> str | None:
    r = rd.get(k.STATE)
    if r is None or not r.ok or isinstance(r.value, str):
        return None
    return namer(dev_id, int(r.value))  # type: ignore[arg-type]


def _limit_w(amps: Measured, volts: Measured) -> Measured:
    """A current limit (A) at the present voltage as a power limit (W), with the worse quality."""
    if not amps.ok:
        return amps
    if not volts.ok:
        return Measured(math.nan, volts.quality, volts.age_s)
    return Measured(max(0.0, amps.value) * volts.value, Quality.GOOD, max(amps.age_s, volts.age_s))


def cluster_snapshot(
    site: SiteConfig,
    cid: str,
    pcs_id: str,
    capacity_wh: float,
    rd: Readings,
    now: float,
    namer: StateNamer,
) -> ClusterSnapshot:
    def m(key: str) -> Measured:
        return measured(rd.get(key), now, site.stale_after_s)

    soc = m(k.SOC_PCT)
    volts = m(k.VOLTAGE_V)
    state = _state(cid, rd, namer)
    alarms_r = rd.get(k.ALARMS)
    alarms = int(alarms_r.value) if alarms_r is not None and alarms_r.ok else 0  # type: ignore[arg-type]
    return cluster_record(
        cid,
        pcs_id,
        capacity_wh,
        state,
        soc,
        _limit_w(m(k.MAX_CHARGE_A), volts),
        _limit_w(m(k.MAX_DISCHARGE_A), volts),
        power_w=m(k.POWER_W),
        soh_pct=m(k.SOH_PCT),
        voltage_v=volts,
        current_a=m(k.CURRENT_A),
        cell_v_max=m(k.CELL_V_MAX),
        cell_v_min=m(k.CELL_V_MIN),
        temp_max_c=m(k.TEMP_MAX_C),
        temp_min_c=m(k.TEMP_MIN_C),
        cycles=m(k.CYCLES),
        alarms=alarms,
        switchable=k.CONNECT_CMD in rd,  # present only when the profile can open the contactor
    )


def pcs_snapshot(
    site: SiteConfig,
    pid: str,
    clusters: tuple[str, ...],
    rated_cfg_w: float,
    rd: Readings,
    now: float,
    namer: StateNamer,
    grid_control: bool = False,
) -> PcsSnapshot:
    def m(key: str) -> Measured:
        return measured(rd.get(key), now, site.stale_after_s)

    power = m(k.POWER_W)
    # A PCS whose power cannot be read is as good as one whose state cannot: offline.
    state = _state(pid, rd, namer) if power.ok else None
    return pcs_record(
        pid,
        clusters,
        rated_cfg_w,
        state,
        power_w=power,
        rated_w=m(k.RATED_W),
        setpoint_w=m(k.SETPOINT_W),
        grid_control=grid_control,
        pcc_active=m(k.PCC_ACTIVE) if grid_control else MISSING,
        pcc_grid_w=m(k.PCC_GRID_W) if grid_control else MISSING,
    )


def _sum(ms: list[Measured]) -> Measured:
    if not ms:
        return Measured.missing()
    bad = [x for x in ms if not x.ok]
    if bad:
        return Measured(math.nan, bad[0].quality, max(x.age_s for x in ms))
    return Measured(sum(x.value for x in ms), Quality.GOOD, max(x.age_s for x in ms))


def build_snapshot(
    site: SiteConfig,
    readings: Mapping[str, Readings],
    seq: int,
    now: float,
    now_wall: datetime,
    namer: StateNamer,
    load_override: Measured | None = None,
) -> SiteSnapshot:
    """One immutable snapshot. `load_override` is a load measured elsewhere (e.g. MQTT rack PDUs).

    What the devices report, nothing else: an operator's derate and maintenance hold are policy
    inputs of decide() (OperatorState), applied by agent.control.fleet and shown in the plan.
    """
    pcs_owner = {cid: p.id for p in site.pcs for cid in p.clusters}
    clusters = tuple(
        cluster_snapshot(
            site,
            c.id,
            pcs_owner[c.id],
            c.capacity_wh,
            readings.get(c.id, _NO_READINGS),
            now,
            namer,
        )
        for c in site.clusters
    )
    pcs = tuple(
        pcs_snapshot(
            site, p.id, p.clusters, p.rated_w, readings.get(p.id, _NO_READINGS), now, namer, p.grid_control == "pcc"
        )
        for p in site.pcs
    )

    def meter_power(role: str) -> list[Measured]:
        return [
            measured(readings.get(m.id, _NO_READINGS).get(k.POWER_W), now, site.stale_after_s)
            for m in site.meters
            if m.role == role
        ]

    grid_list = meter_power("grid")
    grid = grid_list[0] if grid_list else Measured.missing()
    grid_up = True  # without a trustworthy meter voltage we assume the grid is there (the safe side)
    gm = site.meter("grid")
    if gm is not None:
        v = measured(readings.get(gm.id, _NO_READINGS).get(k.VOLTAGE_V), now, site.stale_after_s)
        if v.ok:
            grid_up = v.value >= GRID_UP_MIN_V
    pv_list = meter_power("pv")
    pv = _sum(pv_list) if pv_list else Measured(0.0)
    if load_override is not None:
        load = load_override
    elif site.meter("load") is not None or site.meter("rack") is not None:
        load = _sum(meter_power("load") + meter_power("rack"))
    else:
        # No load meter: the energy balance gives it (load = grid + pv + battery).
        # Every PCS counts: one whose power is unknown makes the load unknown too.
        batt = [p.power_w for p in pcs]
        load = _sum([grid, pv, *batt])
    return SiteSnapshot(
        seq=seq,
        t_mono=now,
        t_wall=now_wall,
        grid_w=grid,
        load_w=load,
        pv_w=pv,
        grid_up=grid_up,
        clusters=clusters,
        pcs=pcs,
    )
