"""The coordinator's cycle without a broker: the campus meter read over real Modbus TCP from the
campus simulator (the sum of the feeders' grid meters), reports verified, shares allocated and signed."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from agent.campus.allocate import NOT_SENT, FeederState, Share
from agent.campus.config import CampusConfig, load_campus
from agent.campus.coordinator import SHARE_WINDOW, Coordinator
from agent.campus.keep import new_day
from agent.campus.messages import parse_share, share_topic, signed_report
from agent.economics.tariff import TARIFF_DIR
from agent.model.config import load_site
from agent.model.interval import local_slot
from agent.mqtt.auth import Verifier
from simulators.campus import SimulatedCampus
from tests.fakes import ROOT

EXAMPLE = ROOT / "agent" / "sites" / "campus_demo"


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[CampusConfig, SimulatedCampus]]:
    cfg = load_campus(EXAMPLE / "CAMPUS.toml")
    sites = []
    for f in cfg.feeder_files:  # quiet, at noon
        text = f.read_text().replace("soc_pct = 60", "soc_pct = 60\nstart_hour = 12\nnoise = false")
        text = text.replace('key_file = "campus.key"', f'key_file = "{EXAMPLE / "campus.key"}"')
        (tmp_path / f.name).write_text(text)
        sites.append(load_site(tmp_path / f.name))
    campus = SimulatedCampus(sites, cfg.meter, any_port=True)
    await campus.start()
    try:
        yield replace(cfg, meter=replace(cfg.meter, port=campus.ports["campus"])), campus
    finally:
        await campus.stop()


def report(
    cfg: CampusConfig, site: str, net: float, dis: float, ts: float, key: bytes | None = None, unheard_s: float = 0.0
) -> bytes:
    f = FeederState(site, net, net, dis, dis, 400_000.0, share_age_s=unheard_s)
    return signed_report(key or cfg.broker.secret, f, ts)


async def test_campus_meter_reads_the_sum_of_the_feeders(served: tuple[CampusConfig, SimulatedCampus]) -> None:
    cfg, campus = served
    coord = Coordinator(cfg)
    try:
        await coord.cycle()
        assert coord.campus_w == pytest.approx(campus.import_w, rel=0.01)  # read over Modbus, a tick apart
        assert 2.7e6 < coord.campus_w < 3.6e6  # three feeders of about 0.9-1.25 MW each
    finally:
        await coord.meter.close()


async def test_reports_verified_and_stale_feeders_on_their_fallback(
    served: tuple[CampusConfig, SimulatedCampus],
) -> None:
    cfg, _ = served
    coord = Coordinator(cfg)
    topic = coord.report_prefix
    now = time.time()
    try:
        shares = await coord.cycle()
        assert shares == cfg.fallback  # nobody reported yet: every feeder on its fallback
        assert coord.on_report(topic + "feeder_a", report(cfg, "feeder_a", 1_500_000.0, 600_000.0, now))
        assert coord.on_report(topic + "feeder_b", report(cfg, "feeder_b", 1_000_000.0, 600_000.0, now))
        forged = report(cfg, "feeder_c", 0.0, 0.0, now, key=b"someone-elses-key-0123456789")
        assert not coord.on_report(topic + "feeder_c", forged)
        assert not coord.on_report(topic + "feeder_x", report(cfg, "feeder_x", 0.0, 0.0, now))
        swapped = report(cfg, "feeder_a", 0.0, 0.0, now)  # a's report on b's topic
        assert not coord.on_report(topic + "feeder_b", swapped)
        assert coord.refused == {"unauthenticated": 1, "malformed": 2}
        first = await coord.cycle()
        assert first["feeder_a"].import_cap_w == 900_000.0  # held down: a rise comes SHARE_WINDOW cycles late
        assert first["feeder_b"].import_cap_w == pytest.approx(800_000.0, abs=1e-6)  # a fall at once
        for _ in range(SHARE_WINDOW - 1):
            shares = await coord.cycle()
        assert shares["feeder_c"] == Share(900_000.0, 80_000.0, 0.0)  # still silent: its fallback
        # a and b share the rest: 2.1 MW (1 W each first: allocate.MIN_SHARE) for 2.5 MW of net
        # load -> 400,002 W from their batteries, split by energy (equal here): 200,001 W each
        assert shares["feeder_a"].import_cap_w == pytest.approx(1_300_000.0, abs=1e-6)
        assert shares["feeder_b"].import_cap_w == pytest.approx(800_000.0, abs=1e-6)
        assert sum(s.ramp_w_per_s for s in shares.values()) == pytest.approx(300_000.0)
        state = json.loads(coord._outbox[coord.state_topic])
        assert state["feeders"]["feeder_c"]["fallback"] is True
        assert state["feeders"]["feeder_a"]["fallback"] is False
        assert state["refused"] == {"unauthenticated": 1, "malformed": 2}
        # each share goes out signed with the campus key, for its own site
        raw = coord._outbox[share_topic("ems", "campus_demo", "feeder_a")]
        msg = json.loads(raw)
        Verifier(cfg.broker.secret, 30.0).verify(msg, time.time())
        seq, sent = parse_share(msg, "feeder_a")
        assert seq == coord.seq
        assert sent.import_cap_w == pytest.approx(shares["feeder_a"].import_cap_w, abs=1e-3)
    finally:
        await coord.meter.close()


async def test_a_feeder_that_hears_no_shares_is_put_on_its_fallback(
    served: tuple[CampusConfig, SimulatedCampus],
) -> None:
    """Its reports arrive, but it says it has had no share for longer than the campus's stale_after_s:
    it will fall back by itself soon, so the others are given only what its fallback leaves."""
    cfg, _ = served
    coord = Coordinator(cfg)
    topic, now = coord.report_prefix, time.time()
    try:
        for site in ("feeder_a", "feeder_b"):
            assert coord.on_report(topic + site, report(cfg, site, 1_000_000.0, 600_000.0, now))
        assert coord.on_report(topic + "feeder_c", report(cfg, "feeder_c", 1_000_000.0, 0.0, now, unheard_s=3.5))
        for _ in range(SHARE_WINDOW):
            shares = await coord.cycle()
        assert shares["feeder_c"] == cfg.fallback["feeder_c"]
        assert shares["feeder_a"].import_cap_w + shares["feeder_b"].import_cap_w == pytest.approx(2_100_000.0)
        assert coord.stale == {"feeder_c"}
    finally:
        await coord.meter.close()


async def test_demand_shares_split_the_interval_energy_left(served: tuple[CampusConfig, SimulatedCampus]) -> None:
    """The coordinator splits the campus's interval energy left (allocate.split_demand) by its own
    clock's time left in the interval, from each feeder's reported import so far; a report counted
    in an interval that has ended counts nothing in the next."""
    cfg, _ = served
    cfg = replace(cfg, limits=replace(cfg.limits, demand_target_w=3_000_000.0))
    length = cfg.demand_interval_s
    now = [(time.time() // length + 1) * length + length - 300.0]  # 300 s left in the interval
    coord = Coordinator(cfg, epoch=lambda: now[0])
    topic = coord.report_prefix
    loads = {"feeder_a": 1_500_000.0, "feeder_b": 1_000_000.0, "feeder_c": 500_000.0}

    def send(wh: float) -> None:
        for site, net in loads.items():
            f = FeederState(site, net, net, 600_000.0, 600_000.0, 400_000.0, interval_wh=wh)
            assert coord.on_report(topic + site, signed_report(cfg.broker.secret, f, now[0]))

    try:
        # each imported 1 MW for the 600 s so far: 3 x 900 - 3 x 600 = 900 MW s left over 300 s = 3 MW
        # of rate, the loads' sum less 3 W of headroom: each its load + 1 W, and its level
        # (1 MW x 600 s + rate x 300 s) / 900 s
        send(1_000_000.0 * 600 / 3600)
        shares = await coord.cycle()
        for site, net in loads.items():
            want = (1e6 * 600 + net * 300) / 900
            assert shares[site].demand_target_w == pytest.approx(want, abs=1e-3)
        assert sum(s.demand_target_w for s in shares.values()) == pytest.approx(3_000_000.0)
        now[0] += 310.0  # 10 s into the next interval: those reports' energy is the last interval's
        shares = await coord.cycle()
        # nothing imported yet: 3 MW x 900 s over 890 s; the headroom over the loads (and 1 W each)
        # by the load a feeder's 600 kW battery cannot carry + 10 % of its load + 1 W + its 600 kW
        # of charge power
        rate = 3e6 * 900 / 890
        weights = {"feeder_a": 1_650_001.0, "feeder_b": 1_100_001.0, "feeder_c": 650_001.0}
        head = rate - 3.0 - 3e6
        for site, net in loads.items():
            want = (1.0 + net + head * weights[site] / sum(weights.values())) * 890 / 900
            assert shares[site].demand_target_w == pytest.approx(want, rel=1e-9)
    finally:
        await coord.meter.close()


async def test_shares_carry_the_campus_keep_split_by_energy(served: tuple[CampusConfig, SimulatedCampus]) -> None:
    """With a demand target the coordinator sends each feeder its part of the campus's keep
    (agent/campus/keep.py): on a day profile 0.53 MW over the 3 MW target's aim (1 % under it) in every
    slot, the rest of the day from the slot now, 0.53 MW x 15 min per slot, split by the energy each
    reports (equal)."""
    cfg, _ = served
    cfg = replace(cfg, limits=replace(cfg.limits, demand_target_w=3_000_000.0))
    length = cfg.demand_interval_s
    now = (time.time() // length + 1) * length + 100.0
    coord = Coordinator(cfg, epoch=lambda: now)
    for site in cfg.feeders:
        f = FeederState(site, 1e6, 1e6, 600_000.0, 600_000.0, 400_000.0)
        assert coord.on_report(coord.report_prefix + site, signed_report(cfg.broker.secret, f, now))
    try:
        shares = await coord.cycle()  # no day profile yet: none sent, each agent keeps its own
        assert {s.keep_wh for s in shares.values()} == {NOT_SENT} and coord.state([])["keep_wh"] == NOT_SENT
        coord.demand = replace(coord.demand, day=new_day(length, [3.5e6] * 96))  # the fixed target's profile
        shares = await coord.cycle()
        _, slot, _, _ = local_slot(datetime.fromtimestamp(now, cfg.timezone), length)
        keep = (96 - slot) * 0.53e6 * length / 3600.0
        assert coord.keep_wh == pytest.approx(keep)
        for s in shares.values():
            assert s.keep_wh == pytest.approx(keep / 3)
    finally:
        await coord.meter.close()


async def test_an_economic_campus_sends_the_level_of_its_own_window(
    served: tuple[CampusConfig, SimulatedCampus],
) -> None:
    """demand_target_w = 0 with the campus's tariff (PG&E E-20): economic, as a site's 0 is
    (agent/campus/levels.py). No level before the campus's first interval closes (each agent decides
    alone, the shares carry no demand target); then, with less than half a day of profile, the highest
    interval seen (demand.close_interval's fallback): the three feeders' 1 MW each, 3 MW, split into
    shares that sum to it, and the state names it."""
    cfg, _ = served
    cfg = replace(
        cfg, limits=replace(cfg.limits, demand_target_w=0.0), tariff_path=TARIFF_DIR / "pge_e20_secondary_2014.toml"
    )
    length = cfg.demand_interval_s
    clock = [0.0]
    now = [(time.time() // length + 1) * length + 30.0]  # 30 s into an interval
    coord = Coordinator(cfg, clock=lambda: clock[0], epoch=lambda: now[0])
    try:
        for k in range(17):  # a minute apart: the interval after the first one opened is reached
            for site in cfg.feeders:
                assert coord.on_report(coord.report_prefix + site, report(cfg, site, 1e6, 6e5, now[0]))
            shares = await coord.cycle()
            if k == 0:
                assert {s.demand_target_w for s in shares.values()} == {0.0}
                assert coord.state([])["demand_level_w"] is None
            clock[0] += 60.0
            now[0] += 60.0
        assert coord.level.target_w == pytest.approx(3e6)
        assert sum(s.demand_target_w for s in shares.values()) == pytest.approx(3e6)
        assert coord.state([])["demand_level_w"] == pytest.approx(3e6)
    finally:
        await coord.meter.close()


async def test_a_restarted_coordinator_sends_the_level_it_would_have_sent(
    served: tuple[CampusConfig, SimulatedCampus], tmp_path: Path
) -> None:
    """The campus demand state kept across a restart (agent/campus/saved.py): a coordinator stopped
    (killed) mid-month, mid-interval and started again 3 minutes later sends, at its first cycle, the level,
    keep and recharge the one that never stopped sends, and shares that split the same target.
    Without the file its first level is none (inf) and the peak billed at 10:15 is forgotten."""
    cfg, _ = served
    cfg = replace(
        cfg, limits=replace(cfg.limits, demand_target_w=0.0), tariff_path=TARIFF_DIR / "pge_e20_secondary_2014.toml"
    )
    state = tmp_path / "state" / "campus_state.json"
    clock = [0.0]
    now = [datetime(2026, 7, 15, 10, 0, 30, tzinfo=cfg.timezone).timestamp()]  # 30 s into an interval

    def make(path: Path | None) -> Coordinator:
        return Coordinator(cfg, clock=lambda: clock[0], epoch=lambda: now[0], state_path=path)

    async def step(coords: list[Coordinator]) -> None:
        hour = datetime.fromtimestamp(now[0], cfg.timezone)
        net = 1.4e6 if (hour.hour, hour.minute // 15) == (10, 1) else 1e6  # one high interval: 10:15-10:30
        for c in coords:
            for site in cfg.feeders:
                assert c.on_report(c.report_prefix + site, report(cfg, site, net, 6e5, now[0]))
            await c.cycle()
        clock[0] += 60.0
        now[0] += 60.0

    steady, killed = make(None), make(state)
    restarted = fresh = None
    try:
        for _ in range(125):  # to 12:05:30, in the peak window
            await step([steady, killed])
        assert state.exists()  # killed: what it wrote when the 12:00 interval opened is all there is
        for _ in range(3):  # down for 3 minutes
            await step([steady])
        restarted, fresh = make(state), make(None)
        await step([steady, restarted, fresh])
        assert restarted.level == steady.level
        # the 10:15 interval, billed: 870 s at 3 x 1.4 MW, its last 30 s booked from the 10:30:30 reading
        assert restarted.level.target_w == pytest.approx((870 * 4.2e6 + 30 * 3e6) / 900)
        assert {s: x.demand_target_w for s, x in restarted.shares.items()} == pytest.approx(
            {s: x.demand_target_w for s, x in steady.shares.items()}
        )
        assert sum(x.demand_target_w for x in restarted.shares.values()) == pytest.approx(4.16e6)
        assert fresh.level.target_w == float("inf")  # what a restart without the file sends: no level
        # a file from another month is not used: the peaks it holds are not this month's
        now[0] = datetime(2026, 8, 1, 0, 0, 30, tzinfo=cfg.timezone).timestamp()
        assert make(state).demand == make(None).demand
    finally:
        for c in (steady, killed, restarted, fresh):
            if c is not None:
                await c.meter.close()
