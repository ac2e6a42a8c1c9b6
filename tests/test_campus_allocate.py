"""The campus allocation (agent/campus/allocate.py): hand-checked tables and its invariants."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.campus.allocate import (
    MIN_SHARE,
    CampusLimits,
    FeederState,
    Share,
    allocate,
    hold_down,
    to_send,
)


def feeder(site: str, net: float, dis: float = 0.0, wh: float = 0.0, **kw: Any) -> FeederState:
    return FeederState(site, net_load_w=net, grid_w=net, discharge_w=dis, charge_w=dis, energy_wh=wh, **kw)


def caps(shares: dict[str, Share]) -> dict[str, float]:
    return {k: round(v.import_cap_w, 6) for k, v in shares.items()}


def test_headroom_goes_evenly_to_equal_feeders() -> None:
    # 2402 W: 1 W each first, 2400 left; loads 2000 -> 400 W headroom, 200 W each
    out = allocate(CampusLimits(import_limit_w=2402.0), [feeder("a", 1000.0), feeder("b", 1000.0)])
    assert caps(out) == {"a": 1201.0, "b": 1201.0}
    assert out["a"].ramp_w_per_s == 0.0 and out["a"].demand_target_w == 0.0  # limits off stay off


def test_needed_battery_power_split_by_energy() -> None:
    # 2003 W: 2000 W after 1 W each; loads 3000 W -> the batteries must give 1000 W, split 3:1 by
    # energy over the two with a battery: 750 W and 250 W; c has none and keeps its whole load
    fs = [feeder("a", 1500.0, 1000.0, 3000.0), feeder("b", 1000.0, 1000.0, 1000.0), feeder("c", 500.0)]
    assert caps(allocate(CampusLimits(import_limit_w=2003.0), fs)) == {"a": 751.0, "b": 751.0, "c": 501.0}


def test_a_battery_at_its_power_limit_passes_the_rest_on() -> None:
    # by energy a would give 900 W, but it can discharge only 800 W: b takes the other 200 W
    fs = [feeder("a", 1500.0, 800.0, 9000.0), feeder("b", 1000.0, 1000.0, 1000.0), feeder("c", 500.0)]
    assert caps(allocate(CampusLimits(import_limit_w=2003.0), fs)) == {"a": 701.0, "b": 801.0, "c": 501.0}


def test_infeasible_total_gives_all_batteries_and_spreads_the_rest_by_load() -> None:
    # need 1000 W, the batteries have 300 W: 700 W cannot be held; what remains over the batteries
    # (1300, 900, 500 = 2700 W) is scaled to 2000 W
    fs = [feeder("a", 1500.0, 200.0, 1000.0), feeder("b", 1000.0, 100.0, 1000.0), feeder("c", 500.0)]
    out = allocate(CampusLimits(import_limit_w=2003.0), fs)
    assert out["a"].import_cap_w == pytest.approx(1 + 1300 * 20 / 27)
    assert out["b"].import_cap_w == pytest.approx(1 + 900 * 20 / 27)
    assert out["c"].import_cap_w == pytest.approx(1 + 500 * 20 / 27)
    assert sum(s.import_cap_w for s in out.values()) == pytest.approx(2003.0)


def test_ramp_budget_goes_to_the_feeder_without_battery() -> None:
    # weights: a 1000 + 100 + 1 (no battery), b 0 + 100 + 1 (its battery covers its load); 1202 W/s to split
    fs = [feeder("a", 1000.0), feeder("b", 1000.0, 1000.0, 500.0)]
    out = allocate(CampusLimits(ramp_limit_w_per_s=1204.0), fs)
    assert out["a"].ramp_w_per_s == pytest.approx(1102.0)
    assert out["b"].ramp_w_per_s == pytest.approx(102.0)
    assert out["a"].import_cap_w == 0.0


def test_stale_feeder_gets_its_fallback_and_the_others_the_rest() -> None:
    fb = {"c": Share(400.0, 10.0, 300.0)}
    fs = [
        feeder("a", 1500.0, 1000.0, 3000.0),
        feeder("b", 1000.0, 1000.0, 1000.0),
        feeder("c", 500.0, age_s=9.0),
    ]
    out = allocate(CampusLimits(2003.0, 103.0, 1803.0), fs, fallback=fb, stale_after_s=3.0)
    assert out["c"] == Share(400.0, 10.0, 300.0)
    # 1603 W for a and b: 1601 after 1 W each, need 899 W split 3:1 by energy
    assert out["a"].import_cap_w == pytest.approx(1 + 1500 - 674.25)
    assert out["b"].import_cap_w == pytest.approx(1 + 1000 - 224.75)
    assert out["a"].ramp_w_per_s + out["b"].ramp_w_per_s == pytest.approx(93.0)
    assert out["a"].demand_target_w + out["b"].demand_target_w == pytest.approx(1503.0)


def test_bad_values_make_a_feeder_stale() -> None:
    fb = {"b": Share(100.0, 0.0, 0.0)}
    out = allocate(
        CampusLimits(import_limit_w=1000.0),
        [feeder("a", 300.0), feeder("b", math.nan)],
        fallback=fb,
    )
    assert out["b"] == fb["b"]
    assert out["a"].import_cap_w == pytest.approx(900.0)
    out = allocate(CampusLimits(import_limit_w=1000.0), [feeder("a", 300.0), feeder("b", 10.0, -5.0)], fallback=fb)
    assert out["b"] == fb["b"]


def test_stale_without_fallback_names_the_feeder() -> None:
    with pytest.raises(ValueError, match="'b'"):
        allocate(CampusLimits(import_limit_w=1000.0), [feeder("a", 300.0), feeder("b", 1.0, fresh=False)])


def test_duplicate_site_names_it() -> None:
    with pytest.raises(ValueError, match="'a'"):
        allocate(CampusLimits(import_limit_w=1000.0), [feeder("a", 300.0), feeder("a", 1.0)])


power = st.floats(min_value=0.0, max_value=5e6, allow_nan=False)
feeders_st = st.lists(
    st.tuples(st.floats(min_value=-1e5, max_value=5e6), power, st.floats(min_value=0.0, max_value=1e7)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(feeders_st, st.floats(min_value=100.0, max_value=3e7), st.floats(min_value=10.0, max_value=1e6))
def test_shares_sum_to_the_limit_and_ask_no_battery_for_more_than_it_has(
    raw: list[tuple[float, float, float]], limit: float, ramp: float
) -> None:
    fs = [feeder(f"f{i}", n, d, e) for i, (n, d, e) in enumerate(raw)]
    out = allocate(CampusLimits(limit, ramp, limit), fs)
    assert set(out) == {f.site_id for f in fs}
    assert sum(s.import_cap_w for s in out.values()) == pytest.approx(limit, rel=1e-9, abs=1e-6)
    assert sum(s.ramp_w_per_s for s in out.values()) == pytest.approx(ramp, rel=1e-9, abs=1e-6)
    assert sum(s.demand_target_w for s in out.values()) == pytest.approx(limit, rel=1e-9, abs=1e-6)
    assert all(s.import_cap_w > 0.0 and s.ramp_w_per_s > 0.0 for s in out.values())
    loads = [max(f.net_load_w, 0.0) for f in fs]
    carry = sum(min(f.discharge_w, ld) for f, ld in zip(fs, loads, strict=True))
    if sum(loads) - carry <= limit - MIN_SHARE * len(fs):  # the campus total can be carried
        for f, ld in zip(fs, loads, strict=True):
            assert out[f.site_id].import_cap_w >= ld - f.discharge_w - 1e-6 * max(1.0, ld)


@settings(max_examples=200, deadline=None)
@given(
    feeders_st,
    st.lists(st.booleans(), min_size=8, max_size=8),
    st.floats(min_value=1e4, max_value=3e7),
    st.floats(min_value=0.05, max_value=0.9),
)
def test_with_stale_feeders_on_their_fallbacks_the_shares_still_sum_to_the_limit(
    raw: list[tuple[float, float, float]], stale: list[bool], limit: float, held: float
) -> None:
    fs = [feeder(f"f{i}", n, d, e, fresh=not stale[i]) for i, (n, d, e) in enumerate(raw)]
    # fallbacks that sum to the fraction `held` of each limit, as a campus file requires
    fb = {f.site_id: Share(held * limit / len(fs), held * 1000.0 / len(fs), held * limit / len(fs)) for f in fs}
    out = allocate(CampusLimits(limit, 1000.0, limit), fs, fallback=fb)
    for f in fs:
        if not f.fresh:
            assert out[f.site_id] == fb[f.site_id]
    fresh = [f for f in fs if f.fresh]
    if fresh:  # the fresh share the rest: the whole limit is given out
        assert sum(s.import_cap_w for s in out.values()) == pytest.approx(limit, rel=1e-9)
        assert sum(s.ramp_w_per_s for s in out.values()) == pytest.approx(1000.0, rel=1e-9)
    assert all(s.import_cap_w > 0.0 and s.ramp_w_per_s > 0.0 for s in out.values())


def test_hold_down_sends_the_least_of_the_recent_allocations() -> None:
    recent = [
        {"a": Share(1000.0, 10.0, 0.0), "b": Share(2000.0, 20.0, 0.0)},
        {"a": Share(2000.0, 20.0, 0.0), "b": Share(1000.0, 10.0, 0.0)},
        {"a": Share(1500.0, 15.0, 0.0), "b": Share(1500.0, 15.0, 0.0), "c": Share(5.0, 5.0, 5.0)},
    ]
    out = hold_down(recent)
    assert out == {"a": Share(1000.0, 10.0, 0.0), "b": Share(1000.0, 10.0, 0.0), "c": Share(5.0, 5.0, 5.0)}


def demands(shares: dict[str, Share]) -> dict[str, float]:
    return {k: v.demand_target_w for k, v in shares.items()}


def test_demand_shares_are_not_starved_by_the_hold_down() -> None:
    """Two feeders with no battery swap loads from one cycle to the next, at the start of an interval
    (nothing imported yet, 900 s left). Each allocation gives the 10 MW demand target out as 1 W +
    each load (the loads sum to the target less 2 W: no headroom): 6 MW / 4 MW, then 4 MW / 6 MW.
    Held down like the import cap (what the coordinator used to send), both got 4 MW: 8 MW, 80 % of
    the target, the campus defending 2 MW below it. Sent from the newest allocation they sum to the
    target every cycle."""
    limits = CampusLimits(demand_target_w=10e6)
    recent: list[dict[str, Share]] = []
    sent = []
    for a, b in [(6e6 - 1, 4e6 - 1), (4e6 - 1, 6e6 - 1), (6e6 - 1, 4e6 - 1)]:
        recent = [*recent, allocate(limits, [feeder("a", a), feeder("b", b)])][-3:]
        sent.append(demands(to_send(recent)))
    assert demands(hold_down(recent)) == {"a": 4e6, "b": 4e6}
    assert sent == [{"a": 6e6, "b": 4e6}, {"a": 4e6, "b": 6e6}, {"a": 6e6, "b": 4e6}]


def test_demand_split_is_the_interval_energy_left() -> None:
    """10 MW target over 900 s; 600 s in, a has imported 4 MW x 600 s and b 2 MW x 600 s (the campus
    6 MW on average): 10 x 900 - 6 x 600 = 5,400 MW s left over 300 s, a rate of 18 MW. Loads 8 and
    6 MW (14 MW, under 18): each gets 1 W + its load + a part of the headroom (18 MW - 2 W - 14 MW)
    by the load its battery cannot carry (no battery here: 1.1 x load + 1 W).
    a's rate: 1 + 8e6 + 3,999,998 x 8,800,001 / 15,400,002; its level (4e6 x 600 + rate x 300) / 900.
    The levels sum to the target; each agent's controller then allows exactly its rate."""
    limits = CampusLimits(demand_target_w=10e6)
    fs = [feeder("a", 8e6, interval_wh=4e6 * 600 / 3600), feeder("b", 6e6, interval_wh=2e6 * 600 / 3600)]
    out = allocate(limits, fs, interval_left_s=300.0, interval_s=900.0)
    head = 18e6 - 2.0 - 14e6
    rate_a = 1.0 + 8e6 + head * 8_800_001 / 15_400_002
    rate_b = 1.0 + 6e6 + head * 6_600_001 / 15_400_002
    assert out["a"].demand_target_w == pytest.approx((4e6 * 600 + rate_a * 300) / 900, rel=1e-12)
    assert out["b"].demand_target_w == pytest.approx((2e6 * 600 + rate_b * 300) / 900, rel=1e-12)
    assert out["a"].demand_target_w + out["b"].demand_target_w == pytest.approx(10e6, rel=1e-12)
    # what a's demand controller allows now (agent.control.demand.allowed_grid_w, 600 s covered)
    da = out["a"].demand_target_w
    assert da + (da * 600 - 4e6 * 600) / 300 == pytest.approx(rate_a, rel=1e-9)


