"""Append-only audit log of every operator action (accepted or refused), one JSON object a line.

Each line is flushed and fsynced before the action takes effect, so a power cut never loses a
recorded action. Secrets (tokens, signatures) are never written: callers pass only the actor.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

RECENT = 500  # entries kept in memory for GET /api/audit


class AuditLog:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._recent: list[dict[str, Any]] = []
        self.version = 0  # +1 per record: readers copy `recent` only when it moved
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def record(
        self,
        when: datetime,
        actor: str,
        via: str,
        action: dict[str, Any],
        accepted: bool,
        reason: str = "",
    ) -> dict[str, Any]:
        entry = {
            "time": when.isoformat(),
            "actor": actor,
            "via": via,
            "action": action,
            "accepted": accepted,
            "reason": reason,
        }
        line = json.dumps(entry, separators=(",", ":"), default=str)
        with self._lock:
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(line + "\n")
                    f.flush()
                    os.fsync(f.fileno())
            self._recent.append(entry)
            del self._recent[:-RECENT]
            self.version += 1
        return entry

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return self._recent[-limit:][::-1]
