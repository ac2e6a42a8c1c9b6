"""Battery plant physics: clusters (cell stack + BMS) behind PCS units. Pure, stepped with explicit dt.

Conventions: power positive = discharge (AC side, into the site), current positive = discharge.
The state variable of a cluster is its stored energy in Wh, so bookkeeping is exact:

    stored_end - stored_start = charged_ac_wh * eta_charge - discharged_ac_wh / eta_discharge

and everything lost is counted in `loss_wh` (it also heats the cluster). PCS conversion is
lossless here: a PCS's AC power is the sum of its clusters' powers.

Fast path: `BatteryPlant.step(setpoints_w, dt)` touches only plain floats on __slots__ objects
(SoC, limits, heat). Everything only a Modbus register image needs (cell voltages, temperatures
min/max with noise, SoH, alarm bits, state names) is computed on demand by `Cluster.measure()`
and `Pcs.measure()`, so the offline replay of millions of steps does not pay for it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from drivers import keys as K
from simulators.degradation import Effects

# LFP cell open-circuit voltage vs SoC, sampled every 5 % (0..100 %): flat middle, steep ends.
_OCV_5PCT = (
    2.80, 3.12, 3.19, 3.22, 3.245, 3.26, 3.27, 3.28, 3.285, 3.29, 3.295,
    3.30, 3.305, 3.31, 3.315, 3.325, 3.33, 3.335, 3.34, 3.37, 3.50,
)  # fmt: skip
# Resampled to 1 % steps once, so a lookup is an index and one multiply (no bisect per step).
_O = _OCV_5PCT
_OCV = tuple([_O[k // 5] + (_O[min(k // 5 + 1, 20)] - _O[k // 5]) * (k % 5) / 5 for k in range(101)])
_OCV = (*_OCV, _OCV[100])  # guard entry: the lookup at exactly 100 % reads index 101


def cell_ocv(soc: float) -> float:
    """LFP cell open-circuit voltage (V) at SoC fraction `soc` (clamped to [0, 1])."""
    x = 0.0 if soc < 0.0 else (100.0 if soc > 1.0 else soc * 100.0)
    i = int(x)
    return _OCV[i] + (_OCV[i + 1] - _OCV[i]) * (x - i)


# Alarm bits: SunSpec model 802 Evt1 bit positions (the canonical ALARMS bitfield).
ALARM_OVER_TEMP = 1 << 1
ALARM_OVER_TEMP_WARN = 1 << 2
ALARM_UNDER_TEMP = 1 << 3
ALARM_UNDER_TEMP_WARN = 1 << 4
ALARM_UNDER_SOC_WARN = 1 << 14
ALARM_OVER_SOC_WARN = 1 << 16
ALARM_VOLT_IMBALANCE_WARN = 1 << 17
ALARM_CONTACTOR = 1 << 20
ALARM_OTHER = 1 << 25
# PCS: SunSpec 701 Alrm bit used for a trip (no 701 bit means "tripped"; AC_DISCONNECT is closest).
ALARM_PCS_TRIP = 1 << 2


@dataclass(frozen=True, slots=True)
class ClusterParams:
    """One cluster's nameplate and model constants (defaults: 416s LFP, 314 Ah, ~418 kWh)."""

    capacity_wh: float = 418_000.0
    cells_series: int = 416
    nominal_v: float = 1331.2  # capacity_wh / nominal_v gives Ah
    c_rate: float = 0.5  # continuous current limit as a fraction of Ah
    resistance_ohm: float = 0.09  # pack DC resistance (cells + busbars)
    eta_charge: float = 0.96  # AC -> stored
    eta_discharge: float = 0.96  # stored -> AC
    taper_low: float = 0.08  # discharge limit falls linearly to 0 below this SoC fraction
    taper_high: float = 0.92  # charge limit falls linearly to 0 above this SoC fraction
    temp_derate: tuple[float, float, float, float] = (0.0, 10.0, 45.0, 55.0)  # zero, full, full, zero (C)
    coolant_c: float = 25.0
    thermal_j_per_k: float = 2.5e6  # heat capacity of the modules
    cooling_w_per_k: float = 1000.0  # liquid cooling conductance (tau ~ 42 min)
    fade_pct_per_cycle: float = 0.003  # SoH loss per equivalent full cycle (80 % near 6,700 cycles)
    cell_spread_v: float = 0.004  # healthy max-min cell spread in the flat region


