"""Register words <-> engineering values for one profile point (pure, no I/O).

`decode(point, words, sf)` turns the raw 16-bit words of a point into (value, quality);
`encode(point, value, sf)` is its exact inverse for values the point can represent. The
simulators serve registers built with `encode` and the driver reads them with `decode`, so the
golden tests (tests/test_codec_golden.py) pin both against literal words worked out by hand.

Conventions:
- 32-bit types: word_order "big" puts the high word first (Modbus/SunSpec norm), "little" the
  low word first (common in vendor maps). Bytes inside a word are always big-endian.
- value = raw * scale * 10**sf. A negative sf (and a fixed scale like 0.1) is applied as a
  division by an exact integer so 1234 with sf=-1 decodes to exactly 123.4.
- SunSpec "not implemented" markers (points of profiles with sentinels on) decode as INVALID:
  u16/bitfield16/sunssf/i16 0xFFFF/0x8000, u32/bitfield32 0xFFFFFFFF, i32 0x80000000, an
  all-NUL string. NaN/inf f32 is always INVALID.
- States and bitfields decode to their raw int; strings to str; every other type to float.
"""

from __future__ import annotations

import math
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Final

from drivers.reading import Quality

Value = float | int | str | None

# type name -> register words
TYPE_WORDS: Final[dict[str, int]] = {
    "u16": 1,
    "i16": 1,
    "u32": 2,
    "i32": 2,
    "f32": 2,
    "bitfield16": 1,
    "bitfield32": 2,
    "sunssf": 1,
    "string": 0,  # word count given by the point
}
INT_RANGE: Final[dict[str, tuple[int, int]]] = {
    "u16": (0, 0xFFFF),
    "i16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF),
    "i32": (-0x80000000, 0x7FFFFFFF),
    "bitfield16": (0, 0xFFFF),
    "bitfield32": (0, 0xFFFFFFFF),
    "sunssf": (-10, 10),  # SunSpec allows -10..10
}
# raw (unsigned word pattern) meaning "not implemented" in SunSpec
SENTINEL_RAW: Final[dict[str, int]] = {
    "u16": 0xFFFF,
    "i16": 0x8000,
    "u32": 0xFFFFFFFF,
    "i32": 0x80000000,
    "bitfield16": 0xFFFF,
    "bitfield32": 0xFFFFFFFF,
    "sunssf": 0x8000,
}
SF_NOT_IMPLEMENTED: Final = 0x8000

_F32 = struct.Struct(">f")
_U32 = struct.Struct(">I")


class EncodeError(ValueError):
    """A value the point cannot represent (the message names the point and the problem)."""


@dataclass(frozen=True, slots=True, eq=False)  # identity hash: profiles are cached
class Point:
    """One register-mapped value of a profile. Built by drivers.profile; see drivers/README.md."""

    key: str  # canonical key (drivers/keys.py), a device-specific key, or the SF name for sunssf
    name: str  # the map's own name (SunSpec point name, vendor label)
    addr: int  # absolute register address of the first word
    type: str  # one of TYPE_WORDS
    words: int  # register count
    table: str = "holding"  # "holding" (FC3/FC16) or "input" (FC4)
    word_order: str = "big"
    scale: float = 1.0
    scale_sf: str | None = None  # name of the sunssf point that scales this one
    unit: str = ""
    range: tuple[float, float] | None = None
    writable: bool = False
    states: dict[int, str] = field(default_factory=dict)
    default: float | int | str | None = None  # value encode_image uses when none is given
    sentinel: bool = False  # SunSpec "not implemented" markers decode as INVALID
    # derived: an exact integer divisor equivalent to `scale` (e.g. 10 for 0.1), or 0
    divisor: int = 0

    @property
    def label(self) -> str:
        return self.key if self.key == self.name else f"{self.key} ({self.name})"

    @property
    def is_raw_int(self) -> bool:
        """States, bitfields and scale factors decode to their raw integer."""
        return bool(self.states) or self.type in ("bitfield16", "bitfield32", "sunssf")


def exact_divisor(scale: float) -> int:
    """The integer d with scale == 1/d, if there is one (0 otherwise)."""
    if scale == 0 or abs(scale) >= 1:
        return 0
    inverse = 1 / scale
    if not math.isfinite(inverse):  # a subnormal scale: 1/scale overflows, no integer divides by it
        return 0
    d = round(inverse)
    return d if d != 0 and 1 / d == scale else 0


def decode_sf(word: int) -> int | None:
    """A SunSpec scale factor register: -10..10, or None when not implemented / out of bounds."""
    if word == SF_NOT_IMPLEMENTED:
        return None
    v = word - 0x10000 if word & 0x8000 else word
    return v if -10 <= v <= 10 else None


Decoder = Callable[[Sequence[int], int, "int | None"], "tuple[Value, Quality]"]
_INVALID: Final = (None, Quality.INVALID)
_POW10: Final = tuple(float(10**e) for e in range(11))
_FLOAT_MAX: Final = sys.float_info.max


def decode(point: Point, words: Sequence[int], sf: int | None = None) -> tuple[Value, Quality]:
    """Decode a point's words. `sf` is the decoded value of its scale_sf point (None: unknown).

    Returns (value, quality); value is None whenever quality is INVALID.
    """
    if len(words) != point.words:
        return _INVALID
    return decoder(point)(words, 0, sf)


