"""The fast lane's decision (agent.control.fast): inside the window the 1 s policy grants, at the ramp,
nothing when the window is missing or stale; and what the 1 s decide() grants it."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.control import decide, initial_state
from agent.control.fast import FAST0, FastState, fast_step, max_age_s, spread
from agent.model.operator import OperatorState
from agent.model.plan import FastPcs, FastWindow
from agent.model.snapshot import Measured
from tests.test_control_support import CFG, FLAT, cluster, fleet, snap

MAX_AGE = max_age_s(1.0)  # 2 s


def window(
    target: float = 3e6,
    lo: float = -2e6,
    hi: float = 2e6,
    pcs: dict[str, FastPcs] | None = None,
    t: float = 100.0,
    grid_min: float = 0.0,
    grid_max: float = math.inf,
    pv: float = 0.0,
) -> FastWindow:
    pcs = pcs if pcs is not None else {"a": FastPcs(-1e6, 1e6, 0.0), "b": FastPcs(-1e6, 1e6, 0.0)}
    return FastWindow(t, target, 100e3, grid_min, grid_max, pv, lo, hi, pcs)


def test_first_tick_holds_the_plant_where_it_is() -> None:
    sp, s = fast_step(window(), FAST0, 100.1, 2.8e6, 3e6, MAX_AGE)  # the battery gives 200 kW now
    assert sp == pytest.approx({"a": 100e3, "b": 100e3})
    assert (s.grid_w, s.battery_w) == pytest.approx((2.8e6, 200e3))


def test_a_load_step_is_taken_by_the_battery_and_the_grid_moves_at_the_ramp() -> None:
    w = window(target=3e6)
    _, s = fast_step(w, FAST0, 100.0, 3e6, 3e6, MAX_AGE)
    # +1 MW: the meter's second holds 2 % of it (0.2 s tick); the grid goes back to the target 3 MW,
    # at most 100 kW/s x 0.2 s = 20 kW away: reached. The battery takes the step and half of it
    # again (the lead: half a tick of the load's change over the last one), 1.5 MW
    sp, s = fast_step(w, s, 100.2, 4e6, 4e6, MAX_AGE)
    assert sp == pytest.approx({"a": 750e3, "b": 750e3})
    assert s.grid_w == pytest.approx(3e6)
    # the load holds: no lead. A target 1 MW above: the grid moves 20 kW a 0.2 s tick toward it
    # (from the plan, moved 2 % toward the grid measured with the battery at 1.4 MW of the 1.5 written)
    w2 = window(target=4e6)
    sp, s = fast_step(w2, s, 100.4, 4e6 - 1.4e6, 4e6, MAX_AGE)
    ref = 3e6 + 0.02 * (2.6e6 - 3e6)
    assert sum(sp.values()) == pytest.approx(4e6 - (ref + 20e3))  # type: ignore[union-attr]
    assert s.grid_w == pytest.approx(ref + 20e3)


def test_a_load_slew_is_met_as_it_goes() -> None:
    # a 2 MW/s rise: 400 kW a 0.2 s tick; the battery takes what the load will have added by the
    # middle of the next tick (the lead, 200 kW) on top of what it has added
    w = window(target=3e6)
    _, s = fast_step(w, FAST0, 100.0, 3e6, 3e6, MAX_AGE)
    sp, s = fast_step(w, s, 100.2, 3.4e6, 3.4e6, MAX_AGE)
    assert sum(sp.values()) == pytest.approx(0.4e6 + 0.2e6)  # type: ignore[union-attr]
    sp, s = fast_step(w, s, 100.4, 3.8e6 - 0.6e6, 3.8e6, MAX_AGE)  # the PCS got there
    assert sum(sp.values()) == pytest.approx(0.8e6 + 0.2e6)  # type: ignore[union-attr]
    assert s.grid_w == pytest.approx(3e6)  # the grid held at the target while the load rose 0.8 MW


def test_a_battery_where_no_lag_can_have_left_it_makes_the_measured_grid_the_reference() -> None:
    w = window(target=3e6)
    _, s = fast_step(w, FAST0, 100.0, 3e6, 3e6, MAX_AGE)
    _, s = fast_step(w, s, 100.2, 4e6, 4e6, MAX_AGE)  # wrote 1 MW
    # someone else holds the PCS at 500 kW of charge: outside [0 W where it was, 1 MW written] by more
    # than the 20 kW margin; from the grid measured (4.5 MW), 20 kW toward the target
    sp, s = fast_step(w, s, 100.4, 4.5e6, 4e6, MAX_AGE)
    assert sum(sp.values()) == pytest.approx(4e6 - 4.48e6)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("case", "win", "planned", "load", "expect"),
    [
        # the site window caps the battery (the load rose 1 MW since the last tick: the ramp wants 1 MW)
        ("site hi", window(hi=0.6e6), 3e6, 4e6, {"a": 300e3, "b": 300e3}),
        # per PCS: the change is spread by room (0.2 MW and 1 MW: 1/6 and 5/6 of 0.6 MW)
        (
            "pcs max",
            window(hi=0.6e6, pcs={"a": FastPcs(-1e6, 0.2e6, 0.0), "b": FastPcs(-1e6, 1e6, 0.0)}),
            3e6,
            4e6,
            {"a": 100e3, "b": 500e3},
        ),
        # both PCS full: the sum of their windows caps it, whatever the site window says
        (
            "pcs sum",
            window(pcs={"a": FastPcs(-1e6, 0.2e6, 0.1e6), "b": FastPcs(-1e6, 0.3e6, 0.0)}),
            3e6,
            4e6,
            {"a": 200e3, "b": 300e3},
        ),
        # no export: at 0.5 MW of load the battery gives at most 0.5 MW (the ramp toward a target
        # below 0 W wanted 510 kW)
        ("no export", window(target=-0.5e6), 0.0, 0.5e6, {"a": 250e3, "b": 250e3}),
        # the grid connection limit: at 4 MW of load and a 3.5 MW limit, at least 0.5 MW from the battery
        ("connection", window(target=4e6, grid_max=3.5e6), 4e6, 4e6, {"a": 250e3, "b": 250e3}),
        # the site window wins over the grid bounds (a BMS allows only 0.2 MW)
        ("safety first", window(target=4e6, grid_max=3.5e6, hi=0.2e6), 4e6, 4e6, {"a": 100e3, "b": 100e3}),
    ],
)
def test_stays_inside_the_window(
    case: str, win: FastWindow, planned: float, load: float, expect: dict[str, float]
) -> None:
    s = FastState(t_mono=100.0, grid_w=planned, battery_w=0.0, from_w=0.0, window_t=100.0)
    sp, _ = fast_step(win, s, 100.2, load, load, MAX_AGE)  # the battery at 0 W, as written
    assert sp == pytest.approx(expect, abs=1e-3), case


@pytest.mark.parametrize(
    ("win", "now", "grid", "load"),
    [
        (None, 100.2, 3e6, 3e6),  # the 1 s plan granted none (failsafe, outage, operator, PCC)
        (window(t=100.0), 102.01, 3e6, 3e6),  # stale: the 1 s loop stopped two cycles ago
        (window(t=100.0), 99.9, 3e6, 3e6),  # from the future: a clock that went back
        (window(), 100.2, math.nan, 3e6),  # the grid meter not good
        (window(), 100.2, 3e6, math.nan),  # the load meter not good
    ],
)
def test_no_write(win: FastWindow | None, now: float, grid: float, load: float) -> None:
    s = FastState(t_mono=100.0, grid_w=3e6, battery_w=0.0, from_w=0.0, window_t=100.0)
    sp, s2 = fast_step(win, s, now, grid, load, MAX_AGE)
    assert sp is None
    assert s2 == FAST0  # and the next window starts afresh from the measured grid


def test_spread_keeps_each_pcs_in_its_window() -> None:
    pcs = {"a": FastPcs(-100e3, 300e3, 100e3), "b": FastPcs(-500e3, 500e3, -200e3)}
    got = spread(-600e3, pcs)  # 500 kW of charge more: rooms 200 and 300 kW, both used whole
    assert got == pytest.approx({"a": -100e3, "b": -500e3})


# --- what decide() grants, and that the lane never leaves it ---------------------------------------

FAST_CFG = replace(CFG, ramp_limit_w_per_s=200_000.0, fast_lane_s=0.2)
BATTERY_SOURCES = ("device_limits", "derate", "maintenance", "soc_max", "reserve", "edges")


def test_the_plan_grants_a_window_in_auto_mode_only() -> None:
    st0 = initial_state(FAST_CFG)
    p, _ = decide(snap(3e6), st0, FAST_CFG, OperatorState(), FLAT, False)
    w = p.fast_window
    assert w is not None
    assert set(w.pcs) == {"pcs1", "pcs2", "pcs3", "pcs4"}
    assert w.pcs["pcs1"] == FastPcs(-627e3, 627e3, 0.0)  # 3 x 209 kW (below the 630 kW rating)
    assert (w.ramp_w_per_s, w.grid_min_w, w.target_grid_w) == (100e3, 0.0, 3e6)
    for op in (OperatorState(mode="idle"), OperatorState(override_w=1e5, override_until=1e9)):
        p, _ = decide(snap(3e6), st0, FAST_CFG, op, FLAT, False)
        assert p.fast_window is None, op
    p, _ = decide(snap(3e6, grid_up=False), st0, FAST_CFG, OperatorState(), FLAT, False)
    assert p.fast_window is None  # outage
    p, _ = decide(snap(3e6, load_m=Measured.missing()), st0, FAST_CFG, OperatorState(), FLAT, False)
    assert p.fast_window is None  # failsafe
    p, _ = decide(snap(3e6), st0, replace(FAST_CFG, fast_lane_s=0.0), OperatorState(), FLAT, False)
    assert p.fast_window is None  # off


def test_clusters_in_maintenance_or_faulted_are_out_of_the_window() -> None:
    cl, pcs = fleet()
    cl = tuple(replace(c, status=c.status.FAULT) if c.id in ("c01", "c02", "c03") else c for c in cl)
    s = snap(3e6, clusters=cl, pcs=pcs)
    op = OperatorState(maintenance=frozenset({"c04"}))
    p, _ = decide(s, initial_state(FAST_CFG), FAST_CFG, op, FLAT, False)
    assert p.fast_window is not None
    assert "pcs1" not in p.fast_window.pcs  # every cluster behind it faulted: the lane never writes it
    assert p.fast_window.pcs["pcs2"].max_w == pytest.approx(2 * 209e3)


@settings(max_examples=200, deadline=None)
@given(
    # (near the floor or ceiling too: the ramp-out edges narrow the site window below the PCS windows)
    socs=st.one_of(
        st.lists(st.floats(0.0, 100.0), min_size=12, max_size=12),
        st.lists(st.floats(19.99, 20.03), min_size=12, max_size=12),
        st.lists(st.floats(94.97, 95.01), min_size=12, max_size=12),
    ),
    dis=st.lists(st.sampled_from([0.0, 50e3, 150e3, 209e3]), min_size=12, max_size=12),
    load=st.floats(0.0, 6e6),
    ticks=st.lists(
        st.tuples(st.floats(0.01, 0.5), st.floats(0.0, 6e6), st.floats(-3e6, 3e6)), min_size=1, max_size=8
    ),
    allow_export=st.booleans(),
    grid_limit=st.sampled_from([0.0, 2e6]),
)
def test_the_lane_never_writes_outside_the_1s_policys_window(
    socs: list[float],
    dis: list[float],
    load: float,
    ticks: list[tuple[float, float, float]],
    allow_export: bool,
    grid_limit: float,
) -> None:
    cl = tuple(
        cluster(f"c{i + 1:02d}", f"pcs{i // 3 + 1}", soc=s, dis=d, chg=209e3 - d / 2)
        for i, (s, d) in enumerate(zip(socs, dis, strict=True))
    )
    _, pcs = fleet()
    cfg = replace(FAST_CFG, grid_import_limit_w=grid_limit)
    p, _ = decide(snap(load, clusters=cl, pcs=pcs), initial_state(cfg), cfg, OperatorState(), FLAT, allow_export)
    w = p.fast_window
    assert w is not None
    # the battery window of the plan's own bounds 1-3b, and each PCS's clusters (BMS, rating)
    last = [b for b in p.bounds if b.source in BATTERY_SOURCES][-1]
    per_pcs = {q.id: (sum(c.max_charge_w.value for c in cl if c.pcs_id == q.id),
                      sum(c.max_discharge_w.value for c in cl if c.pcs_id == q.id)) for q in pcs}
    s, t = FAST0, w.t_mono
    for dt, ld, bat in ticks:
        t += dt
        sp, s = fast_step(w, s, t, ld - bat, ld, MAX_AGE)
        if t - w.t_mono > MAX_AGE:
            assert sp is None
            continue
        assert sp is not None
        total = sum(sp.values())
        assert last.lo_w - 1e-6 <= total <= last.hi_w + 1e-6
        for pid, v in sp.items():
            chg, dsg = per_pcs[pid]
            assert -min(chg, 630e3) - 1e-6 <= v <= min(dsg, 630e3) + 1e-6, pid
        if not allow_export and total > ld + 1e-6:  # an export only where the battery window forces it
            assert total == pytest.approx(max(last.lo_w, sum(q.min_w for q in w.pcs.values())), abs=1e-3)


def test_a_decided_window_is_usable_by_the_next_ticks_only_until_it_is_stale() -> None:
    p, _ = decide(snap(3e6), initial_state(FAST_CFG), FAST_CFG, OperatorState(), FLAT, False)
    w = p.fast_window
    assert w is not None and w.t_mono == 1000.0
    sp, s = fast_step(w, FAST0, 1000.0 + 1.9, 3e6, 3e6, MAX_AGE)
    assert sp is not None
    sp, _ = fast_step(w, s, 1000.0 + 2.1, 3e6, 3e6, MAX_AGE)
    assert sp is None