class Cluster:
    """One rack string and its BMS. Call `step` with the AC power the PCS asks of it."""

    __slots__ = (
        "_cap_cycles",
        "_cool_eff",
        "_cooling",
        "_i_max",
        "_inv_heat_cap",
        "_rng",
        "capacity_wh",
        "charged_ac_wh",
        "current_a",
        "cycles",
        "discharged_ac_wh",
        "disconnected",
        "effects",
        "faulted",
        "id",
        "loss_wh",
        "max_charge_a",
        "max_charge_w",
        "max_discharge_a",
        "max_discharge_w",
        "noise",
        "ocv_v",
        "p",
        "power_w",
        "removed",
        "resistance_ohm",
        "spread_v",
        "stored_wh",
        "temp_c",
        "voltage_v",
    )

    def __init__(self, cid: str, params: ClusterParams, soc_pct: float, seed: int = 0, noise: bool = True):
        if not 0.0 <= soc_pct <= 100.0:
            raise ValueError(f"cluster {cid}: initial soc_pct must be within [0, 100], got {soc_pct!r}")
        self.id = cid
        self.p = params
        # Healthy clusters differ a little (resistance, cooling, cell spread): seeded, reproducible.
        self._rng = random.Random(f"{seed}:{cid}")
        r = self._rng
        self.resistance_ohm = params.resistance_ohm * r.uniform(0.95, 1.05)
        self._inv_heat_cap = 1.0 / params.thermal_j_per_k
        self._cooling = params.cooling_w_per_k * r.uniform(0.95, 1.05)
        self.spread_v = params.cell_spread_v * r.uniform(0.8, 1.25)
        self.noise = noise
        self.effects = Effects()
        self._cool_eff = self._cooling  # cooling conductance after degradation effects (W/K)
        self.capacity_wh = params.capacity_wh
        self._i_max = params.c_rate * params.capacity_wh / params.nominal_v
        self.stored_wh = params.capacity_wh * soc_pct / 100.0
        self.charged_ac_wh = 0.0
        self.discharged_ac_wh = 0.0
        self.loss_wh = 0.0
        self.cycles = 0.0
        self._cap_cycles = 0.0
        self.temp_c = params.coolant_c
        self.power_w = 0.0
        self.current_a = 0.0
        self.faulted = False
        self.removed = False
        self.disconnected = False  # contactor opened by the controller (SetOp DISCONNECT)
        self.ocv_v = 0.0
        self.voltage_v = 0.0
        self.max_charge_a = self.max_discharge_a = 0.0
        self.max_charge_w = self.max_discharge_w = 0.0
        self._update_limits()
        self.voltage_v = self.ocv_v  # at rest: open-circuit voltage

    # --- state --------------------------------------------------------------------------------
    @property
    def soc_pct(self) -> float:
        return 100.0 * self.stored_wh / self.capacity_wh

    @property
    def usable(self) -> bool:
        """May a PCS draw on it? (not faulted, not pulled out, contactor closed)"""
        return not (self.faulted or self.removed or self.disconnected)

    def set_effects(self, e: Effects) -> None:
        """Apply slow degradation (simulators.degradation); stored energy is kept, capped by capacity."""
        self.effects = e
        self._cool_eff = self._cooling * e.cooling_factor
        self._update_capacity()
        self._update_limits()

    def _update_capacity(self) -> None:
        p = self.p
        self._cap_cycles = self.cycles
        fade = max(0.05, self.effects.capacity_factor - p.fade_pct_per_cycle * self.cycles / 100.0)
        self.capacity_wh = p.capacity_wh * fade
        if self.stored_wh > self.capacity_wh:
            self.stored_wh = self.capacity_wh

    def _update_limits(self) -> None:
        p = self.p
        soc = self.stored_wh / self.capacity_wh
        self.ocv_v = ocv = cell_ocv(soc) * p.cells_series
        if not self.usable:
            self.max_charge_a = self.max_discharge_a = 0.0
            self.max_charge_w = self.max_discharge_w = 0.0
            self.voltage_v = ocv
            return
        t0, t1, t2, t3 = p.temp_derate
        t = self.temp_c
        if t <= t0 or t >= t3:
            tf = 0.0
        elif t < t1:
            tf = (t - t0) / (t1 - t0)
        elif t > t2:
            tf = (t3 - t) / (t3 - t2)
        else:
            tf = 1.0
        fd = soc / p.taper_low if soc < p.taper_low else 1.0
        fc = (1.0 - soc) / (1.0 - p.taper_high) if soc > p.taper_high else 1.0
        if fd < 0.0:
            fd = 0.0
        if fc < 0.0:
            fc = 0.0
        im = self._i_max * tf
        self.max_discharge_a = im * fd
        self.max_charge_a = im * fc
        self.max_discharge_w = self.max_discharge_a * ocv
        self.max_charge_w = self.max_charge_a * ocv

    def step(self, power_w: float, dt: float) -> float:
        """Deliver `power_w` (AC, + = discharge) for `dt` s within the BMS limits; returns actual W."""
        p = self.p
        if self.usable:
            if power_w > self.max_discharge_w:
                power_w = self.max_discharge_w
            elif power_w < -self.max_charge_w:
                power_w = -self.max_charge_w
        else:
            power_w = 0.0
        h = dt / 3600.0
        if power_w >= 0.0:
            de = power_w * h / p.eta_discharge
            if de > self.stored_wh:  # cannot deliver more than is stored
                de = self.stored_wh
                power_w = de * p.eta_discharge / h if h > 0.0 else 0.0
            self.discharged_ac_wh += power_w * h
            loss = de - power_w * h
            self.stored_wh -= de
            self.cycles = self.discharged_ac_wh / p.capacity_wh
        else:
            de = -power_w * h * p.eta_charge
            room = self.capacity_wh - self.stored_wh
            if de > room:
                de = room if room > 0.0 else 0.0
                power_w = -de / (p.eta_charge * h) if h > 0.0 else 0.0
            self.charged_ac_wh -= power_w * h
            loss = -power_w * h - de
            self.stored_wh += de
        self.loss_wh += loss
        # Lumped thermal model: losses heat the modules, liquid cooling pulls them to coolant.
        heat_w = loss / h if h > 0.0 else 0.0
        self.temp_c += (heat_w - (self.temp_c - p.coolant_c) * self._cool_eff) * dt * self._inv_heat_cap
        self.power_w = power_w
        if p.fade_pct_per_cycle and self.cycles - self._cap_cycles > 0.01:
            self._update_capacity()  # fade is slow: refresh every 1/100 cycle, not every step
        self._update_limits()
        # Terminal voltage with IR drop at the end-of-step OCV (with coarse steps, the OCV of the
        # step's start would put the whole step's SoC change into the next load step's dV/dI);
        # one fixed-point pass is plenty (drop is ~1 %).
        ocv = self.ocv_v
        r = self.resistance_ohm * self.effects.resistance_factor
        i = power_w / ocv if ocv > 0.0 else 0.0
        v = ocv - i * r
        self.current_a = power_w / v if v > 0.0 else 0.0
        self.voltage_v = ocv - self.current_a * r
        return power_w

    # --- what the BMS reports ---------------------------------------------------------------
    def state(self) -> str:
        if self.removed or (self.disconnected and not self.faulted):
            return K.STATE_OFF
        if self.faulted:
            return K.STATE_FAULT
        return K.STATE_ONLINE if abs(self.power_w) > 1.0 else K.STATE_STANDBY

    def alarms(self) -> int:
        a = 0
        t = self.temp_c
        if t >= 55.0:
            a |= ALARM_OVER_TEMP
        elif t >= 45.0:
            a |= ALARM_OVER_TEMP_WARN
        if t <= 0.0:
            a |= ALARM_UNDER_TEMP
        elif t <= 5.0:
            a |= ALARM_UNDER_TEMP_WARN
        soc = self.soc_pct
        if soc < 5.0:
            a |= ALARM_UNDER_SOC_WARN
        if soc > 98.0:
            a |= ALARM_OVER_SOC_WARN
        if self._cell_spread() > 0.1:
            a |= ALARM_VOLT_IMBALANCE_WARN
        if self.faulted:
            a |= ALARM_OTHER | ALARM_CONTACTOR
        return a

    @property
    def pack_resistance_ohm(self) -> float:
        """True pack resistance including degradation (what a BMS resistance limit is about)."""
        return self.resistance_ohm * self.effects.resistance_factor

    def _cell_spread(self) -> float:
        soc = self.stored_wh / self.capacity_wh
        edge = max(0.0, 0.1 - soc, soc - 0.9) * 10.0  # cells diverge on the steep ends of the curve
        return self.spread_v * (1.0 + 4.0 * edge) + self.effects.cell_offset_v

    def measure(self) -> dict[str, float | int | str]:
        """Everything this BMS reports, keyed by canonical point keys (drivers/keys.py)."""
        n = self._rng.gauss if self.noise else (lambda mu, sigma: mu)
        cells = self.p.cells_series
        avg = self.voltage_v / cells
        spread = self._cell_spread()
        return {
            K.SOC_PCT: self.soc_pct,
            K.SOH_PCT: 100.0 * self.capacity_wh / self.p.capacity_wh,
            K.VOLTAGE_V: n(self.voltage_v, 0.05),
            K.CURRENT_A: self.current_a,
            K.POWER_W: self.power_w,
            K.CELL_V_MAX: n(avg + 0.4 * spread, 0.0005),
            K.CELL_V_MIN: n(avg - 0.6 * spread, 0.0005),
            K.TEMP_MAX_C: n(self.temp_c + 1.5 + 0.2 * (self.temp_c - self.p.coolant_c), 0.05),
            K.TEMP_MIN_C: n(self.temp_c - 1.0, 0.05),
            K.MAX_CHARGE_A: self.max_charge_a,
            K.MAX_DISCHARGE_A: self.max_discharge_a,
            K.STATE: self.state(),
            K.ALARMS: self.alarms(),
            K.CYCLES: self.cycles,
            K.CAPACITY_WH: self.p.capacity_wh,
            # device-specific points of SunSpec 802 profiles (nameplate, charge status)
            "capacity_ah": self.p.capacity_wh / self.p.nominal_v,
            "rated_charge_w": self._i_max * self.p.nominal_v,
            "rated_discharge_w": self._i_max * self.p.nominal_v,
            "charge_status": self.charge_status(),
            K.CONNECT_CMD: K.DISCONNECT if self.disconnected else K.CONNECT,
        }

    def charge_status(self) -> int:
        """SunSpec 802 ChaSt: 2 EMPTY, 3 DISCHARGING, 4 CHARGING, 5 FULL, 6 HOLDING (1 OFF)."""
        if not self.usable:
            return 1
        if self.power_w > 1.0:
            return 3
        if self.power_w < -1.0:
            return 4
        if self.max_discharge_a == 0.0:
            return 2
        return 5 if self.max_charge_a == 0.0 else 6

    # --- fault injection --------------------------------------------------------------------
    def fault(self) -> None:
        self.faulted = True
        self._update_limits()

    def clear_fault(self) -> None:
        self.faulted = False
        self._update_limits()

    def set_connected(self, on: bool) -> None:
        """SunSpec 802 SetOp from the controller: open or close the cluster's contactor."""
        self.disconnected = not on
        self._update_limits()

    def remove(self) -> None:
        self.removed = True
        self._update_limits()

    def re_add(self) -> None:
        self.removed = False
        self._update_limits()


