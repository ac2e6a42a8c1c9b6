"""Active alarms and their history. An alarm is keyed by (code, source); raising an active one
again only refreshes it, so a persistent condition gives one alarm, not one per cycle."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


SEVERITY_CODE = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


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

    def _raise(self, code: str, source: str, severity: Severity, message: str, now: datetime) -> bool:
        """Raise (or keep) an alarm. True if it is new."""
        aid = f"{code}@{source}"
        cur = self._active.get(aid)
        if cur is not None:
            if cur.message != message:
                self._active[aid] = replace(cur, message=message)
                self.version += 1
            return False
        self._active[aid] = Alarm(aid, code, source, severity, message, now)
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

    def _sync(
        self, wanted: dict[str, tuple[str, str, Severity, str]], prefix_sources: set[str], now: datetime
    ) -> None:
        """Make the active alarms owned by `prefix_sources` codes equal to `wanted` (id -> fields)."""
        for code, source, sev, msg in wanted.values():
            self._raise(code, source, sev, msg, now)
        for aid, a in list(self._active.items()):
            if a.code in prefix_sources and aid not in wanted:
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

    def raise_(self, code: str, source: str, severity: Severity, message: str, now: datetime) -> bool:
        """Raise (or keep) an alarm. True if it is new."""
        with self._lock:
            return self._raise(code, source, severity, message, now)

    def clear(self, code: str, source: str, now: datetime) -> bool:
        with self._lock:
            return self._clear(code, source, now)

    def sync(
        self, wanted: dict[str, tuple[str, str, Severity, str]], prefix_sources: set[str], now: datetime
    ) -> None:
        """Make the active alarms owned by `prefix_sources` codes equal to `wanted` (id -> fields)."""
        with self._lock:
            self._sync(wanted, prefix_sources, now)

    def ack(self, alarm_id: str, who: str) -> bool:
        with self._lock:
            return self._ack(alarm_id, who)
