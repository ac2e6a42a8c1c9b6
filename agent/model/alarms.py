"""Active alarms and their history. An alarm is keyed by (code, source); raising an active one
again only refreshes it, so a persistent condition gives one alarm, not one per cycle."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_CODE = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def worst(severities: Iterable[Severity]) -> Severity | None:
    """The most severe of some severities (None for none): a site's, or a fleet's, alarm summary."""
    return max(severities, key=SEVERITY_CODE.__getitem__, default=None)


@dataclass(frozen=True, slots=True)
class AlarmKind:
    """What an alarm code means: its severity and a title in each dashboard language. The alarm's
    own message carries the detail of one occurrence (the device's error, the quality seen)."""

    code: str
    severity: Severity
    en: str
    zh: str

    def text(self) -> dict[str, str]:
        return {"en": self.en, "zh": self.zh}


_W, _C = Severity.WARNING, Severity.CRITICAL
# Every alarm the agent raises, in one table: the loop, the controllers (Plan.alarms) and the
# sinks raise by code and take the severity from here. A new alarm is one line here.
CATALOGUE: dict[str, AlarmKind] = {
    k.code: k
    for k in (
        # devices, seen in the snapshot (agent/live/alarm_sync.py)
        AlarmKind("cluster_fault", _C, "BMS reports a fault", "BMS 报告故障"),
        AlarmKind("cluster_disconnected", _W, "Cluster disconnected (contactor open)", "电池簇已断开（接触器断开）"),
        AlarmKind("device_comm", _W, "No usable data from the device", "设备无可用数据"),
        AlarmKind("pcs_fault", _C, "PCS tripped or faulted", "PCS 跳闸或故障"),
        AlarmKind("grid_outage", _C, "Utility supply lost", "市电中断"),
        AlarmKind("pcc_inactive", _W, "PCS does not report grid-power (PCC) control", "PCS 未报告进入并网点功率控制"),
        AlarmKind(
            "pcc_meter_mismatch", _W, "PCS grid meter disagrees with the site meter", "PCS 电网电表与站点电表不一致"
        ),
        # commands (agent/live/pcs_writer.py, agent/live/contactors.py)
        AlarmKind("write_failed", _W, "Command write to the device failed", "向设备写入指令失败"),
        # controllers (Plan.alarms, agent/control)
        AlarmKind(
            "plan_solve_failed",
            _W,
            "Planner solve failed or timed out: last plan kept, then the heuristic",
            "调度计划求解失败或超时：沿用上一计划，随后回退到启发式控制",
        ),
        AlarmKind("no_battery_available", _W, "No battery cluster can be commanded", "没有可调度的电池簇"),
        AlarmKind("grid_outage_backup", _W, "Grid outage: the battery carries the site", "电网停电：电池为站点供电"),
        AlarmKind(
            "measurement_invalid",
            _W,
            "Grid or load measurement invalid: battery held at 0",
            "电网或负载测量无效：电池保持 0",
        ),
        AlarmKind(
            "backup_shortfall", _W, "The battery cannot carry the load in the outage", "停电期间电池无法承担负载"
        ),
        AlarmKind(
            "reserve_exceeds_fleet", _W, "Backup reserve exceeds what the clusters hold", "备用储能要求超过电池簇容量"
        ),
        AlarmKind("export_unavoidable", _W, "Export to the grid unavoidable", "无法避免向电网反送电"),
        AlarmKind(
            "grid_import_limit",
            _C,
            "Grid import above the connection limit: the battery cannot carry it",
            "电网购电超过接入容量：电池无法承担",
        ),
        # campus coordination (agent/live/campus_link.py)
        AlarmKind(
            "campus_fallback",
            _W,
            "No valid share from the campus coordinator: holding the fallback share",
            "未收到园区协调器的有效份额：采用本地保守份额",
        ),
        # the state directory (agent/live/runtime.py, agent/live/statedir.py)
        AlarmKind(
            "audit_write_failed", _C, "Audit log cannot be written: commands refused", "审计日志无法写入：拒绝执行指令"
        ),
        AlarmKind("state_disk_full", _C, "State disk full: history held in memory", "状态磁盘已满：历史数据暂存内存"),
        AlarmKind("telemetry_store_failed", _W, "Local history store cannot be written", "本地历史数据库无法写入"),
        AlarmKind(
            "state_file_lost", _W, "A state file was deleted or replaced while running", "运行中状态文件被删除或替换"
        ),
        # telemetry (agent/telemetry)
        AlarmKind(
            "telemetry_down", _W, "Telemetry database unavailable: spooling locally", "遥测数据库不可用：本地缓存"
        ),
        AlarmKind("spool_dropped", _W, "Telemetry spool full: oldest points dropped", "遥测缓存已满：最早的数据已丢弃"),
        AlarmKind("telemetry_rejected", _W, "Telemetry points rejected by the database", "遥测数据被数据库拒绝"),
        AlarmKind(
            "telemetry_queue_full", _W, "Telemetry writer fell behind: cycles dropped", "遥测写入滞后：周期数据已丢弃"
        ),
    )
}


def kind(code: str) -> AlarmKind:
    """The catalogue entry of `code`. A code missing from the table (a test keeps the table complete)
    still raises, as a warning titled by its code: an alarm is never lost for want of a title."""
    k = CATALOGUE.get(code)
    return k if k is not None else AlarmKind(code, Severity.WARNING, code.replace("_", " "), code.replace("_", " "))


@dataclass(frozen=True, slots=True)
class Alarm:
    id: str  # "code@source"
    code: str  # e.g. "grid_outage", "device_comm", "cluster_fault", "spool_dropped"
    source: str  # device id or subsystem
    severity: Severity
    message: str
    raised_at: datetime
    cleared_at: datetime | None = None
    acked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.cleared_at is None


class AlarmBook:
    def __init__(self, history: int = 1000) -> None:
        self._active: dict[str, Alarm] = {}
        self._history: deque[Alarm] = deque(maxlen=history)
        # The control loop raises and clears; API threads read and acknowledge.
        self._lock = threading.RLock()
        self.version = 0  # +1 on every change: readers copy the lists only when it moved

    def _raise(self, code: str, source: str, message: str, now: datetime) -> bool:
        """Raise (or keep) an alarm, with the catalogue's severity. True if it is new."""
        aid = f"{code}@{source}"
        cur = self._active.get(aid)
        if cur is not None:
            if cur.message != message:
                self._active[aid] = replace(cur, message=message)
                self.version += 1
            return False
        self._active[aid] = Alarm(aid, code, source, kind(code).severity, message, now)
        self.version += 1
        return True

    def _clear(self, code: str, source: str, now: datetime) -> bool:
        aid = f"{code}@{source}"
        cur = self._active.pop(aid, None)
        if cur is None:
            return False
        self._history.append(replace(cur, cleared_at=now))
        self.version += 1
        return True

    def _sync(self, wanted: dict[str, tuple[str, str, str]], owned: set[str], now: datetime) -> None:
        """Make the active alarms with `owned` codes equal to `wanted` (id -> (code, source, message))."""
        for code, source, msg in wanted.values():
            self._raise(code, source, msg, now)
        for aid, a in list(self._active.items()):
            if a.code in owned and aid not in wanted:
                self._clear(a.code, a.source, now)

    def _ack(self, alarm_id: str, who: str) -> bool:
        cur = self._active.get(alarm_id)
        if cur is None:
            return False
        self._active[alarm_id] = replace(cur, acked_by=who)
        self.version += 1
        return True

    def active(self) -> list[Alarm]:
        with self._lock:
            return sorted(self._active.values(), key=lambda a: a.raised_at)

    def history(self, limit: int = 100) -> list[Alarm]:
        with self._lock:
            return list(self._history)[-limit:][::-1]

    def raise_(self, code: str, source: str, message: str, now: datetime) -> bool:
        """Raise (or keep) an alarm, with the catalogue's severity. True if it is new."""
        with self._lock:
            return self._raise(code, source, message, now)

    def clear(self, code: str, source: str, now: datetime) -> bool:
        with self._lock:
            return self._clear(code, source, now)

    def sync(self, wanted: dict[str, tuple[str, str, str]], owned: set[str], now: datetime) -> None:
        """Make the active alarms with `owned` codes equal to `wanted` (id -> (code, source, message))."""
        with self._lock:
            self._sync(wanted, owned, now)

    def ack(self, alarm_id: str, who: str) -> bool:
        with self._lock:
            return self._ack(alarm_id, who)