@dataclass(frozen=True, slots=True)
class PcsParams:
    rated_w: float
    tau_s: float = 0.1  # first-order response time constant
    revert_s: float = 30.0  # default revert timer (0 = off) until the controller writes one
    # Grid-power (PCC) control, the vendor option of pcs_vendor_acme_pcc: the local loop samples the
    # site meter at most every `pcc_sample_s` (a CT/meter update of 20 ms), acts on the reading of
    # the sample before (one sample of meter latency), and asks for its own output plus its share
    # of the grid error times a gain. The output still follows through the same first-order lag
    # (tau_s). Per sample the fleet then moves by g x the error one sample old, g = gain x
    # (1 - exp(-T / tau)): the closed loop z^2 - z + g = 0 is critically damped (fastest without
    # overshoot) at g = 1/4, which is the default gain (`pcc_gain` None): 1.38 at T 20 ms, tau 0.1 s.
    pcc_sample_s: float = 0.02
    pcc_gain: float | None = None

    def pcc_loop_gain(self, sample_s: float) -> float:
        """The local loop's gain at this sample period (see above)."""
        if self.pcc_gain is not None:
            return self.pcc_gain
        a = 1.0 - math.exp(-sample_s / self.tau_s) if self.tau_s > 0.0 else 1.0
        return 0.25 / a


