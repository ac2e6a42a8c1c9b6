"""Modbus fuzzing: random and malformed register words and responses through the driver's decode path.

Two layers:
- the pure codec (`drivers.codec.decode`, `Profile.decode_blocks`) with random words, random scale
  factors, NaN/inf floats, sentinels, non-ASCII strings, and random synthetic points (any type,
  word order, scale, range);
- the real driver (`ModbusDevice.poll` / `write`) over loopback TCP against a tiny asyncio server
  written here that answers each request with crafted bytes: the right answer with random
  registers, or a malformed one (exception codes, wrong function codes, wrong lengths, wrong MBAP
  header fields, garbage, truncation, a closed connection).

Properties: nothing raises (poll never, write only WriteError); a value is GOOD only when it is
finite and inside the profile range; a block whose response was anything but the right answer
yields COMM_ERROR (or keeps the last good value with its original time), never decoded garbage;
a GOOD value equals the decode of the words actually served.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.model.config import DeviceConfig
from drivers.codec import INT_RANGE, SENTINEL_RAW, TYPE_WORDS, Point, decode, decode_sf, exact_divisor
from drivers.device import ModbusDevice, WriteError
from drivers.profile import Block, Profile, load_profile, profile_names
from drivers.reading import Quality, Reading

PROFILES = profile_names()
# Words that hit edges: sentinels, sign bits, NaN/inf f32 halves, SF bounds and just past them.
SPECIAL = [0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0xFFFE, 0x7F80, 0xFF80, 0x7FC0, 0xFFC0, 0x7F7F, 10, 11, 0xFFF6, 0xFFF5]
word = st.one_of(st.sampled_from(SPECIAL), st.integers(0, 0xFFFF))
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- invariants ------------------------------------------------------------------------------
def check_decoded(p: Point, value: Any, q: Quality) -> None:
    """What every decoded value must satisfy, whatever the words were."""
    assert q in (Quality.GOOD, Quality.OUT_OF_RANGE, Quality.INVALID), (p.label, q)
    assert (value is None) == (q is Quality.INVALID), (p.label, value, q)
    if q is Quality.INVALID:
        return
    if p.type == "string":
        assert isinstance(value, str) and value.isascii()
        return
    assert isinstance(value, (int, float)) and not isinstance(value, bool)
    if p.is_raw_int:
        assert isinstance(value, int)
    if q is Quality.GOOD:
        assert math.isfinite(value), (p.label, value)
        if p.range is not None:
            assert p.range[0] <= value <= p.range[1], (p.label, value)


def raw_of(p: Point, words: Sequence[int]) -> int:
    if p.words == 1:
        return words[0]
    hi, lo = (words[0], words[1]) if p.word_order == "big" else (words[1], words[0])
    return (hi << 16) | lo


def expected(p: Point, words: Sequence[int], sf: int | None) -> tuple[Any, Quality]:
    """An independent (slow, obvious) decode of one numeric point, for exact comparison."""
    raw = raw_of(p, words)
    if p.type == "f32":
        v = struct.unpack(">f", struct.pack(">I", raw))[0]
        if not math.isfinite(v):
            return None, Quality.INVALID
    else:
        if p.sentinel and raw == SENTINEL_RAW[p.type]:
            return None, Quality.INVALID
        lo_t, _ = INT_RANGE.get(p.type, (0, 0))
        if lo_t < 0 and raw >= 1 << (16 * p.words - 1):
            raw -= 1 << (16 * p.words)
        if p.is_raw_int:
            ok = p.range is None or p.range[0] <= raw <= p.range[1]
            return raw, Quality.GOOD if ok else Quality.OUT_OF_RANGE
        v = float(raw)
    # the codec divides by exact integers (0.1 -> / 10) so 1234 reads 123.4 exactly: do the same
    v = v / p.divisor if p.divisor else v * p.scale
    if p.scale_sf is not None:
        if sf is None:
            return None, Quality.INVALID
        v = v / 10.0**-sf if sf < 0 else v * 10.0**sf
    ok = math.isfinite(v) and (p.range is None or p.range[0] <= v <= p.range[1])
    return v, Quality.GOOD if ok else Quality.OUT_OF_RANGE


# --- the codec, shipped profiles ---------------------------------------------------------------
ALL_POINTS = [(name, p) for name in PROFILES for p in load_profile(name).points.values()]


@FAST
@given(which=st.sampled_from(ALL_POINTS), sf_word=word, data=st.data())
def test_codec_any_words_of_every_shipped_point(which: tuple[str, Point], sf_word: int, data: st.DataObject) -> None:
    _, p = which
    w = data.draw(st.lists(word, min_size=p.words, max_size=p.words), label="words")
    sf = decode_sf(sf_word) if p.scale_sf is not None else None
    value, q = decode(p, w, sf)
    check_decoded(p, value, q)
    if p.type == "string":
        data = b"".join(x.to_bytes(2, "big") for x in w)
        if not data.rstrip(b"\x00 ").isascii():
            assert q is Quality.INVALID
        return
    want_v, want_q = expected(p, w, sf)
    assert q is want_q, (p.label, w, sf, value, want_v)
    if want_v is not None:
        assert value == pytest.approx(want_v, rel=1e-12, abs=1e-9), (p.label, w, sf)
    signed_sf = sf_word - 0x10000 if sf_word & 0x8000 else sf_word
    if p.scale_sf is not None and (sf_word == 0x8000 or not -10 <= signed_sf <= 10):
        assert q is Quality.INVALID  # an unknown or out-of-range scale factor never scales a value


@FAST
@given(which=st.sampled_from(ALL_POINTS), n=st.integers(0, 130))
def test_codec_wrong_word_count_is_invalid(which: tuple[str, Point], n: int) -> None:
    _, p = which
    if n == p.words:
        n += 1
    assert decode(p, [0x1234] * n, 0) == (None, Quality.INVALID)


def test_codec_nan_and_inf_floats_are_invalid_in_both_word_orders() -> None:
    for order in ("big", "little"):
        p = Point(key="x", name="x", addr=0, type="f32", words=2, word_order=order, scale=1000.0)
        for bits in (0x7FC00000, 0xFFC00000, 0x7F800000, 0xFF800000, 0x7F800001, 0xFFFFFFFF):
            hi, lo = bits >> 16, bits & 0xFFFF
            assert decode(p, [hi, lo] if order == "big" else [lo, hi]) == (None, Quality.INVALID), hex(bits)


def test_codec_a_scale_that_overflows_is_never_good() -> None:
    """A profile scale of 1e300 times a large f32 is +inf: flagged even without a range."""
    for order in ("big", "little"):
        p = Point(key="x", name="x", addr=0, type="f32", words=2, word_order=order, scale=1e300)
        hi, lo = 0x7F7F, 0xFFFF  # the largest finite f32, 3.4e38
        value, q = decode(p, [hi, lo] if order == "big" else [lo, hi])
        assert q is Quality.OUT_OF_RANGE and value == math.inf
        assert not Reading(value, q, 0.0).ok


# --- the codec, synthetic points (any type, scale, range) -------------------------------------
@st.composite
def points(draw: st.DrawFn) -> Point:
    typ = draw(st.sampled_from([t for t in TYPE_WORDS if t != "sunssf"]))
    n = draw(st.integers(1, 8)) if typ == "string" else TYPE_WORDS[typ]
    raw_int = typ.startswith("bitfield") or (typ in ("u16", "i16", "u32", "i32") and draw(st.booleans()))
    scale = 1.0
    scale_sf = None
    rng = None
    if typ != "string":
        if not raw_int:
            scale = draw(
                st.one_of(
                    st.sampled_from([1.0, 0.1, 0.01, 0.001, -100.0, 1000.0, 1e-300, 1e300, -1e300]),
                    st.floats(-1e6, 1e6, allow_nan=False).filter(lambda x: x != 0),
                )
            )
            scale_sf = draw(st.sampled_from([None, "SF"]))
        if draw(st.booleans()):
            a, b = sorted(draw(st.tuples(st.floats(-1e12, 1e12), st.floats(-1e12, 1e12))))
            rng = (a, b)
    return Point(
        key="k",
        name="n",
        addr=0,
        type=typ,
        words=n,
        word_order=draw(st.sampled_from(["big", "little"])),
        scale=scale,
        scale_sf=scale_sf,
        range=rng,
        states={3: "online"} if raw_int and not typ.startswith("bitfield") else {},
        sentinel=draw(st.booleans()),
        divisor=exact_divisor(scale),
    )


@FAST
@given(p=points(), words=st.lists(word, min_size=8, max_size=8), sf=st.one_of(st.none(), st.integers(-10, 10)))
def test_codec_any_synthetic_point(p: Point, words: list[int], sf: int | None) -> None:
    value, q = decode(p, words[: p.words], sf)
    check_decoded(p, value, q)
    if p.type != "string":
        want_v, want_q = expected(p, words[: p.words], sf)
        assert q is want_q, (value, want_v)
        if want_v is not None:
            assert value == pytest.approx(want_v, rel=1e-12), (value, want_v)


# --- whole blocks --------------------------------------------------------------------------------
@FAST
@given(name=st.sampled_from(PROFILES), data=st.data())
def test_decode_blocks_any_words_every_profile(name: str, data: st.DataObject) -> None:
    prof = load_profile(name)
    regs = {b: data.draw(st.lists(word, min_size=b.count, max_size=b.count), label=b.name) for b in prof.blocks}
    cache: dict[str, int | None] = {}
    out = prof.decode_blocks(regs, cache)
    assert set(out) == set(prof.points)
    for key, (value, q) in out.items():
        check_decoded(prof.points[key], value, q)
    for sf_key, sfp in prof.sf_points.items():
        b = next(b for b in prof.blocks if b.start <= sfp.addr < b.end and b.table == sfp.table)
        assert cache[sf_key] == decode_sf(regs[b][sfp.addr - b.start])


# --- a crafted Modbus TCP server ---------------------------------------------------------------
KINDS = (
    "ok",
    "exception",
    "wrong_fc_swapped",  # FC4 answer to FC3 and vice versa, well formed
    "wrong_fc_random",
    "short",  # fewer registers than asked, consistent byte count
    "long",
    "odd_byte_count",
    "byte_count_past_end",
    "mbap_len_big",
    "mbap_len_small",
    "mbap_len_zero",
    "wrong_tid",
    "wrong_unit",
    "wrong_protocol",
    "garbage",
    "truncated",
    "close",
    "empty_pdu",
)
BAD_KINDS = KINDS[1:]


def mbap(tid: int, unit: int, pdu: bytes, pid: int = 0, length: int | None = None) -> bytes:
    return struct.pack(">HHHB", tid & 0xFFFF, pid, len(pdu) + 1 if length is None else length, unit) + pdu


def regs_pdu(fc: int, regs: Sequence[int]) -> bytes:
    return bytes([fc, 2 * len(regs)]) + b"".join(struct.pack(">H", r) for r in regs)


@dataclass
class Script:
    """How the server answers: one kind per request (in order, the last one repeats), plus the
    register words served by right answers (by table, absolute address)."""

    kinds: list[str]
    exc_code: int = 4
    wrong_fc: int = 1
    garbage: bytes = b"\xde\xad\xbe\xef"
    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    log: list[tuple[int, int, int, str]] = field(default_factory=list)  # (fc, start, count, kind)
    writes: list[tuple[int, list[int]]] = field(default_factory=list)

    def next_kind(self) -> str:
        i = len(self.log)
        return self.kinds[min(i, len(self.kinds) - 1)]


class CraftedServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.server: asyncio.Server | None = None
        self.port = 0
        self.conns: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CraftedServer:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for t in self.conns:
            t.cancel()
        await asyncio.gather(*self.conns, return_exceptions=True)
        await self.server.wait_closed()

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.conns.add(task)
        try:
            while True:
                tid, _, ln, unit = struct.unpack(">HHHB", await r.readexactly(7))
                pdu = await r.readexactly(ln - 1)
                out = self._answer(tid, unit, pdu)
                if out is None:
                    break
                w.write(out)
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    def _answer(self, tid: int, unit: int, pdu: bytes) -> bytes | None:
        s = self.script
        fc = pdu[0]
        start, count = struct.unpack(">HH", pdu[1:5])
        kind = s.next_kind()
        s.log.append((fc, start, count, kind))
        if fc == 16:
            if kind == "ok":
                words = [struct.unpack(">H", pdu[6 + 2 * i : 8 + 2 * i])[0] for i in range(count)]
                s.writes.append((start, words))
                for i, v in enumerate(words):
                    s.holding[start + i] = v
            good = bytes([16]) + struct.pack(">HH", start, count)
        else:
            table = s.holding if fc == 3 else s.input
            good = regs_pdu(fc, [table.get(a, 0) for a in range(start, start + count)])
        regs = [table_get(s, fc, a) for a in range(start, start + count)] if fc in (3, 4) else [0]
        match kind:
            case "ok":
                return mbap(tid, unit, good)
            case "exception":
                return mbap(tid, unit, bytes([fc | 0x80, s.exc_code]))
            case "wrong_fc_swapped":
                return mbap(tid, unit, regs_pdu({3: 4, 4: 3}.get(fc, 3), regs))
            case "wrong_fc_random":
                return mbap(tid, unit, bytes([s.wrong_fc]) + good[1:])
            case "short":
                return mbap(tid, unit, regs_pdu(fc, regs[:-1]))
            case "long":
                return mbap(tid, unit, regs_pdu(fc, [*regs, 0x1234]))
            case "odd_byte_count":
                return mbap(tid, unit, bytes([fc, 2 * len(regs) - 1]) + good[2:-1])
            case "byte_count_past_end":
                return mbap(tid, unit, bytes([fc, 250]) + good[2:])
            case "mbap_len_big":
                return mbap(tid, unit, good, length=len(good) + 40)
            case "mbap_len_small":
                return mbap(tid, unit, good, length=2)
            case "mbap_len_zero":
                return mbap(tid, unit, good, length=0)
            case "wrong_tid":
                return mbap(tid + 1, unit, good)
            case "wrong_unit":
                return mbap(tid, (unit + 1) & 0xFF, good)
            case "wrong_protocol":
                return mbap(tid, unit, good, pid=7)
            case "garbage":
                return s.garbage
            case "truncated":
                return mbap(tid, unit, good)[: max(1, len(good) // 2)]
            case "empty_pdu":
                return mbap(tid, unit, b"")
            case _:  # close
                return None


def table_get(s: Script, fc: int, a: int) -> int:
    return (s.holding if fc == 3 else s.input).get(a, 0)


def dev_cfg(port: int, profile: str) -> DeviceConfig:
    return DeviceConfig(
        id="fuzz", kind="pcs", profile=profile, host="127.0.0.1", port=port, unit=1, timeout_s=0.05, retries=0
    )


def fill(script: Script, prof: Profile, data: st.DataObject) -> dict[Block, list[int]]:
    out = {}
    for b in prof.blocks:
        regs = data.draw(st.lists(word, min_size=b.count, max_size=b.count), label=f"regs {b.name}")
        table = script.holding if b.table == "holding" else script.input
        for i, v in enumerate(regs):
            table[b.start + i] = v
        out[b] = regs
    return out


def block_of(prof: Profile, fc: int, start: int) -> Block:
    return next(b for b in prof.blocks if b.start == start and (b.table == "holding") == (fc == 3))


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("name", ["pcs_vendor_acme", "bms_sunspec_802"])
def test_every_malformed_kind_is_comm_error_never_a_value(name: str, kind: str) -> None:
    """Each malformed answer, on every request: no value at all, and the error is recorded."""
    prof = load_profile(name)
    script = Script([kind], exc_code=4, wrong_fc=1)
    for b in prof.blocks:  # plausible words, so a wrongly accepted answer would decode as GOOD
        table = script.holding if b.table == "holding" else script.input
        table.update({a: 1 for a in range(b.start, b.end)})

    async def run() -> tuple[dict[str, Reading], ModbusDevice]:
        async with CraftedServer(script) as srv:
            dev = ModbusDevice(dev_cfg(srv.port, name), prof, stale_after_s=3.0)
            got = await dev.poll()
            await dev.close()
            return got, dev

    got, dev = asyncio.run(run())
    assert {(r.value, r.quality) for r in got.values()} == {(None, Quality.COMM_ERROR)}, script.log
    assert dev.health.reads == 0 and dev.health.total_errors >= 1
    assert dev.health.last_error.startswith("fuzz")


DRIVER_PROFILES = ["bms_sunspec_802", "pcs_sunspec_70x", "pcs_vendor_acme", "rack_load_vendor"]
kinds_st = st.lists(st.sampled_from(KINDS), min_size=1, max_size=3)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(DRIVER_PROFILES),
    kinds=kinds_st,
    exc_code=st.integers(0, 255),
    wrong_fc=st.integers(1, 127).filter(lambda x: x not in (3, 4)),
    garbage=st.binary(min_size=1, max_size=64),
    data=st.data(),
)
def test_poll_survives_any_response_and_flags_every_bad_block(
    name: str, kinds: list[str], exc_code: int, wrong_fc: int, garbage: bytes, data: st.DataObject
) -> None:
    prof = load_profile(name)
    script = Script(kinds, exc_code=exc_code, wrong_fc=wrong_fc, garbage=garbage)
    served = fill(script, prof, data)

    async def run() -> tuple[dict[str, Reading], float, ModbusDevice]:
        async with CraftedServer(script) as srv:
            dev = ModbusDevice(dev_cfg(srv.port, name), prof, stale_after_s=3.0)
            t0 = time.perf_counter()
            got = await dev.poll()
            took = time.perf_counter() - t0
            await dev.close()
            return got, took, dev

    got, took, dev = asyncio.run(run())
    assert took < dev._poll_deadline + 0.5
    assert set(got) == set(prof.points)
    good_blocks = {block_of(prof, fc, start) for fc, start, _, kind in script.log if kind == "ok"}
    want = prof.decode_blocks({b: served[b] for b in good_blocks}, {})
    for key, r in got.items():
        p = prof.points[key]
        if key in want:
            assert (r.value, r.quality) == want[key], (key, r)
            check_decoded(p, r.value, r.quality)
        else:  # its block failed and it was never read: no value at all
            assert (r.value, r.quality) == (None, Quality.COMM_ERROR), (key, r, script.log)
    assert dev.health.reads == len(good_blocks)
    if len(good_blocks) < len(prof.blocks):
        assert dev.health.total_errors >= 1 and dev.health.last_error.startswith("fuzz")


@settings(max_examples=30, deadline=None)
@given(kind=st.sampled_from(BAD_KINDS), exc_code=st.integers(0, 255), data=st.data())
def test_a_bad_response_after_a_good_poll_keeps_the_last_good_values(
    kind: str, exc_code: int, data: st.DataObject
) -> None:
    """Malformed data never overwrites what was read: the old value stays, with its old time."""
    prof = load_profile("pcs_vendor_acme")
    script = Script(["ok"] * len(prof.blocks) + [kind], exc_code=exc_code)
    served = fill(script, prof, data)
    clock = [100.0]

    async def run() -> tuple[dict[str, Reading], dict[str, Reading]]:
        async with CraftedServer(script) as srv:
            dev = ModbusDevice(dev_cfg(srv.port, prof.name), prof, stale_after_s=3.0, clock=lambda: clock[0])
            first = await dev.poll()
            for table in (script.holding, script.input):  # the device now serves other words
                for a in table:
                    table[a] ^= 0x5A5A
            clock[0] += 1.0
            second = await dev.poll()
            await dev.close()
            return first, second

    first, second = asyncio.run(run())
    want = prof.decode_blocks(served, {})
    assert {k: (r.value, r.quality) for k, r in first.items()} == want
    assert all(r.t == 100.0 for r in first.values())
    assert script.log[len(prof.blocks)][3] == kind
    # every block of the second poll failed (the kind repeats, or a transport failure stopped the
    # poll): every point keeps its first value, quality and time
    assert second == first


# --- writes --------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=4), exc_code=st.integers(0, 255),
       sf=st.sampled_from([0, 1, 2, 3, 0x8000, 11, 0xFFF5, 0xFFFF]))
def test_write_survives_any_response_and_never_claims_success_wrongly(
    kinds: list[str], exc_code: int, sf: int
) -> None:
    """setpoint_w of the SunSpec PCS: read WSet_SF, write, read back. Any bad answer -> WriteError."""
    prof = load_profile("pcs_sunspec_70x")
    sfp = prof.sf_points[prof.points["setpoint_w"].scale_sf or ""]
    script = Script(kinds, exc_code=exc_code)
    script.holding[sfp.addr] = sf
    outcome: list[Any] = []

    async def run() -> None:
        async with CraftedServer(script) as srv:
            dev = ModbusDevice(dev_cfg(srv.port, prof.name), prof, stale_after_s=3.0)
            try:
                await dev.write({"setpoint_w": -300_000.0})
                outcome.append("ok")
            except WriteError as e:
                outcome.append(e)
            await dev.close()

    asyncio.run(run())
    used = [k for *_, k in script.log]
    sf_ok = decode_sf(sf) is not None
    if outcome == ["ok"]:
        assert sf_ok and used == ["ok", "ok", "ok"]
        (start, words), = script.writes
        p = prof.points["setpoint_w"]
        assert start == p.addr
        assert decode(p, words, decode_sf(sf)) == (-300_000.0, Quality.GOOD)
    else:
        (err,) = outcome
        assert isinstance(err, WriteError) and "fuzz" in str(err)
        assert used != ["ok", "ok", "ok"] or not sf_ok
