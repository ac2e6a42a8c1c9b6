"""The state directory: checked before anything opens a file in it; the ledger's file watched after.

`--state-dir` pointing at a plain file ended `ems-agent run` in a `FileExistsError` traceback, an
immutable directory in `sqlite3.OperationalError`, both exit 1. `prepare_state_dir` turns each into
one line naming the path and the problem (exit 2), before the audit log or a database is opened.

A database file deleted while the agent runs is still open: SQLite keeps reading and writing the
unlinked inode, so nothing fails and everything written from then on is lost at the next restart.
`DbFileWatch` notices (one `stat` per cycle) and `rescue_db` copies the open database, pages and
WAL both, back to its path, so what was lost is nothing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path


class StateDirError(ValueError):
    """The state directory cannot hold the agent's state. The message names the path and the problem."""


def prepare_state_dir(path: Path) -> Path:
    """Create `path` if needed and prove a file can be written in it; StateDirError otherwise.

    Existing state files are checked too (one level of subdirectories): a read-only or immutable
    `ledger.db` would otherwise fail at its first write, long after start-up said all was well.
    """
    if path.exists() and not path.is_dir():
        raise StateDirError(f"state directory {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StateDirError(f"state directory {path}: cannot be created: {e.strerror}") from None
    probe = path / f".write-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"probe")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as e:
        with contextlib.suppress(OSError):
            probe.unlink()
        raise StateDirError(f"state directory {path}: cannot write a file in it: {e.strerror}") from None
    top = list(path.iterdir())
    for p in top + [c for d in top if d.is_dir() for c in d.iterdir()]:
        if p.is_file() and not os.access(p, os.W_OK):  # access() also refuses immutable files
            raise StateDirError(f"state directory {path}: file {p.name!r} is read-only or immutable")
    return path


class DbFileWatch:
    """Whether a database file is still the one that was opened (same device and inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._id = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def lost(self) -> bool:
        """True when the file was deleted (or replaced by another) since it was opened."""
        return self._id is not None and self._stat() != self._id

    def reset(self) -> None:
        self._id = self._stat()


def rescue_db(db: sqlite3.Connection, path: Path) -> None:
    """Copy the open database `db` (its file gone from `path`) back to `path`, then close `db`.

    The copy goes to a side file first and is renamed to `path`; only then is `db` closed (it stays
    usable if the copy fails). Closing it checkpoints into the unlinked inode and removes the stale
    `-wal` and `-shm` left at the path, which belong to the old file.
    """
    side = path.with_name(path.name + ".rescue")
    side.unlink(missing_ok=True)
    dst = sqlite3.connect(str(side))
    try:
        db.backup(dst)
    finally:
        dst.close()
    os.replace(side, path)
    db.close()
