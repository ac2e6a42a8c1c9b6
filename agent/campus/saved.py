"""The coordinator's campus demand state (agent/campus/demand.py) kept across a restart.

A site reseeds its interval state from its ledger at start (the month's billed peaks, the last
day's profile: agent/live/runtime.py). The coordinator has no ledger: without this file a
restarted coordinator sent no demand level until its first interval closed (each agent deciding
alone meanwhile), then the highest interval seen for half a day, and forgot the peaks the month had
already billed, so it shaved the campus down to a level the utility bills anyway.

So the whole CampusDemand is written (small: a few values per demand slot of the day and of the
envelope's days), a temporary file fsynced then renamed over it (agent/atomic_file.py), each time an
interval opens (the levels are decided then: agent/control/interval.roll) and at shutdown. It is
used at start when it was written in the same local month (the month the peaks are billed in;
another month's peaks are not this month's, and next_interval would drop them anyway) for the same
campus and demand interval; otherwise, or when it is unreadable, the coordinator starts empty as
before, with a log line naming the file and the field. A coordinator killed mid-interval loses that
interval's sums since it opened: the interval closes on what the restarted one sees (as a restarted
site's does).

NaN (unknown) and inf (no level) are kept as they are: the file is JSON with Python's NaN and
Infinity tokens, read only by this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path
from typing import Any, Final

from agent.atomic_file import replace_text
from agent.campus.demand import CampusDemand
from agent.campus.keep import CampusDay
from agent.control.state import IntervalState

FILE_NAME: Final = "campus_state.json"
VERSION: Final = 1

_INTS: Final = frozenset({"key", "month", "week_day"})
_SERIES: Final = frozenset({"profile", "targets", "past", "env"})
# Fields a file written before them lacks (the week's level, the load's moving average and its top, issue 13,
# after VERSION 1 was first written): absent, they take IntervalState's "not worked out" defaults, so a
# coordinator upgraded mid-month keeps the peaks its campus already billed. Any other field absent
# still refuses the file.
_ADDED: Final = frozenset({"week_day", "week_level_w", "week_cap_w", "week_aim_w", "net_avg_w", "top_w"})


class SavedStateError(ValueError):
    """The file cannot be used; the message names the file and the field."""


def dump(st: CampusDemand, campus: str, month: int, interval_s: float) -> str:
    """`st` as the file's JSON text, written in local month `month` (control.begin.month_index)."""
    iv = {f.name: getattr(st.iv, f.name) for f in fields(IntervalState)}
    iv["peaks"] = [list(p) for p in st.iv.peaks]
    day = {f.name: getattr(st.day, f.name) for f in fields(CampusDay)}
    return json.dumps(
        {
            "version": VERSION,
            "campus": campus,
            "month": month,
            "interval_s": interval_s,
            "iv": iv,
            "day": day,
            "recharge": list(st.recharge),
        },
        separators=(",", ":"),
    )


def _number(v: object, field: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SavedStateError(f"{where}: field {field!r} must be a number, got {v!r}")
    return float(v)


def _integer(v: object, field: str, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < -1:
        raise SavedStateError(f"{where}: field {field!r} must be an integer >= -1, got {v!r}")
    return v


def _series(v: object, field: str, where: str, n: int) -> tuple[float, ...]:
    """A per-slot series: empty, or a whole number of days of `n` slots (the envelope's ring)."""
    if not isinstance(v, list) or len(v) % n != 0:
        raise SavedStateError(f"{where}: field {field!r} must be a list of days of {n} values")
    return tuple(_number(x, field, where) for x in v)


def _table(d: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    t = d.get(name)
    if not isinstance(t, dict):
        raise SavedStateError(f"{where}: field {name!r} must be an object")
    return t


def _interval(d: dict[str, Any], where: str, n: int) -> IntervalState:
    kw: dict[str, Any] = {}
    for f in fields(IntervalState):
        name, v = f.name, d.get(f.name)
        if name in _ADDED and name not in d:
            continue
        if name in _INTS:
            kw[name] = _integer(v, f"iv.{name}", where)
        elif name in _SERIES:
            kw[name] = _series(v, f"iv.{name}", where, n)
        elif name == "peaks":
            if not isinstance(v, list) or not all(isinstance(p, list) and len(p) == 2 for p in v):
                raise SavedStateError(f"{where}: field 'iv.peaks' must be a list of [rate key, W] pairs")
            kw[name] = tuple((_number(p[0], "iv.peaks", where), _number(p[1], "iv.peaks", where)) for p in v)
        else:
            kw[name] = _number(v, f"iv.{name}", where)
    return IntervalState(**kw)


def _day(d: dict[str, Any], where: str, n: int) -> CampusDay:
    profile = _series(d.get("profile"), "day.profile", where, n)
    if len(profile) != n:
        raise SavedStateError(f"{where}: field 'day.profile' must be a list of {n} values")
    return CampusDay(
        profile,
        key=_integer(d.get("key"), "day.key", where),
        slot=_integer(d.get("slot"), "day.slot", where),
        net_ws=_number(d.get("net_ws"), "day.net_ws", where),
        covered_s=_number(d.get("covered_s"), "day.covered_s", where),
        past=_series(d.get("past"), "day.past", where, n),
    )


def parse(text: str, campus: str, month: int, interval_s: float, where: str) -> CampusDemand:
    """The state in `text` (the file `where`) for `campus` in local month `month`; SavedStateError
    if it is unreadable or from another campus, month or demand interval."""
    try:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise ValueError(f"a JSON {type(d).__name__}")
    except ValueError as e:
        raise SavedStateError(f"{where}: not a JSON object ({e})") from None
    for field, want in (("version", VERSION), ("campus", campus), ("interval_s", interval_s), ("month", month)):
        if d.get(field) != want:
            raise SavedStateError(f"{where}: field {field!r} is {d.get(field)!r}, this coordinator's is {want!r}")
    n = math.ceil(86400.0 / interval_s)
    rc = d.get("recharge")
    if not isinstance(rc, list) or len(rc) != 2:
        raise SavedStateError(f"{where}: field 'recharge' must be [interval key, decision]")
    recharge = (_integer(rc[0], "recharge", where), _integer(rc[1], "recharge", where))
    return CampusDemand(_day(_table(d, "day", where), where, n), _interval(_table(d, "iv", where), where, n), recharge)


class CampusStore:
    """The file; `save` writes when an interval has opened since the last write (or `force`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: tuple[int, int] | None = None

    def load(self, campus: str, month: int, interval_s: float) -> tuple[CampusDemand | None, str | None]:
        """(the state, None), (None, None) when there is no file, (None, why) when it is not used."""
        if not self.path.exists():  # a first start: nothing to say
            return None, None
        try:
            st = parse(self.path.read_text(encoding="utf-8"), campus, month, interval_s, str(self.path))
        except SavedStateError as e:
            return None, str(e)
        except (OSError, UnicodeDecodeError) as e:
            return None, f"{self.path}: cannot be read ({e})"
        self._saved = (st.iv.key, st.day.key)
        return st, None

    def save(self, st: CampusDemand, campus: str, month: int, interval_s: float, force: bool = False) -> bool:
        """Write `st` if an interval opened since the last write (or `force`); OSError propagates."""
        keys = (st.iv.key, st.day.key)
        if keys == (-1, -1) or (keys == self._saved and not force):
            return False
        self._saved = keys  # a write that fails is tried again at the next interval, not every cycle
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_text(self.path, dump(st, campus, month, interval_s))
        return True
