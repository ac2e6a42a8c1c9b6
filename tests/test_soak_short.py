"""The short soak (issue 7) in `make test`: the real agent process against the full simulated site for
about a minute, with every fault kind injected once on a seeded schedule (tests/soak_rig.py),
including a kill -9 and restart, a VictoriaMetrics stop/start and a mosquitto stop/start.

The long version is `bench/soak.py --minutes 60` (see RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.soak_rig import ALL_KINDS, Soak, SoakConfig, find_binary, markdown

SEED = int(os.environ.get("EMS_SOAK_SEED", "7"))


@pytest.mark.services
@pytest.mark.timeout(400)
def test_short_soak(tmp_path: Path) -> None:
    for binary in ("victoria-metrics", "mosquitto"):
        if find_binary(binary) is None:
            if os.environ.get("EMS_REQUIRE_SERVICES") == "1":
                pytest.fail(f"{binary} is not installed and EMS_REQUIRE_SERVICES=1")
            pytest.skip(f"{binary} is not installed")
    cfg = SoakConfig(seed=SEED, duration_s=50.0, short=True, cycle_s=0.5, settle_s=6.0, sample_s=2.0,
                     warmup_s=6.0)
    r = Soak(cfg, tmp_path).run()
    report = markdown(r)
    (tmp_path / "soak.json").write_text(json.dumps(r, indent=1, default=str))
    where = f"\n{report}\n(work files: {tmp_path})"

    # the schedule really touched every kind, and each one ran (none skipped)
    ran = {k: s["count"] - s["skipped"] for k, s in r["faults"].items()}
    assert all(ran.get(k, 0) >= 1 for k in ALL_KINDS), f"kinds not exercised: {ran}{where}"
    assert not r["rig_errors"], where
    # the safety contract held at every cycle, and the cycles checked are (nearly) all of them
    assert r["violation_count"] == 0, where
    assert r["cycles_checked_from_telemetry"] == r["telemetry"]["cycles"], where
    assert r["telemetry"]["cycles"] >= 0.5 * r["fault_phase_s"] / cfg.cycle_s, where
    # no crash, no traceback, clean exits on SIGTERM
    assert not r["tracebacks"] and not r["simulator_traceback"], where
    assert [a["how"] for a in r["agent_runs"]].count("kill9") >= 1, where
    assert all(a["how"] in ("kill9", "term") for a in r["agent_runs"]), where
    assert all(a["rc"] == 0 for a in r["agent_runs"] if a["how"] == "term"), where
    # telemetry complete after the database and broker outages: every cycle of every run readable,
    # except what a kill -9 took from memory (at most the flush interval plus the cycle in flight)
    t = r["telemetry"]
    assert t["missing_inside_runs"] == 0 and t["incomplete_cycles"] == 0, where
    assert t["lost_at_clean_stops"] == 0 and t["clean_stops_without_count"] == 0, where
    assert t["max_seconds_lost_at_a_kill"] <= 0.2 + 2 * cfg.cycle_s + 0.5, where
    # the plant went to 0 W by itself while the agent was dead
    assert r["pcs_revert_after_kill"] and r["ok"]["plant_at_0_W_after_kill"], where
    # ledger: intervals unique, counted time within wall time, nothing rewritten by the restart,
    # every closed interval equal to a recomputation from the telemetry
    led = r["ledger"]
    assert led["intervals"] >= 1 and led["rows_checked_at_kills"] >= 1, where
    assert led["ok"], where
    # no unauthenticated (or replayed) command changed anything
    assert r["auth"]["unauthenticated_state_changes"] == 0, where
    assert r["auth"]["hostile_mqtt_sent"] >= 9 and r["auth"]["hostile_api_requests"] >= 5, where
    # resources of the longest run: no runaway sockets or memory in a minute
    longest = max(r["agent_runs"], key=lambda a: a["resources"].get("span_s", 0))["resources"]
    assert longest["sockets_end"] <= longest["sockets_start"] + 8, where
    assert longest["rss_mb_end"] <= longest["rss_mb_start"] + 60, where


# --- regressions for what the soak found --------------------------------------------------------
def test_operator_decisions_survive_a_restart(tmp_path: Path) -> None:
    """Found by the soak: a cluster isolated by an operator was commanded again by the agent after a
    kill -9 restart (operator state lived only in memory). Maintenance, mode and reserve are now
    replayed from the audit log at start; overrides are not (time-limited; ending is safe)."""
    from datetime import datetime

    from agent.live.runtime import Runtime
    from agent.model.config import load_site
    from agent.model.operator import Override, SetMaintenance, SetMode, SetReserve
    from tests.fakes import DEMO_SITE

    site = load_site(DEMO_SITE)
    now = datetime.now(site.timezone)
    first = Runtime(site, tmp_path, api_port=0)
    hub = first.hub
    hub.submit(SetMaintenance("c03", True), "mqtt:ops", "mqtt", now)
    hub.submit(SetMaintenance("c05", True), "mqtt:ops", "mqtt", now)
    hub.submit(SetMaintenance("c05", False), "mqtt:ops", "mqtt", now)
    hub.submit(SetMode("idle"), "api:ops", "api", now)
    hub.submit(SetReserve(500_000.0, 30.0), "api:ops", "api", now)
    hub.submit(Override(100_000.0, 600.0), "api:ops", "api", now)
    with pytest.raises(Exception, match="unknown cluster"):
        hub.submit(SetMaintenance("c99", True), "mqtt:ops", "mqtt", now)  # refused: audited, not restored
    if first.ledger is not None:
        first.ledger.close()
    with (tmp_path / "audit.jsonl").open("a") as f:
        f.write('{"time": "2026-12-01T00:00:00+08:00", "actor": "x", "acc')  # torn by a power cut

    again = Runtime(site, tmp_path, api_port=0)
    op = again.hub.operator
    assert op.maintenance == frozenset({"c03"})
    assert op.mode == "idle"
    assert (op.reserve_load_w, op.reserve_minutes) == (500_000.0, 30.0)
    assert op.override_w is None
    if again.ledger is not None:
        again.ledger.close()
    # a cluster the site file leaves out at the restart (being serviced) keeps its maintenance flag
    # for when it is configured again
    from dataclasses import replace

    without = replace(site, clusters=tuple(c for c in site.clusters if c.id != "c03"))
    third = Runtime(without, tmp_path, api_port=0)
    assert "c03" in third.hub.operator.maintenance
    if third.ledger is not None:
        third.ledger.close()


def test_a_command_signed_before_the_agent_started_is_refused() -> None:
    """Found by the soak: a signed command captured before a restart was accepted again by the
    restarted agent (its nonce memory was new). Messages signed before the start are now stale."""
    from agent.mqtt import AuthError, Verifier, sign

    key = b"0123456789abcdef-regression"
    v = Verifier(key, 30.0, not_before=1000.0)
    msg = {"id": "a", "actor": "ops", "ts": 999.5, "nonce": "n-00000001", "command": {"command": "set_mode"}}
    with pytest.raises(AuthError, match="stale"):
        v.verify(sign(key, msg), now_epoch=1001.0)
    v.verify(sign(key, {**msg, "ts": 1000.5, "nonce": "n-00000002"}), now_epoch=1001.0)
    # the default keeps the old behaviour for callers that do not say when they started
    Verifier(key, 30.0).verify(sign(key, msg), now_epoch=1001.0)


def test_the_invariant_checker_flags_each_violation() -> None:
    """The soak's checker is only worth its zero if it can count: one bad cycle per rule."""
    from agent.model.config import load_site
    from tests.fakes import DEMO_SITE
    from tests.soak_rig import Checks, Cycle

    site = load_site(DEMO_SITE)

    def healthy() -> Cycle:
        c = Cycle(t_ms=1_800_000_000_000, seq=1, grid_up=True, grid_w=1e6, load_w=1e6, pv_w=0.0,
                  site_setpoint_w=0.0)
        for cl in site.clusters:
            c.clusters[cl.id] = {"setpoint_w": 0.0, "status": 0, "soc_pct": 60.0, "soc_ok": True, "limits_ok": True,
                                 "max_charge_w": 200e3, "max_discharge_w": 200e3}
        for p in site.pcs:
            c.pcs[p.id] = {"command_w": 0.0, "status": 0}
        return c

    def put(c: Cycle, cid: str, w: float) -> Cycle:
        c.clusters[cid]["setpoint_w"] = w
        pid = next(p.id for p in site.pcs if cid in p.clusters)
        c.pcs[pid]["command_w"] += w
        c.site_setpoint_w = (c.site_setpoint_w or 0.0) + w
        return c

    cases: dict[str, Cycle] = {}
    c = put(healthy(), "c01", 1e5)
    c.clusters["c01"]["status"] = 1
    cases["commanded_cluster_not_online"] = c
    c = put(healthy(), "c02", 1e5)
    c.clusters["c02"]["limits_ok"] = False
    cases["commanded_cluster_without_good_data"] = c
    cases["cluster_beyond_bms_limit"] = put(healthy(), "c03", -250e3)
    c = put(healthy(), "c04", 1e5)
    c.clusters["c04"]["soc_pct"] = 20.5
    cases["discharge_below_reserve"] = c
    c = put(healthy(), "c05", -1e5)
    c.clusters["c05"]["soc_pct"] = 96.0
    cases["charge_above_soc_max"] = c
    c = healthy()
    for cid in ("c07", "c08", "c09"):
        c.clusters[cid]["max_discharge_w"] = 300e3
        put(c, cid, 250e3)
    cases["pcs_beyond_rating"] = c
    c = put(healthy(), "c10", 1e5)
    c.pcs["pcs4"]["status"] = 1
    cases["commanded_pcs_not_online"] = c
    c = put(healthy(), "c11", 1e5)
    c.pcs["pcs4"]["command_w"] = 0.0
    cases["pcs_command_not_sum_of_clusters"] = c
    c = put(healthy(), "c12", 1e5)
    c.load_w = 5e4
    cases["discharge_beyond_load_would_export"] = c
    cases["commanded_cluster_in_maintenance"] = put(healthy(), "c06", 1e5)

    t_s = 1_800_000_000.0
    for want, cyc in cases.items():
        checks = Checks(site, {"c06": [(t_s - 60.0, t_s + 60.0)]})
        checks.cycle(healthy(), "telemetry")
        assert not checks.violations, (want, checks.examples)
        checks.cycle(cyc, "telemetry")
        assert set(checks.violations) == {want}, (want, checks.examples)

    # An isolation ramps its PCS out at the ramp limit before the contactor opens (issue 14 item 3):
    # a cluster shown in maintenance (status 3) whose setpoint falls cycle by cycle is no violation;
    # one that grows again, or that comes a cycle late (no ramp from the cycle before), is
    def ramp(seq: int, w: float, status: int = 3) -> Cycle:
        c = healthy()
        c.seq, c.t_ms = seq, c.t_ms + 1000 * seq
        c.clusters["c06"]["status"] = status
        return put(c, "c06", w)

    checks = Checks(site, {"c06": [(t_s + 1.5, t_s + 60.0)]})  # held from just after cycle 1
    for seq, w, status in ((1, 1e5, 0), (2, 6e4, 3), (3, 2e4, 3), (4, 0.0, 3)):
        checks.cycle(ramp(seq, w, status), "telemetry")
    assert not checks.violations, checks.examples
    for seq, w in ((5, 6e4), (6, 7e4), (8, 5e4)):
        checks.cycle(ramp(seq, w), "telemetry")
    assert checks.violations == {"commanded_cluster_not_online": 3, "commanded_cluster_in_maintenance": 3}
