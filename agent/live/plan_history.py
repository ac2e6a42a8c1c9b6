"""The planner's history in the state dir: one line per completed demand interval.

    # ems-agent planner history v1: interval start (Unix s), net load (W), grid import (W)
    1764547200,4012345.5,3850000.0

The forecast reads the last `history_days` of completed intervals (agent/control/forecast.py);
kept here, a restarted agent plans from the first interval instead of waiting a day on the
heuristic (cold start). Appended one line per interval (from the planner's worker thread, never
the control loop's); rewritten whole (a temporary file, then an atomic rename) at start-up when
it has more than it needs or lines that do not read, and when it has grown to twice what it needs.

A missing file is a cold start; an unreadable one or bad lines (a line torn by a power cut, a
hand edit) give a warning naming the file and the first bad line, and the good lines are kept.
The forecast handles gaps, NaN and clock steps in what is left (named warnings there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agent.atomic_file import replace_text

FILE_NAME: Final = "planner_history.csv"
HEADER: Final = "# ems-agent planner history v1: interval start (Unix s), net load (W), grid import (W)\n"


@dataclass(frozen=True, slots=True)
class Interval:
    start_s: float
    net_w: float
    grid_w: float


def _parse(line: str) -> Interval | None:
    parts = line.split(",")
    if len(parts) != 3:
        return None
    try:
        start, net, grid = (float(p) for p in parts)
    except ValueError:
        return None
    if not math.isfinite(start):
        return None
    return Interval(start, net, grid)  # a NaN reading is the forecast's to drop (and name)


def _line(iv: Interval) -> str:
    return f"{iv.start_s:.0f},{iv.net_w:.1f},{iv.grid_w:.1f}\n"


class PlanHistory:
    """The history file: `load` once at start-up, then `append` per interval (one thread)."""

    def __init__(self, path: Path, keep: int) -> None:
        self.path = path
        self.keep = keep  # intervals the forecast reads
        self._lines = 0  # lines in the file (the compaction's trigger)

    def load(self) -> tuple[list[Interval], list[str]]:
        """(the last `keep` intervals in the file, warnings naming the file and what was wrong)."""
        warnings: list[str] = []
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return [], [f"planner history {self.path}: not found: cold start (the heuristic until a day is recorded)"]
        except OSError as e:
            return [], [f"planner history {self.path}: cannot be read ({e.strerror}): cold start"]
        rows: list[Interval] = []
        bad, first_bad = 0, 0
        lines = text.splitlines()
        for i, line in enumerate(lines, 1):
            if not line.strip() or line.startswith("#"):
                continue
            iv = _parse(line)
            if iv is None:
                bad += 1
                first_bad = first_bad or i
                continue
            rows.append(iv)
        if bad:
            warnings.append(
                f"planner history {self.path}: {bad} unreadable line(s) skipped (first: line {first_bad}); "
                f"{len(rows)} interval(s) kept"
            )
        torn = bool(text) and not text.endswith("\n")
        if bad or torn or len(rows) > self.keep or (text and not text.startswith("#")):
            rows = rows[-self.keep :]
            try:
                self._rewrite(rows)
            except OSError as e:
                warnings.append(f"planner history {self.path}: cannot be rewritten ({e.strerror})")
        else:
            self._lines = len(rows)
        return rows[-self.keep :], warnings

    def append(self, iv: Interval, recent: list[Interval]) -> None:
        """Add one completed interval; `recent`: the intervals kept in memory (for a compaction)."""
        if self._lines >= 2 * self.keep:
            self._rewrite(recent[-self.keep :])
            return
        new = not self.path.exists()
        with self.path.open("a", encoding="utf-8") as f:
            f.write((HEADER if new else "") + _line(iv))
        self._lines += 1

    def _rewrite(self, rows: list[Interval]) -> None:
        replace_text(self.path, HEADER + "".join(_line(r) for r in rows))
        self._lines = len(rows)
