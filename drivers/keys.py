"""Canonical point keys: the names the agent reads, whatever register map a device speaks.

A profile file maps each of its registers to one of these keys (and converts to SI units and
to the site sign convention: battery/PCS power positive = discharge, grid positive = import).
The snapshot builder and the simulators only ever use these keys, so a new vendor's device
is a new profile file, not code.
"""

from __future__ import annotations

from typing import Final

# --- battery cluster BMS (SunSpec 1 + 802 or vendor) ---------------------------------------
SOC_PCT: Final = "soc_pct"  # %
SOH_PCT: Final = "soh_pct"  # %
VOLTAGE_V: Final = "voltage_v"  # DC bus voltage, V
CURRENT_A: Final = "current_a"  # DC current, A, positive = discharge
POWER_W: Final = "power_w"  # W (cluster DC, PCS AC, meter): see module doc for signs
CELL_V_MAX: Final = "cell_v_max"  # V
CELL_V_MIN: Final = "cell_v_min"  # V
TEMP_MAX_C: Final = "temp_max_c"  # deg C, hottest module/cell
TEMP_MIN_C: Final = "temp_min_c"  # deg C
MAX_CHARGE_A: Final = "max_charge_a"  # A, magnitude the BMS allows right now
MAX_DISCHARGE_A: Final = "max_discharge_a"  # A, magnitude
STATE: Final = "state"  # device state code; the profile maps codes to STATE_* names below
ALARMS: Final = "alarms"  # bitfield of events/alarms (0 = none)
CYCLES: Final = "cycles"  # equivalent full cycles reported by the BMS
CAPACITY_WH: Final = "capacity_wh"  # nameplate energy, Wh
CONNECT_CMD: Final = "connect_cmd"  # writable: CONNECT (close the contactor) or DISCONNECT (open it)
CONNECT: Final = 1  # SunSpec 802 SetOp values
DISCONNECT: Final = 2

# --- PCS (SunSpec 1 + 701 + 702 + 704 or vendor) -------------------------------------------
SETPOINT_W: Final = "setpoint_w"  # writable active-power setpoint, W, positive = discharge
SETPOINT_ENABLE: Final = "setpoint_enable"  # writable: 1 = follow setpoint_w
REVERT_S: Final = "revert_s"  # writable: revert timer; PCS goes to 0 W if not rewritten
RATED_W: Final = "rated_w"  # W, magnitude
FREQUENCY_HZ: Final = "frequency_hz"
# grid-power (PCC / external-meter) control, a vendor option (drivers/profiles/pcs_vendor_acme_pcc.toml)
PCC_ENABLE: Final = "pcc_enable"  # writable: 1 = regulate the grid import at the PCC, 0 = follow setpoint_w
PCC_TARGET_W: Final = "pcc_target_w"  # writable: grid import target, W (import positive)
PCC_RAMP_W_PER_S: Final = "pcc_ramp_w_per_s"  # writable: how fast the PCS moves its grid reference
PCC_SHARE: Final = "pcc_share"  # writable: this PCS's fraction (0..1) of the grid correction
PCC_MAX_DISCHARGE_W: Final = "pcc_max_discharge_w"  # writable: output limits in the mode (magnitudes)
PCC_MAX_CHARGE_W: Final = "pcc_max_charge_w"
PCC_GRID_MIN_W: Final = "pcc_grid_min_w"  # writable: never drive the import below this (0 = no export)
PCC_ACTIVE: Final = "pcc_active"  # read: 1 while the PCS regulates the grid
PCC_GRID_W: Final = "pcc_grid_w"  # read: what the PCS's own meter reads (import positive)
PCC_REF_W: Final = "pcc_ref_w"  # read: the PCS's ramp-limited grid reference now
PCC_SAMPLE_MS: Final = "pcc_sample_ms"  # read: the local loop's sample period
PCC_COMMAND_KEYS: Final = (
    PCC_ENABLE,
    PCC_TARGET_W,
    PCC_RAMP_W_PER_S,
    PCC_SHARE,
    PCC_MAX_DISCHARGE_W,
    PCC_MAX_CHARGE_W,
    PCC_GRID_MIN_W,
)

# --- meters (grid, GPU rack load, PV) -------------------------------------------------------
ENERGY_IMPORT_WH: Final = "energy_import_wh"
ENERGY_EXPORT_WH: Final = "energy_export_wh"

# Canonical device states. Profiles map raw codes onto these names.
STATE_ONLINE: Final = "online"  # operating or ready to operate
STATE_STANDBY: Final = "standby"  # healthy, not switching; may be commanded
STATE_FAULT: Final = "fault"  # must not be commanded
STATE_OFF: Final = "off"  # disconnected / contactor open; must not be commanded
STATE_NAMES: Final = (STATE_ONLINE, STATE_STANDBY, STATE_FAULT, STATE_OFF)