def test_demand_headroom_goes_toward_the_batteries_that_can_charge() -> None:
    """Under the target, the demand headroom is weighted by charge power too (the import cap's is
    not): a is full (no charge power), b can take 1 MW. At the interval's start (nothing imported),
    4 MW + 2 W for 2 MW of load: 2 MW of headroom, weights 1.1 x 1 MW + 1 W (the load, no battery
    to carry it) for a, and that + 1 MW of charge power for b."""
    fs = [
        FeederState("a", net_load_w=1e6, grid_w=1e6, discharge_w=0.0, charge_w=0.0, energy_wh=0.0),
        FeederState("b", net_load_w=1e6, grid_w=1e6, discharge_w=0.0, charge_w=1e6, energy_wh=0.0),
    ]
    out = allocate(CampusLimits(4e6 + 2.0, 0.0, 4e6 + 2.0), fs, interval_left_s=900.0, interval_s=900.0)
    assert out["a"].demand_target_w == pytest.approx(1.0 + 1e6 + 2e6 * 1_100_001 / 3_200_002, rel=1e-12)
    assert out["b"].demand_target_w == pytest.approx(1.0 + 1e6 + 2e6 * 2_100_001 / 3_200_002, rel=1e-12)
    assert caps(out) == {"a": 2_000_001.0, "b": 2_000_001.0}  # the cap's headroom: by load alone


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=3, max_size=3),
    st.lists(st.floats(min_value=0.0, max_value=300.0), min_size=3, max_size=3),
    st.floats(min_value=0.0, max_value=900.0),
)
def test_demand_shares_sum_to_the_target(loads: list[float], wh: list[float], left: float) -> None:
    """Whatever each feeder imported so far and however much of the interval is left, the demand
    shares sum to the campus target while the campus has not used up its interval's energy (up to
    MIN_SHARE each: a share is never below it, 0 being "off" to the agent)."""
    fs = [feeder(f"f{i}", n, 0.5 * n, 1000.0, interval_wh=e) for i, (n, e) in enumerate(zip(loads, wh, strict=True))]
    out = allocate(CampusLimits(1e6, 1e4, 8e5), fs, interval_left_s=left, interval_s=900.0)
    if 8e5 * 900 - sum(wh) * 3600 > 3.0 * max(left, 1.0):  # energy left for more than 1 W each
        assert 8e5 * (1 - 1e-12) <= sum(s.demand_target_w for s in out.values()) <= 8e5 + 3 * MIN_SHARE
    assert all(s.demand_target_w >= MIN_SHARE for s in out.values())


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.lists(st.floats(min_value=0.0, max_value=1e6), min_size=3, max_size=3), min_size=4, max_size=12),
    st.lists(st.integers(min_value=0, max_value=2), min_size=3, max_size=3),
)
def test_any_mix_of_shares_sent_in_consecutive_cycles_holds_the_limit(loads: list[list[float]], lag: list[int]) -> None:
    """Feeder i applies the share sent lag[i] cycles ago (0-2): together they never exceed the limit."""
    window = 3
    fs = lambda ls: [feeder(f"f{i}", n, 0.5 * n, 1000.0) for i, n in enumerate(ls)]  # noqa: E731
    limits = CampusLimits(1e6, 1e4, 0.0)
    allocs = [allocate(limits, fs(ls)) for ls in loads]
    sent = [to_send(allocs[max(0, k - window + 1) : k + 1]) for k in range(len(allocs))]  # as sent
    for k in range(2, len(sent)):
        mix = [sent[k - lag[i]][f"f{i}"] for i in range(3)]
        assert sum(s.import_cap_w for s in mix) <= 1e6 * (1 + 1e-12)
        assert sum(s.ramp_w_per_s for s in mix) <= 1e4 * (1 + 1e-12)


def test_a_feeder_that_has_heard_no_share_is_stale() -> None:
    fb = {"b": Share(300.0, 3.0, 0.0)}
    out = allocate(
        CampusLimits(1000.0, 10.0),
        [feeder("a", 500.0), feeder("b", 500.0, share_age_s=4.0)],
        fallback=fb,
        stale_after_s=3.0,
    )
    assert out["b"] == fb["b"]
    assert out["a"].import_cap_w == pytest.approx(700.0)
