"""Issue 16: an economic campus (demand_target_w = 0) decides its level per demand window as the
pooled controller of the same batteries decides its own (agent/campus/levels.py).

The campus, two weekdays at 60 s from Wednesday 1 July 2026 on PG&E E-20 (all-hours demand 11.98
USD/kW-month, part-peak 15.54, the 12:00-18:00 peak window 28.35), two feeders each carrying half of
a load known by hand: 2.0 MW to noon, 3.0 MW in the peak window, 2.8 MW from 18:00 to midnight.
Each feeder has 4 clusters (demo.toml's, 20-95 % usable, 0.15 USD/kWh of wear): together
E = 2 x 0.75 x capacity x eta_d of energy and 1.67 MW of power.

By hand (agent/control/levels.py): no round trip pays (0.147 - 0.15 - 0.0763 / 0.92 = -0.086 USD/kWh
per kWh discharged), so a kWh spent shaving costs lam = 0.086 USD and the levels are sized on the load
over 0.99 (the battery refilled for them alone). A layer's level sits where the slots above it are
worth that: the all-hours charge 11.98 / (30.4 x 0.086) x 4 = 18 slots, fewer than the 24 slots of
the 3.0 MW plateau: not worth shaving (its level is the load the evening bills, 2.8 MW); the peak
window's 16.37 more is worth 25 slots, more than its 24: as deep as the energy holds once the
part-peak evening after it (18:00-21:00, nothing refills the battery before the night) has its 84 kWh
to hold 2.8 MW at its aim, the plateau at 3.0 MW - (E - 84 kWh) / 6 h. So the targets (the level,
shaved 1 % under: the aim) are (3.0 MW - (E - 84 kWh) / 6 h) / 0.99 in 12:00-18:00 (2.639 MW here),
and 2.8 MW before noon. From 18:00 the energy the window left holds the evening 1 % under 2.8 MW
(before the shoulder was kept for, the window emptied the battery and the evening's level was raised
to its own load over the aim, 2.8 MW / 0.99).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pytest

from agent.campus.allocate import CampusLimits, FeederState
from agent.campus.demand import start, step
from agent.campus.levels import ahead, level, observe, pool
from agent.campus.messages import MessageError, decode, parse_report, signed_report
from agent.control.campus_share import feeder_state
from agent.control.demand import target_w
from agent.control.state import IntervalState
from agent.economics.tariff import bundled
from agent.offline.campus_replay import Feeder, campus_trace, pooled
from agent.offline.replay import Replay, Trace, day_profile
from tests.test_analyze import demo
from tests.test_control_support import SHANGHAI
from tests.test_control_support import TZ as SHANGHAI_TZ

STEP = 60.0
N = int(2 * 86400 / STEP)
TARIFF = "pge_e20_secondary_2014"
KEY = b"k" * 32


def campus() -> list[Feeder]:
    tariff = bundled(TARIFF)
    t0 = datetime(2026, 7, 1, tzinfo=tariff.timezone).timestamp()
    ts = t0 + STEP * np.arange(N, dtype=np.float64)
    hour = (np.arange(N) * STEP / 3600.0) % 24.0
    load = np.where(hour < 12.0, 2.0e6, np.where(hour < 18.0, 3.0e6, 2.8e6))
    return [
        Feeder(
            replace(demo(4, reserve_load_w=0.0), id=f"f{i}", timezone=tariff.timezone, cycle_s=STEP),
            Trace(ts, load / 2.0, source=f"f{i}"),
        )
        for i in (1, 2)
    ]


def halves(f: FeederState) -> list[FeederState]:
    """The pooled battery's report as the two feeders' (each half of its load and battery)."""
    return [
        replace(
            f,
            site_id=site,
            net_load_w=f.net_load_w / 2.0,
            grid_w=f.grid_w / 2.0,
            discharge_w=f.discharge_w / 2.0,
            charge_w=f.charge_w / 2.0,
            energy_wh=f.energy_wh / 2.0,
            budget_wh=f.budget_wh / 2.0,
            power_w=f.power_w / 2.0,
        )
        for site in ("f1", "f2")
    ]


def test_the_coordinator_sets_the_pooled_controllers_level_in_each_window() -> None:
    fs, tariff = campus(), bundled(TARIFF)
    tz, length = tariff.timezone, 900.0
    site = pooled(fs, CampusLimits())  # demand_target_w = 0: the pooled controller's own levels
    trace = campus_trace(fs)
    r = Replay(site, tariff, trace, start_soc_pct=95.0)
    st = start(length, day_profile(trace, length, tz))
    c = site.control
    e_wh = 0.75 * sum(cl.capacity_wh for cl in site.clusters) * c.discharge_efficiency
    # the evening's 3 h of part-peak after the window (18:00-21:00) are held at their aim, 1 % under
    # 2.8 MW, from what the window leaves: (2.8 - 2.772) MW x 3 h = 84 kWh kept for them
    # (levels.within_energy's shoulder; letting the evening's level go costs more: its 15.54 USD on
    # 28 kW against the window's 28.35 on 14.1)
    window = (3.0e6 - (e_wh - 84e3) / 6.0) / 0.99
    seen: dict[str, list[tuple[float, float]]] = {"morning": [], "window": [], "evening": []}
    edges: list[float] = []
    for k in range(N):
        r.run(k, k + 1)
        assert r.snap is not None
        t = datetime.fromtimestamp(float(trace.timestamps[k]), tz)
        f = feeder_state("pool", r.snap, r.cfg, r.op, spread=r.st.tou.spread)
        # the coordinator's level for this interval, on the two feeders' reports of this reading
        st, lv = step(st, halves(f), t, t, STEP, length, 0.0, tariff)
        iv = r.st.interval
        if t.day == 2 and (t.hour, t.minute) in ((11, 59), (17, 59)):
            # the share made now applies at the next cycle, the window's first (or the first after
            # it): its level is that interval's, not a cycle late (levels.ahead)
            nxt = datetime.fromtimestamp(float(trace.timestamps[k + 1]), tz)
            edges.append(level(ahead(st.iv, halves(f), nxt, length, tariff), nxt, length, tariff).target_w)
        hour = t.hour + t.minute / 60.0
        if t.day == 2 and hour < 21.5:  # the second day (the battery refilled by the rules), to 21:30
            where = "morning" if hour < 12.0 else "window" if hour < 18.0 else "evening"
            seen[where].append((lv.target_w, target_w(iv.peaks, iv.shave_floor_w, iv.rate, 0.0)))
    for where, expected in (("morning", 2.8e6), ("window", window), ("evening", 2.8e6)):
        coordinator = np.array([x for x, _ in seen[where]])
        pool = np.array([y for _, y in seen[where]])
        # the same rules on the same sums, each booking its meter (begin.metered_w, levels.metered)
        assert coordinator == pytest.approx(pool, rel=1e-9), where
        assert coordinator == pytest.approx(np.full(len(coordinator), expected), rel=2e-3), where
    # the peak window shaved deep (E = 2.4 MWh: 386 kW under its 3.0 MW), the rest at the evening's load
    assert window == pytest.approx(2.639e6, rel=1e-3)
    # the evening's level at 18:00 from the energy the window left for it
    assert edges == [pytest.approx(window, rel=2e-3), pytest.approx(2.8e6, rel=2e-3)]


def test_the_pooled_battery_goes_on_the_wire_and_a_missing_feeder_is_not_the_campus() -> None:
    """The report carries what the levels are sized on; an agent that sends none counts 0 (no energy:
    no level below what the load itself reaches) and no spread; a negative budget is refused by name.
    A cycle where one feeder's report is not usable adds nothing to the campus's interval (a sum
    with one missing is not the campus's), as a site's bad reading adds nothing to its own."""
    f = FeederState("f1", 1e6, 1e6, 4e5, 4e5, 1e6, budget_wh=2e6, power_w=8e5, spread=-0.0862)
    got = parse_report(decode(signed_report(KEY, f, 1.79e9)), "f1")
    assert (got.budget_wh, got.power_w, got.spread) == (2e6, 8e5, -0.0862)
    old = parse_report(decode(signed_report(KEY, replace(f, budget_wh=0.0, spread=math.nan), 1.79e9)), "f1")
    assert old.budget_wh == 0.0 and math.isnan(old.spread)
    body = decode(signed_report(KEY, f, 1.79e9)) | {"budget_wh": -1.0}
    with pytest.raises(MessageError, match="'budget_wh' must be >= 0"):
        parse_report(body, "f1")
    got_pool = pool([f, replace(f, site_id="f2", spread=math.nan)])
    assert (got_pool.budget_wh, got_pool.power_w, got_pool.stored_wh, got_pool.spread) == (4e6, 1.6e6, 2e6, -0.0862)
    assert math.isnan(got_pool.round_trip) and math.isnan(got_pool.wear_per_kwh)  # not reported: no week's level

    tariff = bundled(TARIFF)
    t = datetime(2026, 7, 1, 10, 0, 30, tzinfo=tariff.timezone)
    iv = observe(IntervalState(), [f, replace(f, site_id="f2")], t, 30.0, 900.0, tariff)
    iv = observe(iv, [f, replace(f, site_id="f2", fresh=False)], t.replace(second=40), 10.0, 900.0, tariff)
    iv = observe(iv, [f, replace(f, site_id="f2")], t.replace(second=50), 10.0, 900.0, tariff)
    assert (iv.covered_s, iv.grid_ws, iv.net_ws) == (40.0, 2e6 * 40.0, 2e6 * 40.0)


def test_the_campus_books_the_interval_its_meter_bills() -> None:
    """Two feeders of 1.0 MW each, each discharging 0.2 MW all along, and the load stepping to 2.0 MW
    each at 14:15. A reading shows the load of its own step and the battery of the step before, so
    the reading at 14:15 (3.6 MW imported) is the new load's: a site books it whole for 14:14-14:15,
    and its 14:00 interval reads (14 x 1.6 + 3.6) / 15 = 1.733 MW. The utility meter bills 1.6 MW
    (2 x (1.0 - 0.2)): the campus books that, and its baseline at 2.0 MW, not 2.133."""
    tariff = bundled("shanghai_ci_two_part")  # demand billed at every hour
    t0 = datetime(2026, 7, 1, 14, 0, tzinfo=tariff.timezone)
    st = start(900.0)
    for k in range(16):  # the readings at 14:00 .. 14:15
        net = 1.0e6 if k < 15 else 2.0e6
        fs = [
            FeederState(f"f{i}", net_load_w=net, grid_w=net - 0.2e6, discharge_w=0.5e6, charge_w=0.5e6, energy_wh=1e6)
            for i in (1, 2)
        ]
        t = t0 + timedelta(seconds=STEP * k)
        st, _ = step(st, fs, t, t + timedelta(seconds=STEP), STEP, 900.0, 0.0, tariff)
    assert [v for _, v in st.iv.peaks] == [pytest.approx(1.6e6, rel=1e-12)]
    assert st.iv.profile[14 * 4] == pytest.approx(2.0e6, rel=1e-12)
    # what the next reading books (14:15-14:16 at 2 x (2.0 - 0.2) MW), once the step is in the load
    assert st.iv.grid_ws == 0.0 and st.iv.covered_s == 0.0
    fs2 = [replace(f, grid_w=1.8e6) for f in fs]
    st, _ = step(st, fs2, t0 + timedelta(seconds=960), t0 + timedelta(seconds=1020), STEP, 900.0, 0.0, tariff)
    assert st.iv.grid_ws == pytest.approx(3.6e6 * STEP, rel=1e-12)
    # a feeder joins (f3: 1.0 MW, 0.2 MW discharged): no reading before for it, the reading's rule once
    fs3 = [*fs2, replace(fs2[0], site_id="f3", net_load_w=1.0e6, grid_w=0.8e6)]
    st, _ = step(st, fs3, t0 + timedelta(seconds=1020), t0 + timedelta(seconds=1080), STEP, 900.0, 0.0, tariff)
    assert st.iv.grid_ws == pytest.approx((3.6e6 + 4.4e6) * STEP, rel=1e-12)


def test_a_campus_on_a_day_the_all_hours_charge_bills_alone_holds_the_week_s_level() -> None:
    """A site works out its level of a day that bills the all-hours charge alone (PG&E's weekend)
    from the last week's optimum (begin.week_level); the campus does the same on its pooled battery
    once every feeder reports its round trip and wear (agent/campus/levels.py). Without them (an agent
    before they were reported) the campus has none, as before, and holds its levels' all-hours one."""
    tariff = bundled(TARIFF)
    spd = 96
    # a week behind the campus, known in every slot: 2 MW at night, 3 MW for 6 h a day
    day = tuple(3.0e6 if 48 <= s < 72 else 2.0e6 for s in range(spd))
    sat = datetime(2026, 7, 4, tzinfo=tariff.timezone)  # a Saturday: one rate, one price all day
    f = FeederState("f1", 2.0e6, 2.0e6, 8e5, 8e5, 2e6, budget_wh=3e6, power_w=1.6e6, spread=-0.0862)
    reported = replace(f, round_trip=0.9216, wear_per_kwh=0.15)
    with_rt = [reported, replace(reported, site_id="f2")]
    without = [f, replace(f, site_id="f2")]
    levels = []
    for fs in (with_rt, without):
        st = start(900.0, day)
        st = replace(st, iv=replace(st.iv, past=day * 7))
        for k in range(3):  # across Saturday's first interval edge
            t = sat - timedelta(seconds=60) + timedelta(seconds=60 * k)
            st, _ = step(st, fs, t, t, STEP, 900.0, 0.0, tariff)
        assert st.iv.week_day == sat.toordinal() or not math.isfinite(st.iv.week_level_w)
        levels.append(st.iv.week_level_w)
    # 6 MWh from full (2 x 3 MWh) over the week's 6 h plateaus at 3 MW: a level under them, over the nights
    assert 2.0e6 < levels[0] < 3.0e6
    assert math.isnan(levels[1])


def test_the_feeders_round_trip_and_wear_go_on_the_wire_and_are_pooled_by_what_each_holds() -> None:
    f = FeederState("f1", 1e6, 1e6, 4e5, 4e5, 1e6, budget_wh=2e6, power_w=8e5, round_trip=0.9, wear_per_kwh=0.1)
    got = parse_report(decode(signed_report(KEY, f, 1.79e9)), "f1")
    assert (got.round_trip, got.wear_per_kwh) == (0.9, 0.1)
    body = decode(signed_report(KEY, f, 1.79e9)) | {"round_trip": 1.5}
    with pytest.raises(MessageError, match="'round_trip' must be > 0 and <= 1"):
        parse_report(body, "f1")
    body = decode(signed_report(KEY, f, 1.79e9)) | {"wear_per_kwh": -0.1}
    with pytest.raises(MessageError, match="'wear_per_kwh' must be >= 0"):
        parse_report(body, "f1")
    g = replace(f, site_id="f2", budget_wh=6e6, round_trip=0.8, wear_per_kwh=0.2)
    p = pool([f, g])
    assert p.round_trip == pytest.approx((0.9 * 2 + 0.8 * 6) / 8)
    assert p.wear_per_kwh == pytest.approx((0.1 * 2 + 0.2 * 6) / 8)
    assert math.isnan(pool([f, replace(g, round_trip=math.nan)]).round_trip)


def test_an_economic_campus_keeps_what_its_charge_slots_do_not_refill_first() -> None:
    """The campus's keep (level) counts the later charge slots' refill on the pooled batteries as a
    site's does (tou.recharge_wh): the same evening's need as tests/test_campus_keep.py, at 3 MW
    targets, on Shanghai's prices: none kept from the morning peak, all of it from 18:00, and all of
    it where the pool is not given."""
    prof = [2e6] * 96
    prof[76:80] = [3.5e6, 4e6, 4e6, 3.5e6]
    iv = IntervalState(targets=(3e6,) * 96, env=tuple(prof), past=tuple(prof * 7), profile=tuple(prof))
    fs = [
        FeederState(f"f{i}", 2e6, 2e6, 1e6, 1e6, 1e6, budget_wh=1e6, round_trip=0.9216, wear_per_kwh=0.15)
        for i in range(4)
    ]
    midnight = datetime(2026, 7, 15, tzinfo=SHANGHAI_TZ)
    at8, at18 = midnight + timedelta(hours=8), midnight + timedelta(hours=18)
    assert level(iv, at8, 900.0, SHANGHAI, pool(fs)).keep_wh == 0.0
    assert level(iv, at8, 900.0, SHANGHAI).keep_wh == pytest.approx(3.12e6 * 0.25)
    assert level(iv, at18, 900.0, SHANGHAI, pool(fs)).keep_wh == pytest.approx(3.12e6 * 0.25)
