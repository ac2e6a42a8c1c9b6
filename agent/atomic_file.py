"""Replacing a small state file so a crash or a power cut leaves the old file or the new, never half.

The agent and the coordinator keep a few state files (the grid limit's interval, the campus demand
state, the plan history, the analysis cache) that they rewrite whole. A temporary file renamed over
the old one is atomic for a crash of the process, but not for a power cut: without an fsync of the
data before the rename, ext4 and XFS may put the rename on disk first, and the file comes back
empty or truncated at the next boot, which is when it is needed. So the data is fsynced, then
renamed, then the directory fsynced (the rename itself is durable only then).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def replace_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` through `path`.tmp; OSError propagates (the caller names the file)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # a full disk: no half-written file left beside the old one
            tmp.unlink()
        raise
    # some file systems refuse to open a directory for fsync: the data is safe, the rename may lag
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
