"""The register image of one simulated device, built from its driver profile (drivers/profile.py).

The same profile file the agent reads drives what is served: `Profile.encode_image` lays out
the SunSpec marker, model headers, end model, scale factors and every point, and each word
goes through drivers.codec, so simulator and driver cannot disagree about a register map.

Bad values on purpose (fault injection, `corrupt`): NaN is served as the point's "not
implemented" marker (or an f32 NaN); a number the type cannot hold is saturated to the type's
extreme raw value, so the driver sees INVALID or OUT_OF_RANGE instead of the simulator failing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from agent.model.config import DeviceConfig
from drivers import keys as K
from drivers.codec import INT_RANGE, SENTINEL_RAW, EncodeError, Point, encode, sentinel_words
from drivers.profile import Profile, RegisterImage, load_profile

log = logging.getLogger("ems.sim.image")

FC_TABLE = {3: "holding", 6: "holding", 16: "holding", 23: "holding", 4: "input"}

Values = Mapping[str, float | int | str]


class DeviceImage:
    def __init__(self, device_id: str, profile: Profile):
        self.device_id = device_id
        self.profile = profile
        self._sf = profile.default_sf()
        # every register of every block exists (gaps between points read as 0)
        self._blank = {t: {a: 0 for b in profile.blocks if b.table == t for a in range(b.start, b.end)}
                       for t in ("holding", "input")}  # fmt: skip
        self.tables: dict[str, dict[int, int]] = {t: dict(regs) for t, regs in self._blank.items()}

    def refresh(self, values: Values, bad: Mapping[str, float] | None = None) -> None:
        """Serve canonical `values` (keys this profile lacks are ignored); `bad` points are served
        with deliberately invalid words (see module doc)."""
        points = self.profile.points
        clean: dict[str, float | int | str] = {}
        for key, v in values.items():
            p = points.get(key)
            if p is None or (bad and key in bad):
                continue
            clean[key] = _state_code(p, v) if p.states and isinstance(v, str) else v
        try:
            img = self.profile.encode_image(clean)
        except EncodeError:
            # a physics value this map cannot hold (e.g. beyond an i16): serve it saturated
            bad = dict(bad or {})
            for key in list(clean):
                p = points[key]
                try:
                    encode(p, clean[key], self._sf_of(p))
                except EncodeError:
                    v = clean.pop(key)
                    bad[key] = float(v) if isinstance(v, (int, float)) else math.nan
                    log.warning("%s: point %s cannot hold %r; served saturated", self.device_id, p.label, v)
            img = self.profile.encode_image(clean)
        for t in ("holding", "input"):
            regs = self.tables[t]
            regs.update(self._blank[t])
            regs.update(img.table(t))
        for key, v in (bad or {}).items():
            p = points.get(key)
            if p is not None:
                for i, w in enumerate(self._bad_words(p, v)):
                    self.tables[p.table][p.addr + i] = w

    def _sf_of(self, p: Point) -> int | None:
        return self._sf.get(p.scale_sf) if p.scale_sf is not None else None

    def _bad_words(self, p: Point, value: float) -> list[int]:
        if math.isnan(value):
            return sentinel_words(p) if (p.sentinel or p.type == "f32") else [0xFFFF] * p.words
        try:
            return encode(p, value, self._sf_of(p))
        except EncodeError:
            if p.type not in INT_RANGE:
                raise
        lo, hi = INT_RANGE[p.type]
        raw = hi if value > 0 else lo
        mask = 0xFFFF if p.words == 1 else 0xFFFFFFFF
        if p.sentinel and raw & mask == SENTINEL_RAW[p.type]:
            raw = raw - 1 if value > 0 else raw + 1  # stay a (huge) number, not "not implemented"
        u = raw & mask
        if p.words == 1:
            return [u]
        return [u >> 16, u & 0xFFFF] if p.word_order == "big" else [u & 0xFFFF, u >> 16]

    def read(self, func_code: int, address: int, count: int) -> list[int] | None:
        """Words at address..address+count-1, None if any lies outside the map (ILLEGAL_ADDRESS)."""
        regs = self.tables[FC_TABLE.get(func_code, "holding")]
        out: list[int] = []
        for a in range(address, address + count):
            w = regs.get(a)
            if w is None:
                return None
            out.append(w)
        return out

    def write(self, address: int, words: Sequence[int]) -> dict[str, float] | None:
        """Store written words and return the writable points they cover, decoded (by key).

        None (ILLEGAL_ADDRESS) when a word falls outside the map, touches a read-only point, or
        splits a multi-word point. A value the point cannot represent raises ValueError.
        """
        regs = self.tables["holding"]
        end = address + len(words)
        if any(a not in regs for a in range(address, end)):
            return None
        touched = [
            p for p in self.profile.points.values()
            if p.table == "holding" and p.addr < end and address < p.addr + p.words
        ]  # fmt: skip
        if not touched or any(not p.writable or p.addr < address or p.addr + p.words > end for p in touched):
            return None
        for i, w in enumerate(words):
            regs[address + i] = w & 0xFFFF
        out: dict[str, float] = {}
        for p in touched:
            v, q = self.profile.value_in(p.key, RegisterImage(holding=regs))
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{self.device_id}: point {p.label} at register {p.addr}: unusable value ({q})")
            out[p.key] = float(v)
        return out


def _state_code(p: Point, name: str) -> int:
    """Raw code of a canonical state name; standby falls back to the code for online."""
    wanted = (name, K.STATE_ONLINE) if name == K.STATE_STANDBY else (name,)
    for want in wanted:
        for code, n in p.states.items():
            if n == want:
                return code
    raise ValueError(f"point {p.label}: profile maps no code to state {name!r}")


def image_for(dev: DeviceConfig) -> DeviceImage:
    """The register image of a configured device, from the profile its table names."""
    return DeviceImage(dev.id, load_profile(dev.profile))
