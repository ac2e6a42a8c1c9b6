"""The one builder of snapshot records from what the devices report (pure).

The live assembly (agent/live/assemble.py), the offline replay (agent/offline/replay.py) and the
accelerated aging run (simulators/aging.py) each have their own register model (how a value gets
to the agent: Modbus current limits times voltage live, BMS registers at 0.1 % and 1 kW resolution
in the replay, the simulator's physics state in the aging run); all three hand the values to these
functions, so the rules that turn readings into a record (which state is a fault, which device is
offline, how far a device's own rating may lower the configured one) are written once.

`state` is the device's state as a canonical name (drivers.keys.STATE_*), or None when it could
not be read. The limits arrive as power (W), already converted by the caller's register model.
This module is on the replay's per-step path (on a snapshot cache miss), so it is compiled in the
mypyc build (setup.py).
"""

from __future__ import annotations

from agent.model.snapshot import (
    MISSING,
    ClusterSnapshot,
    ClusterStatus,
    Measured,
    PcsSnapshot,
    PcsStatus,
)
from drivers import keys as k


def cluster_status(state: str | None, soc: Measured) -> ClusterStatus:
    """A BMS whose state or SoC cannot be read, or that reports itself off, is offline: nothing it
    says can be trusted; one that reports a fault must not be commanded."""
    if not soc.ok or state is None or state == k.STATE_OFF:
        return ClusterStatus.OFFLINE
    if state == k.STATE_FAULT:
        return ClusterStatus.FAULT
    return ClusterStatus.ONLINE


def pcs_status(state: str | None) -> PcsStatus:
    """As cluster_status, for a PCS (the caller passes None when its power cannot be read)."""
    if state is None or state == k.STATE_OFF:
        return PcsStatus.OFFLINE
    if state == k.STATE_FAULT:
        return PcsStatus.FAULT
    return PcsStatus.ONLINE


def cluster_record(
    cid: str,
    pcs_id: str,
    capacity_wh: float,
    state: str | None,
    soc_pct: Measured,
    max_charge_w: Measured,
    max_discharge_w: Measured,
    power_w: Measured = MISSING,
    soh_pct: Measured = MISSING,
    voltage_v: Measured = MISSING,
    current_a: Measured = MISSING,
    cell_v_max: Measured = MISSING,
    cell_v_min: Measured = MISSING,
    temp_max_c: Measured = MISSING,
    temp_min_c: Measured = MISSING,
    cycles: Measured = MISSING,
    alarms: int = 0,
    switchable: bool = False,
) -> ClusterSnapshot:
    """One cluster as its BMS reports it; `capacity_wh` is the nameplate (site file)."""
    return ClusterSnapshot(
        cid,
        pcs_id,
        cluster_status(state, soc_pct),
        capacity_wh,
        soc_pct,
        max_charge_w,
        max_discharge_w,
        power_w,
        soh_pct,
        voltage_v,
        current_a,
        cell_v_max,
        cell_v_min,
        temp_max_c,
        temp_min_c,
        cycles,
        alarms,
        switchable,
    )


def pcs_record(
    pid: str,
    cluster_ids: tuple[str, ...],
    rated_cfg_w: float,
    state: str | None,
    power_w: Measured = MISSING,
    rated_w: Measured = MISSING,
    setpoint_w: Measured = MISSING,
    grid_control: bool = False,
    pcc_active: Measured = MISSING,
    pcc_grid_w: Measured = MISSING,
) -> PcsSnapshot:
    """One PCS as it reports itself; `rated_cfg_w` is the site file's rating, `rated_w` the device's."""
    # The device's own rating can only lower the configured one, never raise it.
    rated = min(rated_cfg_w, rated_w.value) if rated_w.ok and rated_w.value > 0 else rated_cfg_w
    return PcsSnapshot(
        pid,
        cluster_ids,
        pcs_status(state),
        rated,
        power_w,
        setpoint_w,
        grid_control,
        pcc_active,
        pcc_grid_w,
    )