@cache  # Points hash by identity; profiles (and so their points) are cached
def decoder(point: Point) -> Decoder:
    """The decode function of one point, specialised once: dec(regs, offset, sf) decodes the
    point's words at regs[offset:]. The driver runs this for every point of 64+ devices per
    cycle, so the per-call work is only what this point's type needs."""
    n = point.words
    t = point.type
    if t == "string":
        return _string_decoder(point)
    big = point.word_order == "big"
    is_f32 = t == "f32"
    sentinel = SENTINEL_RAW[t] if point.sentinel and not is_f32 else -1
    sign_bit = {"i16": 0x8000, "sunssf": 0x8000, "i32": 0x80000000}.get(t, 0)
    modulus = 0x10000 if n == 1 else 0x100000000
    raw_int = point.is_raw_int
    use_sf = point.scale_sf is not None
    divisor = point.divisor
    scale = point.scale
    # No range: still refuse a value scaled past the largest float (a huge profile scale times
    # a huge f32), so an infinity can never read as GOOD.
    lo, hi = point.range if point.range is not None else (-_FLOAT_MAX, _FLOAT_MAX)
    good, oor = Quality.GOOD, Quality.OUT_OF_RANGE
    unpack_f32, pack_u32 = _F32.unpack, _U32.pack
    isfinite = math.isfinite

    def dec(regs: Sequence[int], off: int, sf: int | None) -> tuple[Value, Quality]:
        if n == 1:
            raw = regs[off]
        elif big:
            raw = (regs[off] << 16) | regs[off + 1]
        else:
            raw = (regs[off + 1] << 16) | regs[off]
        v: float
        if is_f32:
            v = unpack_f32(pack_u32(raw))[0]
            if not isfinite(v):
                return _INVALID
        else:
            if raw == sentinel:
                return _INVALID
            if sign_bit and raw & sign_bit:
                raw -= modulus
            if raw_int:
                return raw, (good if lo <= raw <= hi else oor)
            v = float(raw)
        if divisor:
            v = v / divisor
        elif scale != 1.0:
            v = v * scale
        if use_sf:
            if sf is None:
                return _INVALID
            if sf < 0:
                v = v / _POW10[-sf]
            elif sf > 0:
                v = v * _POW10[sf]
        return v, (good if lo <= v <= hi else oor)

    return dec


def _string_decoder(point: Point) -> Decoder:
    n = point.words

    def dec(regs: Sequence[int], off: int, sf: int | None) -> tuple[Value, Quality]:
        words = regs[off : off + n]
        if point.sentinel and not any(words):
            return _INVALID
        data = b"".join(w.to_bytes(2, "big") for w in words)
        try:
            return data.rstrip(b"\x00 ").decode("ascii"), Quality.GOOD
        except UnicodeDecodeError:
            return _INVALID

    return dec


def sentinel_words(point: Point) -> list[int]:
    """The "not implemented" words of a point (all zero for strings and f32 NaN)."""
    if point.type == "string":
        return [0] * point.words
    if point.type == "f32":
        return _split(0x7FC00000, point)
    return _split(SENTINEL_RAW[point.type], point)


def _split(raw: int, point: Point) -> list[int]:
    if point.words == 1:
        return [raw & 0xFFFF]
    hi, lo = (raw >> 16) & 0xFFFF, raw & 0xFFFF
    return [hi, lo] if point.word_order == "big" else [lo, hi]


def encode(point: Point, value: float | int | str | None, sf: int | None = None) -> list[int]:
    """The register words for `value` (None: the point's "not implemented" marker).

    Range is NOT checked here (a simulator must be able to serve a bad value); a value the
    type cannot hold, or one that would read back as "not implemented", raises EncodeError.
    """
    where = f"point {point.label} at register {point.addr}"
    if value is None:
        if not point.sentinel and point.type != "f32":
            raise EncodeError(f"{where}: has no 'not implemented' marker to encode None")
        return sentinel_words(point)
    t = point.type
    if t == "string":
        if not isinstance(value, str):
            raise EncodeError(f"{where}: expects a string, got {value!r}")
        try:
            data = value.encode("ascii")
        except UnicodeEncodeError:
            raise EncodeError(f"{where}: {value!r} is not ASCII") from None
        if len(data) > 2 * point.words:
            raise EncodeError(f"{where}: {value!r} is longer than {2 * point.words} bytes")
        data = data.ljust(2 * point.words, b"\x00")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if isinstance(value, str):
        raise EncodeError(f"{where}: expects a number, got {value!r}")
    if point.scale_sf is not None and sf is None:
        raise EncodeError(f"{where}: scale factor {point.scale_sf} is unknown")
    e = sf if point.scale_sf is not None and sf is not None else 0
    if t == "f32":
        raw_f = _unscale(point, float(value), e)
        return _split(_U32.unpack(_F32.pack(raw_f))[0], point)
    if not math.isfinite(value):
        raise EncodeError(f"{where}: cannot encode {value!r} as {t}")
    if point.is_raw_int:
        if value != int(value):
            raise EncodeError(f"{where}: {t} value must be an integer, got {value!r}")
        raw = int(value)
    else:
        raw = round(_unscale(point, float(value), e))
    lo, hi = INT_RANGE[t]
    if not lo <= raw <= hi:
        raise EncodeError(f"{where}: {value!r} gives raw {raw}, outside {t} [{lo}, {hi}]")
    unsigned = raw & (0xFFFF if point.words == 1 else 0xFFFFFFFF)
    if point.sentinel and unsigned == SENTINEL_RAW[t]:
        raise EncodeError(f"{where}: {value!r} encodes as the 'not implemented' marker")
    return _split(unsigned, point)


def _unscale(point: Point, value: float, sf: int) -> float:
    """Inverse of _apply_scale (multiplications by exact integers where possible)."""
    if sf < 0:
        value = value * 10 ** (-sf)
    elif sf > 0:
        value = value / 10**sf
    if point.divisor:
        return value * point.divisor
    if point.scale != 1.0:
        return value / point.scale
    return value
