"""Operator commands: parsed strictly, bounded by the site, refused commands change nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.live.audit import AuditLog
from agent.live.hub import Hub
from agent.model.config import load_site
from agent.model.operator import (
    ClearOverride,
    Command,
    CommandError,
    OperatorState,
    Override,
    SetMaintenance,
    SetMode,
    SetReserve,
    SiteLimits,
    apply_command,
    parse_command,
)

LIM = SiteLimits(max_power_w=1_000_000, cluster_ids=frozenset({"c1", "c2"}), max_reserve_load_w=1_000_000)
DEMO = Path(__file__).resolve().parents[1] / "agent" / "sites" / "demo.toml"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"command": "set_mode", "mode": "idle"}, SetMode("idle")),
        ({"command": "override", "setpoint_w": -5000, "duration_s": 60}, Override(-5000.0, 60.0)),
        ({"command": "clear_override"}, ClearOverride()),
        ({"command": "set_reserve", "reserve_load_w": 1e5, "reserve_minutes": 10}, SetReserve(1e5, 10.0)),
        ({"command": "maintenance", "cluster_id": "c1", "on": True}, SetMaintenance("c1", True)),
    ],
)
def test_parse(payload: dict[str, object], expected: object) -> None:
    assert parse_command(payload) == expected


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([], "command"),
        ({"command": "reboot"}, "command"),
        ({"command": "set_mode", "mode": "turbo"}, "mode"),
        ({"command": "override", "setpoint_w": float("nan"), "duration_s": 1}, "setpoint_w"),
        ({"command": "override", "setpoint_w": True, "duration_s": 1}, "setpoint_w"),
        ({"command": "override", "setpoint_w": 1}, "duration_s"),
        ({"command": "override", "setpoint_w": 1, "duration_s": 1, "x": 2}, "x"),
        ({"command": "maintenance", "cluster_id": "c1", "on": "yes"}, "on"),
    ],
)
def test_parse_rejects_naming_field(payload: object, field: str) -> None:
    with pytest.raises(CommandError) as e:
        parse_command(payload)
    assert e.value.field == field


def test_override_expires_and_is_bounded() -> None:
    s = apply_command(OperatorState(), Override(250_000, 30), now_mono=100.0, limits=LIM)
    assert s.override_active(129.9) and not s.override_active(130.0)
    with pytest.raises(CommandError, match="exceeds the site's PCS rating"):
        apply_command(s, Override(1_000_001, 30), 100.0, LIM)
    with pytest.raises(CommandError, match="duration_s"):
        apply_command(s, Override(1, 0), 100.0, LIM)


def test_maintenance_on_off_and_unknown_cluster() -> None:
    s = apply_command(OperatorState(), SetMaintenance("c2", True), 0, LIM)
    assert s.maintenance == {"c2"}
    assert apply_command(s, SetMaintenance("c2", False), 0, LIM).maintenance == frozenset()
    with pytest.raises(CommandError, match="unknown cluster 'c9'"):
        apply_command(s, SetMaintenance("c9", True), 0, LIM)


def test_derate_caps_lifts_and_is_bounded() -> None:
    def derate(cid: str, pct: float) -> Command:
        return parse_command({"command": "derate", "cluster_id": cid, "max_power_pct": pct})

    s = apply_command(OperatorState(), derate("c2", 70), 0, LIM)
    assert s.derate == (("c2", 70.0),) and s.derate_factor("c2") == 0.7 and s.derate_factor("c1") == 1.0
    s = apply_command(s, derate("c1", 50), 0, LIM)
    assert s.derate == (("c1", 50.0), ("c2", 70.0))
    s = apply_command(s, derate("c2", 100), 0, LIM)
    assert s.derate == (("c1", 50.0),)  # 100 % lifts the cap
    with pytest.raises(CommandError, match=r"max_power_pct: must be between 10 and 100"):
        apply_command(s, derate("c2", 5), 0, LIM)
    with pytest.raises(CommandError, match="unknown cluster 'c9'"):
        apply_command(s, derate("c9", 50), 0, LIM)


def test_hub_submit_audits_accepted_and_refused(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    hub = Hub(load_site(DEMO), audit, clock=lambda: 10.0)
    now = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    hub.submit(SetMaintenance("c03", True), "alice", "api", now)
    with pytest.raises(CommandError):
        hub.submit(Override(10e6, 60), "bob", "mqtt", now)
    assert hub.operator.maintenance == {"c03"} and hub.operator.override_w is None
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert '"actor":"alice"' in lines[0] and '"accepted":true' in lines[0]
    assert '"actor":"bob"' in lines[1] and '"accepted":false' in lines[1] and "PCS rating" in lines[1]


def test_a_huge_integer_is_refused_with_the_field_named() -> None:
    with pytest.raises(CommandError, match=r"setpoint_w.*too large"):
        parse_command({"command": "override", "setpoint_w": 10**400, "duration_s": 60})


def test_standing_decisions_are_restored_from_the_audit_log(tmp_path: Path) -> None:
    from agent.live.runtime import restore_operator

    audit = AuditLog(tmp_path / "audit.jsonl")
    t = datetime(2026, 7, 1, tzinfo=UTC)
    audit.record(t, "ops", "api", {"command": "SetMaintenance", "cluster_id": "c2", "on": True}, True)
    audit.record(t, "ops", "api", {"command": "Derate", "cluster_id": "c1", "max_power_pct": 60.0}, True)
    audit.record(t, "ops", "api", {"command": "SetMode", "mode": "idle"}, False, "refused")  # not applied
    audit.record(t, "ops", "api", {"command": "Override", "setpoint_w": 1000.0, "duration_s": 60.0}, True)
    with (tmp_path / "audit.jsonl").open("a") as f:
        f.write('{"t": "2026-07-01", "action": {"comm')  # torn by a power cut
    s = restore_operator(OperatorState(), tmp_path / "audit.jsonl", LIM)
    assert (s.maintenance, s.derate, s.mode, s.override_w) == (frozenset({"c2"}), (("c1", 60.0),), "auto", None)
