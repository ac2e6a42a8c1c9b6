"""One alarm catalogue: every code the agent raises has a severity and a title in English and
Chinese, and the loop's alarm reconciliation raises exactly what a snapshot and a plan call for."""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from agent.live.alarm_sync import AlarmSync, wanted_alarms
from agent.live.pcc_watch import PccMeterWatch
from agent.model.alarms import CATALOGUE, AlarmBook, Severity, kind
from agent.model.plan import Plan
from agent.model.snapshot import ClusterStatus, Measured, PcsStatus
from drivers.reading import Quality

from .fakes import demo_site, snapshot_for

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)
CJK = re.compile(r"[\u4e00-\u9fff]")


def _raised_codes() -> dict[str, str]:
    """Every alarm code written as a literal where the agent raises one: the book's raise_, the
    telemetry feed's alarm(), the reconciler's _want() and the controllers' alarms (appended,
    added as a tuple, or raised with a window's bound())."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "agent").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"
            # the controllers: `alarms += ("code",)` and a window's `w.bound(..., "code")`
            if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id == "alarms":
                if isinstance(node.value, ast.Tuple):
                    for e in node.value.elts:
                        if isinstance(e, ast.Constant) and isinstance(e.value, str):
                            found[e.value] = where
                continue
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "bound"
                and len(node.args) == 6
                and isinstance(node.args[5], ast.Constant)
                and isinstance(node.args[5].value, str)
            ):
                found[node.args[5].value] = where
                continue
            if not isinstance(node, ast.Call) or not isinstance(node.func, (ast.Attribute, ast.Name)):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            args = node.args
            if name == "_want":
                args = args[1:]
            elif name == "append":
                target = node.func.value if isinstance(node.func, ast.Attribute) else None
                if not (isinstance(target, ast.Name) and target.id == "alarms"):
                    continue
            elif name not in ("raise_", "alarm"):
                continue
            if args and isinstance(args[0], ast.Constant) and isinstance(args[0].value, str):
                found[args[0].value] = f"{path.relative_to(ROOT)}:{node.lineno}"
    return found


def test_every_code_the_agent_raises_is_in_the_catalogue() -> None:
    codes = _raised_codes()
    # the scan sees the known raisers (so it cannot pass by finding nothing)
    assert {"cluster_fault", "write_failed", "telemetry_down", "export_unavoidable"} <= codes.keys()
    missing = {c: where for c, where in codes.items() if c not in CATALOGUE}
    assert missing == {}


def test_every_entry_has_a_title_in_both_languages() -> None:
    for code, k in CATALOGUE.items():
        assert k.code == code
        assert k.en.strip() and not CJK.search(k.en), code
        assert CJK.search(k.zh), code
        assert k.text() == {"en": k.en, "zh": k.zh}


def test_the_book_takes_the_severity_from_the_catalogue() -> None:
    book = AlarmBook()
    book.raise_("cluster_fault", "c01", "BMS reports a fault", T0)
    book.raise_("write_failed", "pcs1", "timeout", T0)
    book.raise_("not_catalogued", "x", "m", T0)
    sev = {a.id: a.severity for a in book.active()}
    assert sev == {
        "cluster_fault@c01": Severity.CRITICAL,
        "write_failed@pcs1": Severity.WARNING,
        "not_catalogued@x": Severity.WARNING,  # never lost for want of a title
    }
    assert kind("not_catalogued").en == "not catalogued"


def _plan(alarms: tuple[str, ...] = ()) -> Plan:
    return Plan(1, "auto", 0.0, 0.0, "idle", "", (), {}, {}, alarms=alarms)


def test_wanted_alarms_of_one_cycle() -> None:
    site = demo_site()
    snap = snapshot_for(site, 1, 1.0, T0)
    c = list(snap.clusters)
    c[0] = replace(c[0], status=ClusterStatus.FAULT)
    c[1] = replace(c[1], status=ClusterStatus.OFFLINE)  # SoC still good: contactor open
    c[2] = replace(c[2], status=ClusterStatus.OFFLINE, soc_pct=Measured.missing(Quality.STALE))
    p = list(snap.pcs)
    p[0] = replace(p[0], status=PcsStatus.FAULT)
    p[1] = replace(p[1], status=PcsStatus.OFFLINE, power_w=Measured.missing())
    snap = replace(
        snap, clusters=tuple(c), pcs=tuple(p), grid_up=False, pv_w=Measured.missing(Quality.STALE)
    )
    w = wanted_alarms(
        snap,
        _plan(("grid_outage_backup",)),
        site.meters,
        pcc_pending=frozenset({"pcs3"}),  # commanded into PCC mode, pcc_active not read back
        pcc_latched={"pcs4": "meters disagree"},
    )
    assert w == {
        "cluster_fault@c01": ("cluster_fault", "c01", "BMS reports a fault"),
        "cluster_disconnected@c02": (
            "cluster_disconnected",
            "c02",
            "BMS reports the cluster disconnected (contactor open)",
        ),
        "device_comm@c03": ("device_comm", "c03", "no usable data (stale)"),
        "pcs_fault@pcs1": ("pcs_fault", "pcs1", "PCS tripped or faulted"),
        "device_comm@pcs2": ("device_comm", "pcs2", "no usable data (comm_error)"),
        "pcc_inactive@pcs3": (
            "pcc_inactive",
            "pcs3",
            "commanded into grid-power (PCC) control but pcc_active does not read 1",
        ),
        "pcc_meter_mismatch@pcs4": ("pcc_meter_mismatch", "pcs4", "meters disagree"),
        "device_comm@pv": ("device_comm", "pv", "no usable data (stale)"),
        "grid_outage@grid": ("grid_outage", "grid", "utility supply lost"),
        "grid_outage_backup@control": (
            "grid_outage_backup",
            "control",
            "Grid outage: the battery carries the site",
        ),
    }


def test_reconcile_raises_then_clears_and_releases_an_acked_meter_mismatch() -> None:
    site = demo_site()
    book = AlarmBook()
    sync = AlarmSync(book)
    watch = PccMeterWatch()
    watch.latched["pcs1"] = "meters disagree"
    snap = snapshot_for(site, 1, 1.0, T0)
    faulted = replace(snap, clusters=(replace(snap.clusters[0], status=ClusterStatus.FAULT), *snap.clusters[1:]))
    sync.reconcile(faulted, _plan(("export_unavoidable",)), site.meters, frozenset(), watch)
    assert {(a.id, a.severity) for a in book.active()} == {
        ("cluster_fault@c01", Severity.CRITICAL),
        ("export_unavoidable@control", Severity.WARNING),
        ("pcc_meter_mismatch@pcs1", Severity.WARNING),
    }
    book.ack("pcc_meter_mismatch@pcs1", "op")
    sync.reconcile(snap, _plan(), site.meters, frozenset(), watch)
    assert book.active() == []
    assert watch.latched == {}  # back into grid-power control, watched afresh
    assert sorted(a.id for a in book.history()) == [
        "cluster_fault@c01",
        "export_unavoidable@control",
        "pcc_meter_mismatch@pcs1",
    ]
