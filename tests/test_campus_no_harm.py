"""Issue 16: a coordinated campus is never worse off than with no battery (agent.offline.campus_replay).

The hand-made campus, two days at 60 s from Wednesday 1 July 2026 (PG&E's summer weekday peak
window is 12:00-18:00): three feeders, each a GPU job swinging +-0.4 MW in a 10-minute square wave
(5 minutes high, 5 low) around 1.0 MW by day and 0.7 MW from 00:00 to 06:00, 0, 3 and 7 minutes
apart, so their swings cancel in part: the campus reads 1.7-3.4 MW and its 15-minute averages reach
3.08 MW at most. The campus target is that: 3.08 MW. Each feeder has 4 clusters (1.67 MWh, 836 kW),
starting at 50 %, 0.15 per kWh of wear.

Before the coordinator decided the campus's demand bound (agent/campus/bound.py) each agent bounded
its battery against its own share: a feeder whose swing was up discharged for it, one whose swing was
down held, while the campus, where the swings cancel, needed little; and each agent recharged for its
own feeder's envelope against its share. On PG&E (no round trip pays at that wear) the campus lost
268 USD against no battery where the pooled controller of the same batteries saved 912; on Shanghai
it billed 3,115 kW (35 kW above no battery) and saved 37 % of what the pooled controller saved.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest

from agent.campus.allocate import CampusLimits
from agent.economics.tariff import bundled
from agent.offline.campus_replay import CampusRun, Feeder, coordinated, evaluate_campus, ideal
from agent.offline.replay import Trace
from tests.test_analyze import demo

STEP = 60.0
DAYS = 2
N = int(DAYS * 86400 / STEP)
PERIOD = 10  # steps (minutes) of one swing
OFFSETS = (0, 3, 7)  # each feeder's swing, minutes late
TARGET = 3.08e6  # the campus's highest 15-minute average


def campus(tariff_name: str) -> list[Feeder]:
    """The three feeders of the module doc, in the tariff's time zone."""
    tariff = bundled(tariff_name)
    t0 = datetime(2026, 7, 1, tzinfo=tariff.timezone).timestamp()
    ts = t0 + STEP * np.arange(N, dtype=np.float64)
    k = np.arange(N)
    base = np.where((k * STEP / 3600.0) % 24.0 < 6.0, 0.7e6, 1.0e6)
    out = []
    for i, off in enumerate(OFFSETS):
        load = base + np.where((k + off) % PERIOD < PERIOD // 2, 0.4e6, -0.4e6)
        site = replace(demo(4, reserve_load_w=0.0), id=f"f{i + 1}", timezone=tariff.timezone, cycle_s=STEP)
        out.append(Feeder(site, Trace(ts, load, source=f"f{i + 1}")))
    return out


def score(run: CampusRun, tariff_name: str) -> dict[str, float]:
    r = evaluate_campus(run, bundled(tariff_name), 0.15, 0.96)
    return {
        "savings": r["adjusted_net_savings"],
        "peak": r["billed_peak_kw"],
        "base": r["baseline_peak_kw"],
        "discharged_kwh": r["battery_use"]["discharge_kwh"],
    }


def runs(tariff_name: str, target_w: float = TARGET) -> tuple[dict[str, float], dict[str, float]]:
    """(coordinated, pooled) on the campus at `target_w` (0: economic, each deciding its own levels)."""
    fs, tariff, limits = campus(tariff_name), bundled(tariff_name), CampusLimits(demand_target_w=target_w)
    co = score(coordinated(fs, limits, tariff, start_soc_pct=50.0), tariff_name)
    return co, score(ideal(fs, limits, tariff, start_soc_pct=50.0), tariff_name)


def test_the_hand_made_campus() -> None:
    net = np.sum([f.trace.net_w for f in campus("pge_e20_secondary_2014")], axis=0)
    assert (net.min(), net.max()) == (1.7e6, 3.4e6)
    assert net.reshape(-1, 15).mean(axis=1).max() == TARGET


def test_pge_coordinated_campus_is_never_worse_than_no_battery() -> None:
    """PG&E: a saving, and no interval billed above no battery's in any window."""
    co, one = runs("pge_e20_secondary_2014")
    assert one["savings"] > 0.0  # the pooled controller saves here: 912 USD
    assert co["savings"] >= 0.0  # main (2ee71f9): -268
    assert co["peak"] <= co["base"]


def test_shanghai_coordinated_campus_is_never_worse_than_no_battery() -> None:
    """Shanghai: a saving near the pooled controller's, the billed peak within one late cycle of it.

    The coordinated campus answers a feeder's load step a cycle late (its part of the campus's bound
    is made on the readings before): a 0.8 MW step charged through one 60 s cycle in an interval's
    last minute moves its average by 0.8 MW x 60 / 900 = 53 kW that no later cycle recovers. So the
    billed peak is held to no battery's plus that (3,133 kW; now 3,094, the pooled controller 3,085),
    and the saving, which pays for it, to at least 80 % of the pooled controller's (main: 37 %)."""
    co, one = runs("shanghai_ci_two_part")
    assert co["savings"] >= 0.0
    assert co["peak"] <= co["base"] + 0.8e3 * STEP / 900.0
    assert co["savings"] >= 0.8 * one["savings"]


@pytest.mark.parametrize("tariff_name", ["pge_e20_secondary_2014", "shanghai_ci_two_part"])
def test_economic_coordinated_campus_is_never_worse_than_no_battery(tariff_name: str) -> None:
    """No campus target (CAMPUS.toml demand_target_w = 0): the coordinator decides the campus's level
    per demand window by the pooled controller's own rules (agent/campus/levels.py), and the pooled
    controller decides its own. A saving on both tariffs, at least 80 % of the pooled controller's
    (measured: PG&E 9,659 USD against 6,973; Shanghai 3,114 CNY against 2,914), the billed peak within
    one late cycle of no battery's as at a fixed target (PG&E 3,080.5 kW, 3,083.5 before a discharge
    part followed the feeder's own step: at 18:00 on the first day, under a level of 3,111 kW, a charge
    part made on a low reading applied at a 3.4 MW minute; the pooled controller bills 3,084.4 kW on
    Shanghai itself)."""
    co, one = runs(tariff_name, 0.0)
    assert one["savings"] > 0.0
    assert co["savings"] >= 0.0
    assert co["savings"] >= 0.8 * one["savings"]
    assert co["peak"] <= co["base"] + 0.8e3 * STEP / 900.0
