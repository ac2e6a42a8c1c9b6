"""GPU rack load arriving over MQTT (rack PDUs or a DCGM-exporter bridge, watts per rack).

The control loop reads `reading(now_mono)` each cycle: the sum over racks, GOOD when every rack
is fresh, STALE when any rack's last value is older than `stale_s`, COMM_ERROR before every
expected rack has been heard from (a partial sum would under-state the load). Payloads are a
bare number ("123456.7") or JSON {"power_w": 123456.7} (or {"w": ...}); anything else, negative
or non-finite, is counted and ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from agent.model.snapshot import Measured
from agent.mqtt.commands import json_int
from drivers.reading import Quality


@dataclass(slots=True)
class _Last:
    w: float
    t: float


class RackLoad:
    def __init__(self, topic_pattern: str, stale_s: float, expected: tuple[str, ...] = ()) -> None:
        self.pattern = topic_pattern.split("/")
        self.index = self.pattern.index("+")
        self.stale_s = stale_s
        self.expected = frozenset(expected)
        self._last: dict[str, _Last] = {}
        self.bad_messages = 0

    @property
    def topic(self) -> str:
        return "/".join(self.pattern)

    def rack_of(self, topic: str) -> str | None:
        parts = topic.split("/")
        if len(parts) != len(self.pattern):
            return None
        for i, (a, b) in enumerate(zip(parts, self.pattern, strict=True)):
            if i != self.index and a != b:
                return None
        return parts[self.index] or None

    def on_message(self, topic: str, payload: bytes, now_mono: float) -> bool:
        """Take one rack's value. False (and counted) if the topic or payload is not usable."""
        rack = self.rack_of(topic)
        w = _watts(payload)
        if rack is None or w is None or (self.expected and rack not in self.expected):
            self.bad_messages += 1
            return False
        self._last[rack] = _Last(w, now_mono)
        return True

    def per_rack(self, now_mono: float) -> dict[str, Measured]:
        out = {}
        for rack, last in self._last.items():
            age = now_mono - last.t
            out[rack] = Measured(last.w, Quality.STALE if age > self.stale_s else Quality.GOOD, age)
        for rack in self.expected - self._last.keys():
            out[rack] = Measured.missing()
        return out

    def reading(self, now_mono: float) -> Measured:
        if not self._last or not self.expected <= self._last.keys():
            return Measured.missing(Quality.COMM_ERROR)
        total = sum(x.w for x in self._last.values())
        age = max(now_mono - x.t for x in self._last.values())
        return Measured(total, Quality.STALE if age > self.stale_s else Quality.GOOD, age)


def _watts(payload: bytes) -> float | None:
    try:
        v = json.loads(payload, parse_int=json_int)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: deep nesting
        return None
    if isinstance(v, dict):
        v = v.get("power_w", v.get("w"))
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        return None
    return float(v)