@dataclass(frozen=True, slots=True)
class PccCommand:
    """What a controller writes to a PCS for grid-power control (see PcsParams and Pcs.write_pcc)."""

    target_w: float  # grid import target (import positive)
    ramp_w_per_s: float  # the reference moves toward the target by at most this per second
    share: float  # this PCS's fraction of the correction (0..1)
    max_discharge_w: float  # output limits in the mode (magnitudes)
    max_charge_w: float
    grid_min_w: float = 0.0  # the reference never goes below this (0: no export)


class Pcs:
    """A PCS: follows its setpoint (first order), clamps to rating and healthy cluster limits.

    In grid-power (PCC) mode (`write_pcc`) it ignores the setpoint and runs its own loop on the
    site meter (`sample`, called by BatteryPlant.step at most every `pcc_sample_s`): a grid
    reference moves toward the target at the ramp rate (never below grid_min_w), and the PCS
    asks for its output plus share x gain x (meter - reference), within the mode's limits. The
    revert timer covers the mode too: quiet for revert_s -> mode off, setpoint WSetRvrt (0 W).
    """

    __slots__ = (
        "_alpha",
        "_alpha_dt",
        "_pcc_cmd",
        "_pcc_gain",
        "_pcc_gain_dt",
        "_pcc_last",
        "clusters",
        "ct_gain",
        "enabled",
        "id",
        "last_write_t",
        "params",
        "pcc",
        "pcc_grid_w",
        "pcc_on",
        "pcc_ref_w",
        "power_w",
        "revert_enabled",
        "revert_s",
        "revert_to_w",
        "reverted",
        "setpoint_w",
        "tau_s",
        "tripped",
    )

    def __init__(self, pid: str, params: PcsParams, clusters: list[Cluster]):
        if params.rated_w <= 0:
            raise ValueError(f"pcs {pid}: rated_w must be > 0, got {params.rated_w!r}")
        if params.tau_s < 0:
            raise ValueError(f"pcs {pid}: tau_s must be >= 0, got {params.tau_s!r}")
        self.id = pid
        self.params = params
        self.clusters = clusters
        self.tau_s = params.tau_s
        self.revert_s = params.revert_s
        self.setpoint_w = 0.0
        self.enabled = True
        self.last_write_t = 0.0
        self.power_w = 0.0
        self.reverted = False
        self.revert_enabled = True  # SunSpec 704 WSetEnaRvrt
        self.revert_to_w = 0.0  # SunSpec 704 WSetRvrt: what the PCS falls back to
        self.tripped = False
        self._alpha = 1.0
        self._alpha_dt = -1.0
        self.pcc_on = False  # in grid-power (PCC) control
        self.pcc: PccCommand | None = None
        self.pcc_ref_w = math.nan  # ramp-limited grid reference (NaN until the first sample)
        self.pcc_grid_w = math.nan  # the meter reading the loop acts on
        self._pcc_last = math.nan  # the previous sample's meter reading (one sample of latency)
        self._pcc_cmd = 0.0  # output the loop asks for, held between samples
        self._pcc_gain = 1.0
        self._pcc_gain_dt = -1.0
        self.ct_gain = 1.0  # its meter reads this x the grid (fault injection: -1 = CT reversed)

    def write_pcc(self, cmd: PccCommand | None, t: float) -> None:
        """A controller wrote the grid-power commands at plant time `t` (None: back to setpoint mode).

        Also the revert-timer heartbeat. Entering the mode starts the reference at the meter reading.
        """
        if cmd is not None:
            for name in ("target_w", "ramp_w_per_s", "share", "max_discharge_w", "max_charge_w", "grid_min_w"):
                v = getattr(cmd, name)
                if not math.isfinite(v):
                    raise ValueError(f"pcs {self.id}: pcc {name} must be finite, got {v!r}")
            if cmd.ramp_w_per_s < 0 or not 0.0 <= cmd.share <= 1.0 or cmd.max_discharge_w < 0 or cmd.max_charge_w < 0:
                raise ValueError(f"pcs {self.id}: pcc ramp and limits must be >= 0 and share within [0, 1]: {cmd}")
            if not self.pcc_on:
                self.pcc_ref_w = self._pcc_last = math.nan
                self._pcc_cmd = self.power_w
            self.pcc_on = True
        else:
            if self.pcc_on:
                self.setpoint_w = self.power_w  # bumpless: hold until a setpoint is written
            self.pcc_on = False
        self.pcc = cmd
        self.last_write_t = t
        self.reverted = False

    def sample(self, meter_w: float, dt: float) -> None:
        """One step of the local loop: the meter reads `meter_w` now; `dt` s since the last sample."""
        c = self.pcc
        if not self.pcc_on or c is None or self.tripped:
            return
        meter_w *= self.ct_gain
        prev = self._pcc_last
        self._pcc_last = meter_w
        if prev != prev:  # first sample in the mode: the reference starts where the grid is
            self.pcc_ref_w = prev = meter_w
            if prev < c.grid_min_w:
                self.pcc_ref_w = c.grid_min_w
        self.pcc_grid_w = prev
        ref = self.pcc_ref_w
        step = c.ramp_w_per_s * dt
        tgt = c.target_w if c.target_w > c.grid_min_w else c.grid_min_w
        if tgt > ref + step:
            ref += step
        elif tgt < ref - step:
            ref -= step
        else:
            ref = tgt
        if ref < c.grid_min_w:
            ref = c.grid_min_w
        self.pcc_ref_w = ref
        if dt != self._pcc_gain_dt:
            self._pcc_gain_dt = dt
            self._pcc_gain = self.params.pcc_loop_gain(dt)
        cmd = self.power_w + self._pcc_gain * c.share * (prev - ref)
        if cmd > c.max_discharge_w:
            cmd = c.max_discharge_w
        elif cmd < -c.max_charge_w:
            cmd = -c.max_charge_w
        self._pcc_cmd = cmd

    def write_setpoint(self, w: float, t: float) -> None:
        """A controller wrote the setpoint at plant time `t` (also the revert-timer heartbeat)."""
        if not math.isfinite(w):
            raise ValueError(f"pcs {self.id}: setpoint_w must be finite, got {w!r}")
        self.setpoint_w = w
        self.last_write_t = t
        self.reverted = False

    def limits(self) -> tuple[float, float]:
        """(max charge W, max discharge W) as magnitudes: rating and healthy clusters' BMS limits."""
        chg = dis = 0.0
        for c in self.clusters:
            if c.usable:
                chg += c.max_charge_w
                dis += c.max_discharge_w
        r = self.params.rated_w
        return (chg if chg < r else r), (dis if dis < r else r)

    def step(self, t: float, dt: float, island_w: float | None = None) -> float:
        """Advance `dt` s (t = plant time after the step). In island mode follow `island_w` at once."""
        chg, dis = self.limits()
        if self.tripped:
            target = 0.0
            self.power_w = 0.0
        elif island_w is not None:
            target = island_w  # grid-forming: the load sets the power, no first-order lag
        else:
            quiet = t - self.last_write_t > self.revert_s
            if quiet and self.revert_enabled and self.revert_s > 0.0 and not self.reverted:
                self.reverted = True  # the controller went quiet: fall back (0 W: safe state)
                self.setpoint_w = self.revert_to_w
                self.pcc_on = False  # and leave grid-power control
            if self.pcc_on:
                target = self._pcc_cmd if self.enabled else 0.0
            else:
                target = self.setpoint_w if self.enabled else 0.0
        if target > dis:
            target = dis
        elif target < -chg:
            target = -chg
        if island_w is not None or self.tripped:
            p = target
        else:
            if dt != self._alpha_dt:
                self._alpha_dt = dt
                self._alpha = 1.0 - math.exp(-dt / self.tau_s) if self.tau_s > 0.0 else 1.0
            p = self.power_w + (target - self.power_w) * self._alpha
            if p > dis:
                p = dis
            elif p < -chg:
                p = -chg
        # Split over healthy clusters in proportion to what each allows in that direction, so
        # they reach their limits together; faulted/removed ones get nothing. (p is already within
        # the rating and the sum of these limits, so no share exceeds its cluster's limit.)
        discharge = p >= 0.0
        lim = _sum_lim(self.clusters, discharge)
        k = p / lim if lim > 0.0 else 0.0
        total = 0.0
        for c in self.clusters:
            if not c.usable:
                total += c.step(0.0, dt)
            else:
                total += c.step(k * (c.max_discharge_w if discharge else c.max_charge_w), dt)
        self.power_w = total
        return total

    def state(self) -> str:
        if self.tripped:
            return K.STATE_FAULT
        if not any(c.usable for c in self.clusters):
            return K.STATE_OFF
        return K.STATE_ONLINE if abs(self.power_w) > 1.0 else K.STATE_STANDBY

    def revert_remaining_s(self, t: float) -> float:
        if not self.revert_enabled or self.revert_s <= 0.0 or self.reverted:
            return 0.0
        return max(0.0, self.revert_s - (t - self.last_write_t))

    def measure(self, t: float, voltage_v: float, frequency_hz: float) -> dict[str, float | int | str]:
        """What this PCS reports at plant time `t` (canonical keys plus SunSpec 70x extras)."""
        rated = self.params.rated_w
        return {
            K.POWER_W: self.power_w,
            K.SETPOINT_W: self.setpoint_w,
            K.SETPOINT_ENABLE: 1 if self.enabled else 0,
            K.REVERT_S: self.revert_s,
            K.RATED_W: rated,
            K.STATE: self.state(),
            K.FREQUENCY_HZ: frequency_hz,
            K.VOLTAGE_V: voltage_v,
            K.ALARMS: ALARM_PCS_TRIP if self.tripped else 0,
            "operating_state": 0 if self.tripped else 1,
            "rated_charge_w": rated,
            "rated_discharge_w": rated,
            "setpoint_mode": 1,  # watts
            "revert_setpoint_w": self.revert_to_w,
            "revert_enable": 1 if self.revert_enabled else 0,
            "revert_remaining_s": self.revert_remaining_s(t),
            "heartbeat": int(t) & 0xFFFF,  # vendor maps: a counter that proves the PCS is alive
            K.PCC_ACTIVE: 1 if self.pcc_on and not self.tripped else 0,
            K.PCC_GRID_W: self.pcc_grid_w if self.pcc_grid_w == self.pcc_grid_w else 0.0,
            K.PCC_REF_W: self.pcc_ref_w if self.pcc_on and self.pcc_ref_w == self.pcc_ref_w else 0.0,
            K.PCC_SAMPLE_MS: round(self.params.pcc_sample_s * 1000.0),
            K.PCC_ENABLE: 1 if self.pcc_on else 0,
        }

    def trip(self) -> None:
        self.tripped = True
        self.power_w = 0.0

    def reset(self) -> None:
        self.tripped = False


