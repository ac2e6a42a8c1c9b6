"""decide(): one control cycle. Controllers narrow the window of site battery power by priority.

  1 device limits   2 grid-outage backup   3 backup reserve / SoC window   4 no export
  5 ramp support    8 operator (override, idle, conservative)   6 demand shaving
  7 time-of-use     9 balancing / idle

Bounds 1-5 are safety and grid support: nothing below can widen them. The operator's wish
sits below them and above the economic controllers 6-9, which run only in mode "auto". The
final setpoint is the deciding controller's target clamped into the window; `decided_by`
names the controller whose target, or whose bound, set it. Plan.bounds holds the device
limits and then every bound that narrowed the window this cycle, in priority order.
Ramp support in grid-power (PCC) control: when trusted PCS are configured for it (PcsSnapshot.
grid_control), bound 5 is not applied here; the plan's final battery power becomes a grid import
target (Plan.grid_control) that those PCS approach at the ramp limit on their own meter, each with
its share of the correction and its own window (device limits and reserve), and a grid floor of 0 W
when the site may not export. Bounds 1-4 and 6-9 are computed as always, so the target carries the
same priorities. A bad measurement or an outage hands every PCS back its setpoint.
Failsafe: a grid, load or PV measurement that is not good puts the policy in conservative
mode (hold, no arbitrage, no shaving) with the alarm "measurement_invalid"; untrusted
clusters and PCS are simply absent from the fleet (see fleet.py).

Pure: a function of (snapshot, state, config, operator state, prices); no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import replace

from agent.control.balance import balance_target_w
from agent.control.demand import (
    DAY_S,
    allowed_grid_w,
    close_interval,
    headroom_wh,
    keep_wh,
    slots_per_day,
    target_w,
)
from agent.control.demand import MARGIN as DEMAND_MARGIN
from agent.control.dispatch import dispatch_fleet, pcs_shares
from agent.control.fleet import FleetMemo, build_fleet
from agent.control.prices import Prices
from agent.control.ramp import PCC_NO_FLOOR_W, PCC_RAMP_FRACTION, SETPOINT_RAMP_FRACTION, ramp_window
from agent.control.reserve import reserve_floor_pct
from agent.control.state import ROLE_CHARGE, ROLE_DISCHARGE, ROLE_HOLD, ROLE_NONE, ControllerState
from agent.control.tou import plan_slot
from agent.model.config import ControlConfig
from agent.model.operator import OperatorState
from agent.model.plan import Bound, GridControl, PccLimits, Plan
from agent.model.snapshot import SiteSnapshot
from drivers.reading import Quality

INF = math.inf
NAN = math.nan
DAYS_PER_MONTH = 30.4
_GOOD = Quality.GOOD
_isfinite = math.isfinite
# The interval's running mean is a noisy forecast of its rest while the GPU load swings by megawatts
# within seconds: early in the interval a few swings move it by hundreds of kW, and the demand bound
# (which scales the forecast's changes by length / time left) then flips the battery between charge
# and discharge, paying wear and losses for nothing. Blending in the previous interval's average as
# if it were this many seconds of data steadies the forecast until the interval has its own.
FORECAST_PRIOR_S = 300.0
# Charging fills the headroom under the demand target greedily (see "tou_charge" below); what it takes
# cannot be given back if the load then steps up late in the interval, so it keeps this much further
# below the target than shaving does (DEMAND_MARGIN).
CHARGE_MARGIN = 0.02

REASONS = {
    "device_limits": "at the limit of what the trusted clusters and PCS can do",
    "soc_max": "clusters are full (soc_max_pct)",
    "reserve": "held by the backup reserve (SoC floor) or the SoC ceiling",
    "no_export": "limited so the site does not export to the grid",
    "ramp": "smoothing the grid import within the ramp limit while the load swings",
    "outage": "grid outage: the battery carries the site load",
    "failsafe": "a grid, load or PV measurement is bad: holding (conservative)",
    "override": "operator override",
    "idle": "operator set mode idle",
    "conservative": "operator set mode conservative: holding within the reserve",
    "demand": "holding the demand-interval average import at or below the target",
    "tou_charge": "charging in a cheap price period",
    "tou_discharge": "discharging in an expensive price period",
    "tou_hold": "holding the charge for a dearer price period",
    "pv_surplus": "storing PV surplus",
    "balance": "drifting toward the SoC target",
}


def decide(
    snap: SiteSnapshot,
    st: ControllerState,
    cfg: ControlConfig,
    op: OperatorState,
    prices: Prices | None,
    allow_export: bool,
    fleet_memo: FleetMemo | None = None,
) -> tuple[Plan, ControllerState]:
    """One cycle's plan and the state for the next. `fleet_memo`: see FleetMemo (the replay's)."""
    now = snap.t_mono
    dt = now - st.t_mono if _isfinite(now) else NAN
    f = build_fleet(snap, op.maintenance, fleet_memo)
    alarms: list[str] = []
    if not f.ids:
        alarms.append("no_battery_available")

    g, ld, pv = snap.grid_w, snap.load_w, snap.pv_w
    gv, lv, pvv = g.value, ld.value, pv.value
    grid_ok = g.quality is _GOOD and _isfinite(gv)
    net_ok = ld.quality is _GOOD and pv.quality is _GOOD and _isfinite(lv) and _isfinite(pvv)
    net = lv - pvv if net_ok else NAN
    meas_ok = grid_ok and net_ok

    floor = reserve_floor_pct(cfg, op, f.capacity_wh)
    ceil = cfg.soc_max_pct

    # --- demand interval and price slot bookkeeping (the wall clock aligns both) ---
    length = cfg.demand_interval_s
    t = snap.t_wall
    secs = t.hour * 3600.0 + t.minute * 60.0 + t.second + t.microsecond * 1e-6
    slot = int(secs // length)
    spd = slots_per_day(length)
    key = t.toordinal() * spd + slot
    into = secs - slot * length
    iv_len = min(length, DAY_S - slot * length)
    # a reading stands for the time since the previous one, up to one interval (slow replays too)
    sample = meas_ok and snap.grid_up and 0.0 < dt <= length  # False for NaN
    imp = gv if gv > 0.0 else 0.0
    if key == st.iv_key:
        iv_grid, iv_net, cov = st.iv_grid_ws, st.iv_net_ws, st.iv_covered_s
        if sample:
            iv_grid += imp * dt
            iv_net += net * dt
            cov += dt
        month, peaks, profile, shave = st.month, st.peaks, st.profile, st.shave_floor_w
        rate = st.iv_rate
        role, tou_end, raise_w, tou_price = st.tou_role, st.tou_end_mono, st.tou_raise_w, st.tou_price
        spread, keep = st.spread, st.keep_wh
    else:
        closing = st
        new_part = into if sample and dt > into else (dt if sample else 0.0)
        if sample and st.iv_key >= 0:
            old_part = dt - new_part
            closing = replace(
                st,
                iv_grid_ws=st.iv_grid_ws + imp * old_part,
                iv_net_ws=st.iv_net_ws + net * old_part,
                iv_covered_s=st.iv_covered_s + old_part,
            )
        month = t.year * 12 + t.month - 1
        budget_wh = max(0.0, ceil - floor) * 0.01 * f.capacity_wh * cfg.discharge_efficiency
        if prices is not None:
            rate = prices.demand_rate(t)
            rate = rate if _isfinite(rate) and rate > 0.0 else 0.0
        else:
            rate = 1.0 if cfg.demand_target_w > 0.0 else 0.0
        spread = st.spread  # from the previous slot's price plan (NaN on the first)
        hours_above = rate / (DAYS_PER_MONTH * spread) if rate > 0.0 and spread > 0.0 else NAN
        peaks, profile, shave = close_interval(
            closing, length, spd, month, budget_wh, f.max_dis_w, hours_above
        )
        iv_grid, iv_net, cov = imp * new_part, (net * new_part if sample else 0.0), new_part
        role, tou_end, raise_w, tou_price = ROLE_NONE, NAN, 0.0, NAN
        if prices is not None and cfg.tou_enabled:
            sp = plan_slot(t, into, length, prices, cfg, rate)
            role, tou_end, tou_price = sp.role, now + sp.end_s, sp.price
            if sp.raise_ok and f.capacity_wh > 0.0:
                # Raise only by what the headroom under the target (on the last day's profile) cannot
                # fill over the rest of the run: where the fleet fills anyway, a higher peak buys nothing.
                # At most the even rate that fills the fleet over the whole run (what raise_ok priced),
                # so a fleet still short near the run's end does not buy a steep peak in the last slots.
                need = max(0.0, ceil * 0.01 * f.capacity_wh - f.energy_wh) / cfg.charge_efficiency
                tgt0 = target_w(peaks, shave, rate, cfg.demand_target_w) * (1.0 - DEMAND_MARGIN)
                room = headroom_wh(profile, slot, math.ceil(sp.end_s / length), tgt0, f.max_chg_w, length)
                if need > room:
                    raise_w = min((need - room) * 3600.0 / max(sp.end_s, length), need * 3600.0 / sp.run_s)
            spread = sp.spread
        keep = keep_wh(
            profile, slot, target_w(peaks, shave, rate, cfg.demand_target_w), length, cfg.discharge_efficiency
        )

    # --- 1 device limits ---
    lo, hi = -f.max_chg_w, f.max_dis_w
    bounds = [Bound("device_limits", lo, hi, "trusted clusters' BMS limits, capped by PCS ratings")]
    lo_src = hi_src = "device_limits"
    soc = f.soc_pct
    cap = f.capacity_wh
    pcc: set[str] | None = None  # PCS the ramp support is delegated to (grid-power control)

    if not snap.grid_up:
        # --- 2 outage: the battery is the UPS; the reserve is there to be used ---
        f.apply_window(-1.0, ceil)
        if -f.chg_w != lo:
            lo = -f.chg_w
            lo_src = "soc_max"
            bounds.append(Bound("soc_max", lo, hi, "no charge above soc_max_pct"))
        mode = "outage"
        alarms.append("grid_outage_backup")
        if net_ok:
            target, src = net, "outage"
        else:
            bw = snap.battery_w
            target, src = (bw if _isfinite(bw) else 0.0), "outage"
            alarms.append("measurement_invalid")
        if target > hi:
            alarms.append("backup_shortfall")
        weight_floor = cfg.soc_min_pct
    else:
        weight_floor = floor
        # --- 3 reserve floor and SoC ceiling, per cluster ---
        f.apply_window(floor, ceil)
        a, b = -f.chg_w, f.dis_w
        if a != lo or b != hi:
            lo_src = "reserve" if a != lo else lo_src
            hi_src = "reserve" if b != hi else hi_src
            lo, hi = a, b
            bounds.append(Bound("reserve", lo, hi, f"SoC floor {floor:.2f} %, ceiling {ceil:.2f} %"))
        if floor > ceil:
            alarms.append("reserve_exceeds_fleet")
        # Ramp support is delegated to PCS in grid-power (PCC) control when any trusted one is
        # configured for it and the measurements it is checked against are good; otherwise (and in
        # an outage) every PCS follows its setpoint and bound 5 below holds the ramp.
        pcc = (
            {p.id for p in snap.pcs if p.grid_control}.intersection(f.pcs_ids)
            if meas_ok and cfg.ramp_limit_w_per_s > 0.0 and snap.has_grid_control
            else None
        )
        # --- 4 no export ---
        if not allow_export:
            cap_w = net if net_ok else 0.0
            if cap_w < hi:
                if cap_w < lo:  # even full charge cannot absorb the PV surplus
                    hi, hi_src = lo, lo_src
                    alarms.append("export_unavoidable")
                else:
                    hi, hi_src = cap_w, "no_export"
                reason = "discharge <= load - pv" if net_ok else "load or PV unknown: no discharge"
                bounds.append(Bound("no_export", lo, hi, reason))
        # --- 5 ramp support ---
        if pcc:
            pcc_ramp = cfg.ramp_limit_w_per_s * PCC_RAMP_FRACTION
            bounds.append(Bound("ramp", lo, hi, f"delegated: PCS in grid-power control hold {pcc_ramp:.0f} W/s"))
        elif net_ok:
            w = ramp_window(net, st.grid_w, dt, cfg.ramp_limit_w_per_s * SETPOINT_RAMP_FRACTION)
            if w is not None and (w[0] > lo or w[1] < hi):
                a, b = w
                if a > hi:
                    lo_src = hi_src
                    lo = hi
                elif b < lo:
                    hi_src = lo_src
                    hi = lo
                else:
                    if a > lo:
                        lo, lo_src = a, "ramp"
                    if b < hi:
                        hi, hi_src = b, "ramp"
                bounds.append(Bound("ramp", lo, hi, "grid import change within ramp_limit_w_per_s x dt"))

        # --- 8 operator, then 6/7/9 economics ---
        if not meas_ok:
            mode, target, src = "conservative", 0.0, "failsafe"
            alarms.append("measurement_invalid")
        elif op.override_w is not None and now < op.override_until and _isfinite(op.override_w):
            mode, target, src = "manual", op.override_w, "override"
        elif op.mode == "idle":
            mode, target, src = "idle", 0.0, "idle"
        elif op.mode == "conservative":
            mode, target, src = "conservative", 0.0, "conservative"
        else:
            mode = "auto"
            rem = tou_end - now
            rem = rem if rem > 1.0 else 1.0
            if role == ROLE_CHARGE:
                # As fast as the bounds allow (what is still missing within one demand interval): the
                # price is the same over the whole run, and the demand bound below keeps the charge
                # under the target, so a dip in the load (a job restart) is headroom to fill now
                # rather than a chance lost; spreading it evenly left the fleet short at the run's end.
                need_wh = max(0.0, ceil - soc) * 0.01 * cap / cfg.charge_efficiency
                fill_s = rem if raise_w > 0.0 else min(rem, length)
                target, src = -need_wh * 3600.0 / fill_s, "tou_charge"
            elif role == ROLE_DISCHARGE:
                # what is left once the rest of the day's demand shaving is provided for
                avail_wh = max(0.0, (soc - floor) * 0.01 * cap - keep) * cfg.discharge_efficiency
                target, src = min(avail_wh * 3600.0 / rem, max(net, 0.0)), "tou_discharge"
            elif role == ROLE_HOLD:
                target, src = 0.0, "tou_hold"
            else:
                target, src = balance_target_w(soc, cfg.soc_target_pct, cap), "balance"
            h = cfg.ramp_headroom_w
            if h > 0.0 and cfg.ramp_limit_w_per_s > 0.0 and role in (ROLE_CHARGE, ROLE_DISCHARGE):
                # Arbitrage is discretionary, ramp support is not: at full discharge in a peak-price
                # hour a load rise would find nothing left to answer it (and full charge a fall).
                if target > f.dis_w - h:
                    target = max(0.0, f.dis_w - h)
                elif target < h - f.chg_w:
                    target = min(0.0, h - f.chg_w)
            if net < 0.0 and target > net:  # PV surplus first: it is free energy
                target, src = net, "pv_surplus"
            if target != target:  # no trusted cluster: soc is NaN
                target = 0.0
            # --- 6 demand shaving: a lower bound on discharge ---
            # Only the interval's average is billed: the load seen so far this interval (steadied by
            # the last interval's average) is the forecast for the rest of it, so swings inside the
            # interval are not chased (that would cycle the battery for nothing); deficits still show
            # up in the energy accounting.
            # The reading now counts for the cycle it stands for, the last interval's average for the
            # rest of FORECAST_PRIOR_S (so a slow replay, one reading per interval, uses the reading).
            now_s = dt if 0.0 < dt < FORECAST_PRIOR_S else (FORECAST_PRIOR_S if dt >= FORECAST_PRIOR_S else 0.0)
            prior = profile[slot - 1] if 0 < slot <= len(profile) else (profile[-1] if profile else NAN)
            prior_s = FORECAST_PRIOR_S - now_s if prior == prior else 0.0  # NaN: no prior
            wsum = cov + now_s + prior_s
            net_fc = (iv_net + net * now_s + (prior * prior_s if prior_s > 0.0 else 0.0)) / wsum if wsum > 0.0 else net
            tgt = target_w(peaks, shave, rate, cfg.demand_target_w)
            if tgt < INF:
                tgt -= DEMAND_MARGIN * tgt
            elif rate > 0.0:
                tgt = net_fc  # nothing known yet: no shaving, and no charging above the load
            if tgt < INF:
                if role == ROLE_CHARGE and raise_w > 0.0:  # charging here is worth a higher peak
                    tgt = max(tgt, net_fc + raise_w)
                allow = allowed_grid_w(tgt, iv_grid, cov, iv_len - into, iv_len)
                a = net_fc - allow
                if a < 0.0:
                    # Charging: only into the headroom there is now. The forecast is steady on purpose
                    # (no discharge chasing swings), but a load stepping up (a job restarting) would
                    # otherwise keep a greedy charge running until the interval's peak is set.
                    # Charging is discretionary, shaving is not: it stays CHARGE_MARGIN further below
                    # the target, unless the target was raised for it (that peak is priced in).
                    if raise_w <= 0.0:
                        allow = allowed_grid_w(tgt - CHARGE_MARGIN * tgt, iv_grid, cov, iv_len - into, iv_len)
                    a = min(0.0, (net if net > net_fc else net_fc) - allow)
                if a > lo:
                    if a > hi:
                        lo, lo_src = hi, hi_src
                    else:
                        lo, lo_src = a, "demand"
                    bounds.append(
                        Bound("demand", lo, hi, f"demand target {tgt:.0f} W, allowed now {allow:.0f} W")
                    )

    final, by = target, src
    if final > hi:
        final, by = hi, hi_src
    elif final < lo:
        final, by = lo, lo_src
    d = dispatch_fleet(final, snap, f, weight_floor, ceil)
    short_of_surplus = not allow_export and net_ok and snap.grid_up and d.achieved_w > net + 1e-6
    if short_of_surplus and "export_unavoidable" not in alarms:
        alarms.append("export_unavoidable")  # what the clusters can take in falls short of the PV surplus
    new_grid = net - d.achieved_w if net_ok and snap.grid_up else NAN
    gc = None
    if snap.grid_up and pcc:
        # The planned battery power becomes a grid import target; each PCS's window is its own
        # device limits within the reserve window (f.dis / f.chg, per cluster, capped by its rating);
        # no export is the grid floor (the target is >= 0 then, as final <= net).
        shares = pcs_shares(f, weight_floor, ceil, pcc)
        lim: dict[str, PccLimits] = {}
        for j, pid in enumerate(f.pcs_ids):
            if pid in shares:
                sd, sc = f.pcs_window_w(j)
                lim[pid] = PccLimits(shares[pid], sd, sc)
        # (When even full charge cannot absorb the PV surplus, "export_unavoidable", the target
        # stays at the floor: the PCS then charge to their windows, which is the plan's full charge.)
        floor_w = 0.0 if not allow_export else PCC_NO_FLOOR_W
        gc = GridControl(new_grid if new_grid > floor_w else floor_w, pcc_ramp, floor_w, lim)
        new_grid = gv  # the ramp reference should the agent take the ramp back: where the grid is
    plan = Plan(
        seq=snap.seq,
        mode=mode,
        site_setpoint_w=d.achieved_w,
        requested_w=final,
        decided_by=by,
        reason=REASONS[by],
        bounds=tuple(bounds),
        pcs_setpoints_w=d.pcs_w,
        cluster_setpoints_w=d.cluster_w,
        shortfall_w=d.shortfall_w,
        alarms=tuple(alarms),
        grid_control=gc,
    )
    new = ControllerState(
        now if _isfinite(now) else NAN,
        new_grid,
        key,
        rate,
        iv_grid,
        iv_net,
        cov,
        month,
        peaks,
        profile,
        shave,
        key,
        role,
        tou_end,
        raise_w,
        tou_price,
        spread,
        keep,
    )
    return plan, new
