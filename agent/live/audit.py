"""Append-only audit log of every operator action (accepted or refused), one JSON object a line.

Each line is written and fsynced before the action takes effect, so a power cut never loses a
recorded action. Secrets (tokens, signatures) are never written: callers pass only the actor.

A line that cannot be written (full disk, immutable or unwritable file) raises AuditUnavailable,
and the action must not take effect: an unaudited command is refused, never applied. A partly
written line is cut off again, so the file never holds a torn record that the next line would
be glued to; a torn last line left by a crash (power cut mid-write) is cut off when the log is
opened, with one warning. `on_failure` is told when writing starts failing (the reason) and
when it works again (None): the hub turns that into the `audit_write_failed` alarm. `probe()`
(the runtime calls it every few seconds while writes fail) finds out when the disk is back
without waiting for the next command.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.logs import kv

log = logging.getLogger("ems.audit")
RECENT = 500  # entries kept in memory for GET /api/audit
PROBE_BYTES = 4096  # what probe() writes next to the log: room for a few records


class AuditUnavailable(Exception):
    """The audit log cannot be written; the message names the file and the cause."""


def cut_torn_tail(path: Path) -> int:
    """Cut a last line that has no newline (a write interrupted by a crash) off `path`.

    Returns how many bytes went (0 when the file ends cleanly or does not exist). Such a line
    was never acknowledged (its write did not return), so nothing recorded is lost; left in
    place, the next record would be appended to it and both would be unreadable."""
    try:
        with path.open("r+b") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return 0
            # Find the end of the last complete line, reading backwards in blocks.
            end = size
            while end > 0:
                start = max(0, end - 65536)
                f.seek(start)
                nl = f.read(end - start).rfind(b"\n")
                if nl >= 0:
                    keep = start + nl + 1
                    break
                end = start
            else:
                keep = 0
            f.truncate(keep)
            os.fsync(f.fileno())
            return size - keep
    except FileNotFoundError:
        return 0


class AuditLog:
    def __init__(self, path: Path | None, on_failure: Callable[[str | None], None] | None = None) -> None:
        self.path = path
        self.on_failure = on_failure
        self.failure: str | None = None  # why the last write failed; None while writes work
        self._lock = threading.Lock()
        self._recent: list[dict[str, Any]] = []
        self.version = 0  # +1 per record: readers copy `recent` only when it moved
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file():
                torn = cut_torn_tail(path)
                if torn:
                    log.warning(
                        "audit log: torn last line from an interrupted write skipped",
                        extra=kv(path=str(path), bytes=torn),
                    )

    def record(
        self,
        when: datetime,
        actor: str,
        via: str,
        action: dict[str, Any],
        accepted: bool,
        reason: str = "",
    ) -> dict[str, Any]:
        """Write one entry (fsynced). Raises AuditUnavailable if it could not be written."""
        entry = {
            "time": when.isoformat(),
            "actor": actor,
            "via": via,
            "action": action,
            "accepted": accepted,
            "reason": reason,
        }
        line = (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            if self.path is not None:
                try:
                    _append(self.path, line)
                except OSError as e:
                    self._failed(f"audit log {self.path} cannot be written: {e.strerror or e}")
                if self.failure is not None:
                    self._set_failure(None)
            self._recent.append(entry)
            del self._recent[:-RECENT]
            self.version += 1
        return entry

    def _failed(self, why: str) -> None:
        if why != self.failure:
            log.error("audit log write failed; operator commands are refused", extra=kv(error=why))
            self._set_failure(why)
        raise AuditUnavailable(why)

    def _set_failure(self, why: str | None) -> None:
        self.failure = why
        if why is None:
            log.warning("audit log writable again", extra=kv(path=str(self.path)))
        if self.on_failure is not None:
            self.on_failure(why)

    def probe(self) -> bool:
        """While writes fail: would one succeed now? The log opens for appending, and a page can
        be written and synced next to it (a probe file, removed again; nothing is added to the log
        itself). If so the failure is over (the alarm clears). True when writes work."""
        if self.path is None or self.failure is None:
            return True
        probe = self.path.with_name(self.path.name + ".probe")
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(fd, b"\0" * PROBE_BYTES)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
        with self._lock:
            if self.failure is not None:
                self._set_failure(None)
        return True

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return self._recent[-limit:][::-1]


def _append(path: Path, data: bytes) -> None:
    """Append `data` and fsync; on failure cut the file back to its length before (no torn line)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        before = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, before)
            except OSError as e:  # the file keeps a torn line; the next open cuts it
                log.error("audit log: torn line not cut", extra=kv(path=str(path), error=str(e)))
            raise
    finally:
        os.close(fd)