def _sum_lim(clusters: list[Cluster], discharge: bool) -> float:
    s = 0.0
    for c in clusters:
        if c.usable:
            s += c.max_discharge_w if discharge else c.max_charge_w
    return s


@dataclass(slots=True)
class BatteryPlant:
    """All PCS units and their clusters. `t` is plant time in seconds (advanced by `step`)."""

    pcs: dict[str, Pcs]
    clusters: dict[str, Cluster]
    t: float = 0.0
    _pcs_list: list[Pcs] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._pcs_list = list(self.pcs.values())

    @staticmethod
    def build(
        wiring: Mapping[str, tuple[float, list[str]]],
        cluster_params: ClusterParams | Mapping[str, ClusterParams] = ClusterParams(),
        soc_pct: float | Mapping[str, float] = 50.0,
        tau_s: float = 0.1,
        revert_s: float = 30.0,
        seed: int = 0,
        noise: bool = True,
        pcc_sample_s: float = 0.02,
        pcc_gain: float | None = None,
    ) -> BatteryPlant:
        """wiring: pcs id -> (rated W, [cluster ids]). Per-cluster params/SoC may be mappings."""
        if not 0.0 < pcc_sample_s <= 1.0:
            raise ValueError(f"pcc_sample_s must be within (0, 1] s, got {pcc_sample_s!r}")
        clusters: dict[str, Cluster] = {}
        pcs: dict[str, Pcs] = {}
        for pid, (rated, cids) in wiring.items():
            members = []
            for cid in cids:
                cp = cluster_params if isinstance(cluster_params, ClusterParams) else cluster_params[cid]
                s = soc_pct if isinstance(soc_pct, (int, float)) else soc_pct[cid]
                clusters[cid] = Cluster(cid, cp, float(s), seed, noise)
                members.append(clusters[cid])
            pcs[pid] = Pcs(pid, PcsParams(rated, tau_s, revert_s, pcc_sample_s, pcc_gain), members)
        return BatteryPlant(pcs, clusters)

    def write(self, pcs_id: str, setpoint_w: float) -> None:
        self.pcs[pcs_id].write_setpoint(setpoint_w, self.t)

    def write_pcc(self, pcs_id: str, cmd: PccCommand | None) -> None:
        """Grid-power (PCC) commands for one PCS now (None: back to setpoint mode)."""
        self.pcs[pcs_id].write_pcc(cmd, self.t)

    def limits(self) -> tuple[float, float]:
        """Site (max charge W, max discharge W) over PCS units that are not tripped."""
        chg = dis = 0.0
        for p in self._pcs_list:
            if not p.tripped:
                c, d = p.limits()
                chg += c
                dis += d
        return chg, dis

    def step(
        self,
        setpoints_w: Mapping[str, float] | None,
        dt: float,
        island_w: float | None = None,
        net_w: float | None = None,
    ) -> float:
        """Write `setpoints_w` (if given) now, advance `dt` s; returns total battery AC power (W).

        island_w: grid is down; the PCS units carry this net demand (load - pv) together, each in
        proportion to its available limit, instead of following setpoints.
        net_w: the site's load - pv over the step (grid up). PCS units in grid-power (PCC) mode need
        it: their meter reads net_w - battery. The step is then cut into sub-steps no longer than
        the shortest PCC sample period, each PCS in the mode samples the meter at every sub-step,
        and the return value is the battery's mean power over the step (what a meter integrates).
        A setpoint written here takes a PCS out of PCC mode only through write_pcc(None).
        """
        if setpoints_w:
            for pid, w in setpoints_w.items():
                # in grid-power control this is only the revert-timer heartbeat: Pcs.step follows the loop
                self.pcs[pid].write_setpoint(w, self.t)
        if island_w is None and net_w is not None:
            sample = math.inf
            for p in self._pcs_list:
                if p.pcc_on and p.params.pcc_sample_s < sample:
                    sample = p.params.pcc_sample_s
            if sample < math.inf:
                return self._step_pcc(dt, net_w, sample)
        self.t += dt
        t = self.t
        total = 0.0
        if island_w is None:
            for p in self._pcs_list:
                total += p.step(t, dt)
            return total
        chg, dis = self.limits()
        lim = dis if island_w >= 0.0 else chg
        for p in self._pcs_list:
            if p.tripped or lim <= 0.0:
                total += p.step(t, dt, 0.0)
                continue
            c, d = p.limits()
            total += p.step(t, dt, island_w * ((d if island_w >= 0.0 else c) / lim))
        return total

    def _step_pcc(self, dt: float, net_w: float, sample_s: float) -> float:
        # Steps from epoch timestamps carry their float rounding: a 0.1 s trace step at 1.8e9 s is
        # 0.0999999 or 0.10000014 s. Cut by an exact "no longer than the sample", the latter became 6
        # samples of 16.7 ms instead of 5 of 20 ms: 40 % of a replay's steps ran the PCS's loop faster
        # than the PCS samples (issue 14's PCC analysis). A sample may be 0.1 % longer (20 us at 20 ms:
        # the float spacing at epoch times is 0.24 us, a real PCS's sample jitter far more than 20 us).
        n = max(1, math.ceil(dt / sample_s - 1e-3))
        h = dt / n
        pcs = self._pcs_list
        energy = 0.0
        for _ in range(n):
            bat = 0.0
            for p in pcs:
                bat += p.power_w
            meter = net_w - bat
            for p in pcs:
                if p.pcc_on:
                    p.sample(meter, h)
            self.t += h
            t = self.t
            total = 0.0
            for p in pcs:
                total += p.step(t, h)
            energy += total * h
        return energy / dt if dt > 0.0 else 0.0

    def stored_wh(self) -> float:
        return sum(c.stored_wh for c in self.clusters.values())
