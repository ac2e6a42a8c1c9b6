"""The PCC meter watch: a PCS in grid-power control whose own grid meter disagrees with the site's
(a CT reversed or on the wrong ratio) is found from the mean over a window of cycles, not from one
cycle's difference (the two are read a few ms apart while the load swings by megawatts)."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from agent.live.pcc_watch import PccMeterWatch
from agent.model.snapshot import Measured, PcsSnapshot, PcsStatus, SiteSnapshot
from drivers.reading import Quality

WALL = datetime(2026, 7, 1, 12, tzinfo=ZoneInfo("Asia/Shanghai"))


def pcs(pid: str, meter_w: float, active: float = 1.0, grid_control: bool = True) -> PcsSnapshot:
    return PcsSnapshot(
        pid, (), PcsStatus.ONLINE, 630e3, grid_control=grid_control, pcc_active=Measured(active),
        pcc_grid_w=Measured(meter_w),
    )  # fmt: skip


def site(grid_w: float, *units: PcsSnapshot, grid_up: bool = True, grid_q: Quality = Quality.GOOD) -> SiteSnapshot:
    g = Measured(grid_w, grid_q)
    return SiteSnapshot(0, 0.0, WALL, g, Measured(3e6), Measured(0.0), grid_up, (), units)


def test_swings_read_apart_do_not_trip_it_but_a_reversed_ct_does_after_a_full_window() -> None:
    w = PccMeterWatch(window=4, min_w=100e3, rel=0.2)
    # The site swings 2 <-> 4 MW; p1 reads each swing a little late (+-800 kW apart, no bias);
    # p2's CT is reversed (it reads minus the grid).
    grids = [2e6, 4e6, 2e6, 4e6, 2e6, 4e6]
    p1 = [2.8e6, 3.2e6, 2.8e6, 3.2e6, 2.8e6, 3.2e6]
    found = [w.update(site(g, pcs("p1", a), pcs("p2", -g))) for g, a in zip(grids, p1, strict=True)]
    assert [set(f) for f in found] == [set(), set(), set(), {"p2"}, {"p2"}, {"p2"}]
    msg = found[3]["p2"]
    assert "-3,000 kW" in msg and "3,000 kW" in msg and "tolerance 600 kW" in msg


@pytest.mark.parametrize(
    ("pcs_mean", "latched"),
    [
        (2.0e6 + 400e3, False),  # 20 % of 2 MW is the tolerance: at it, not over
        (2.0e6 + 400.1e3, True),
        (2.0e6 - 400.1e3, True),
    ],
)
def test_the_tolerance_is_the_larger_of_min_w_and_rel_times_the_grid(pcs_mean: float, latched: bool) -> None:
    w = PccMeterWatch(window=2, min_w=100e3, rel=0.2)
    for _ in range(2):
        out = w.update(site(2.0e6, pcs("p1", pcs_mean)))
    assert ("p1" in out) is latched
    # near zero import the absolute floor applies: 150 kW apart on a 0 W grid is over 100 kW
    w = PccMeterWatch(window=2, min_w=100e3, rel=0.2)
    assert [bool(w.update(site(0.0, pcs("p1", 150e3)))) for _ in range(2)] == [False, True]


def test_a_window_counts_only_consecutive_good_cycles_in_the_mode() -> None:
    w = PccMeterWatch(window=3, min_w=100e3, rel=0.0)
    bad = pcs("p1", 1e6)
    gaps = [
        site(0.0, bad, grid_up=False),  # outage
        site(math.nan, bad, grid_q=Quality.COMM_ERROR),  # site meter lost
        site(0.0, pcs("p1", 1e6, active=0.0)),  # PCS not in the mode
        site(0.0, pcs("p1", 1e6, grid_control=False)),  # not configured for it
        site(0.0, PcsSnapshot("p1", (), PcsStatus.ONLINE, 630e3, grid_control=True, pcc_active=Measured(1.0))),
    ]
    for gap in gaps:
        assert w.update(site(0.0, bad)) == {}
        assert w.update(site(0.0, bad)) == {}
        assert w.update(gap) == {}  # the window starts again after it
    assert w.update(site(0.0, bad)) == {} and w.update(site(0.0, bad)) == {}
    assert set(w.update(site(0.0, bad))) == {"p1"}


def test_latched_until_released_then_watched_afresh() -> None:
    w = PccMeterWatch(window=2, min_w=100e3, rel=0.0)
    for _ in range(2):
        w.update(site(1e6, pcs("p1", -1e6)))
    assert set(w.latched) == {"p1"}
    # it stays latched while out of the mode and while its meter now agrees
    assert set(w.update(site(1e6, pcs("p1", 1e6, active=0.0)))) == {"p1"}
    assert set(w.update(site(1e6, pcs("p1", 1e6)))) == {"p1"}
    w.release("p1")
    assert w.update(site(1e6, pcs("p1", 1e6))) == {} and w.update(site(1e6, pcs("p1", 1e6))) == {}


def test_bad_settings_are_refused_naming_them() -> None:
    with pytest.raises(ValueError, match="window >= 2"):
        PccMeterWatch(window=1)
    with pytest.raises(ValueError, match="min_w > 0"):
        PccMeterWatch(min_w=math.nan)
