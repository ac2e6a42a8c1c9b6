"""The grid connection limit's energy bookkeeping (agent.control.limit_reserve) kept across restarts.

Without it a restarted agent starts from the safe side (limit_reserve.reserve_wh: all the fleet's
energy is kept for the limit until a day of readings has been counted), which costs a day of
arbitrage and shaving after every restart, update or power cut. The state is small (one value per
demand interval of a week), so it is written whole, a temporary file then an atomic rename, each
time a demand interval closes and at shutdown.

What is restored errs on the safe side: the deficit as it was (while the agent was down nobody
recharged the ideal battery it stands for), the ring of interval maxima by absolute interval, so
the intervals missed keep the values of a week before (older than the window, never smaller than
nothing). A file older than the window, from another demand interval length, or unreadable is not
used, with a warning naming the file and the field; the agent then starts from the safe side.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Final

from agent.atomic_file import replace_text
from agent.control.limit_reserve import WINDOW_DAYS
from agent.control.state import LimitState
from agent.model.interval import DAY_S, slots_per_day

FILE_NAME: Final = "limit_state.json"
VERSION: Final = 1


class LimitStoreError(ValueError):
    """The file cannot be used; the message names the file and the field."""


def dump(ls: LimitState, saved_at_s: float, interval_s: float) -> str:
    """The state as the file's JSON text (`saved_at_s`: wall clock, epoch seconds)."""
    return json.dumps(
        {
            "version": VERSION,
            "saved_at_s": saved_at_s,
            "interval_s": interval_s,
            "deficit_wh": ls.deficit_wh,
            "key": ls.key,
            "slot_max_wh": ls.slot_max_wh,
            "past_wh": list(ls.past_wh),
            "ahead_wh": ls.ahead_wh,
            "seen_s": ls.seen_s,
        },
        separators=(",", ":"),
    )


def _energy(d: dict[str, Any], field: str, where: str) -> float:
    return _nonneg(d.get(field), field, where)


def _nonneg(v: object, field: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0.0:
        raise LimitStoreError(f"{where}: field {field!r} must be a finite number >= 0, got {v!r}")
    return float(v)


def parse(text: str, now_s: float, interval_s: float, where: str) -> LimitState:
    """The state in `text` (the file `where`), as of wall clock `now_s`; LimitStoreError if it is
    unreadable, from another interval length, or older than the window it keeps."""
    try:
        d = json.loads(text)
    except ValueError as e:
        raise LimitStoreError(f"{where}: not JSON ({e})") from None
    if not isinstance(d, dict):
        raise LimitStoreError(f"{where}: not a JSON object")
    if d.get("version") != VERSION:
        raise LimitStoreError(f"{where}: field 'version' is {d.get('version')!r}, this agent reads {VERSION}")
    if d.get("interval_s") != interval_s:
        raise LimitStoreError(
            f"{where}: field 'interval_s' is {d.get('interval_s')!r}, [control] demand_interval_s is {interval_s:g}"
        )
    saved = _energy(d, "saved_at_s", where)
    age = now_s - saved
    if age > WINDOW_DAYS * DAY_S:
        raise LimitStoreError(f"{where}: saved {age / DAY_S:.1f} days ago, older than the {WINDOW_DAYS}-day window")
    key = d.get("key")
    if isinstance(key, bool) or not isinstance(key, int) or key < -1:
        raise LimitStoreError(f"{where}: field 'key' must be an integer >= -1, got {key!r}")
    raw = d.get("past_wh")
    n = slots_per_day(interval_s) * WINDOW_DAYS
    if not isinstance(raw, list) or len(raw) not in (0, n):
        raise LimitStoreError(f"{where}: field 'past_wh' must be a list of {n} values")
    past = tuple(_nonneg(v, "past_wh", where) for v in raw)
    return LimitState(
        deficit_wh=_energy(d, "deficit_wh", where),
        key=key,
        slot_max_wh=_energy(d, "slot_max_wh", where),
        past_wh=past,
        past_max_wh=max(past) if past else 0.0,
        ahead_wh=_energy(d, "ahead_wh", where),
        seen_s=min(_energy(d, "seen_s", where), DAY_S),
    )


class LimitStore:
    """The file in the state directory; `save` only writes when a demand interval has closed."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._saved_key: int | None = None

    def load(self, now_s: float, interval_s: float) -> tuple[LimitState | None, str | None]:
        """(the state, None), (None, None) when there is no file, (None, why) when it is not used."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, None
        except (OSError, UnicodeDecodeError) as e:
            return None, f"{self.path}: cannot be read ({e})"
        try:
            ls = parse(text, now_s, interval_s, str(self.path))
        except LimitStoreError as e:
            return None, str(e)
        self._saved_key = ls.key
        return ls, None

    def save(self, ls: LimitState, now_s: float, interval_s: float, force: bool = False) -> bool:
        """Write the state if its demand interval is another than the one last written (or `force`).
        A state that never counted anything (no limit configured) is not written."""
        if ls.key < 0 or (ls.key == self._saved_key and not force):
            return False
        self._saved_key = ls.key  # a write that fails (OSError) is tried again at the next interval, not every cycle
        replace_text(self.path, dump(ls, now_s, interval_s))
        return True
