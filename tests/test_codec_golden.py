"""Golden words for the codec, worked out by hand from the Modbus/SunSpec encodings.

Every expected word list below is a literal, so a mistake shared by the simulator (encode)
and the driver (decode) cannot pass: both directions are pinned to the spec.
"""

from __future__ import annotations

import math

import pytest

from drivers.codec import EncodeError, Point, decode, decode_sf, encode, exact_divisor
from drivers.reading import Quality


def pt(
    typ: str,
    words: int = 0,
    order: str = "big",
    scale: float = 1.0,
    sf: str | None = None,
    rng: tuple[float, float] | None = None,
    states: dict[int, str] | None = None,
    sentinel: bool = True,
) -> Point:
    n = words or {"u16": 1, "i16": 1, "sunssf": 1, "bitfield16": 1}.get(typ, 2)
    return Point(
        key="k",
        name="K",
        addr=40100,
        type=typ,
        words=n,
        word_order=order,
        scale=scale,
        scale_sf=sf,
        range=rng,
        states=states or {},
        sentinel=sentinel,
        divisor=exact_divisor(scale),
    )


# (point, words, sf, value): decode(point, words, sf) == value GOOD and encode(value) == words
GOLDEN = [
    # u16 / i16
    (pt("u16"), [0x04D2], None, 1234.0),
    (pt("u16"), [0xFFFE], None, 65534.0),
    (pt("i16"), [0xFB2E], None, -1234.0),  # 0x10000 - 1234
    (pt("i16"), [0x7FFF], None, 32767.0),
    (pt("i16"), [0x8001], None, -32767.0),
    # u32 / i32, both word orders: 305419896 = 0x12345678
    (pt("u32"), [0x1234, 0x5678], None, 305419896.0),
    (pt("u32", order="little"), [0x5678, 0x1234], None, 305419896.0),
    (pt("i32"), [0xFFFE, 0x1DC0], None, -123456.0),  # 0x100000000 - 123456 = 0xFFFE1DC0
    (pt("i32", order="little"), [0x1DC0, 0xFFFE], None, -123456.0),
    (pt("i32"), [0x0001, 0xE240], None, 123456.0),
    # f32 (IEEE 754): 1.5 = 0x3FC00000, -2.25 = 0xC0100000, 5432.125 = 0x45A9C100
    (pt("f32"), [0x3FC0, 0x0000], None, 1.5),
    (pt("f32", order="little"), [0x0000, 0x3FC0], None, 1.5),
    (pt("f32"), [0xC010, 0x0000], None, -2.25),
    (pt("f32", scale=1000), [0x45A9, 0xC100], None, 5432125.0),  # kW float -> W
    # fixed scales: 0.1 -> exact division, 1000 (kW -> W), negative (sign flip), -100 (kW x10, charge+)
    (pt("u16", scale=0.1), [0x1038], None, 415.2),  # 4152 / 10
    (pt("u16", scale=0.01), [0x1389], None, 50.01),  # 5001
    (pt("i16", scale=1000), [0xFF38], None, -200000.0),  # -200 kW
    (pt("i16", scale=-1), [0x0064], None, -100.0),
    (pt("i32", order="little", scale=-100), [0xFC18, 0xFFFF], None, 100000.0),  # raw -1000
    (pt("i32", order="little", scale=-100), [0x04D2, 0x0000], None, -123400.0),  # raw 1234
    # SunSpec scale factors, negative and positive
    (pt("u16", sf="SF"), [0x022B], -1, 55.5),  # 555
    (pt("u16", sf="SF"), [0x0D54], -3, 3.412),  # 3412
    (pt("i16", sf="SF"), [0xF9DA], -1, -157.4),  # -1574 = 0xF9DA
    (pt("i16", sf="SF"), [0x1054], 2, 418000.0),  # 4180 x 10**2
    (pt("i16", sf="SF"), [0xF3AC], 2, -315600.0),  # -3156
    (pt("u32", sf="SF"), [0x0000, 0x1388], -2, 50.0),  # 5000
    (pt("i32", sf="SF"), [0xFFFF, 0x9E58], 1, -250000.0),  # -25000
    (pt("u16", sf="SF"), [0x0005], 0, 5.0),
    # bitfields and states are raw ints
    (pt("bitfield16"), [0x8001], None, 0x8001),
    (pt("bitfield32"), [0x0001, 0x0002], None, 0x00010002),
    (pt("bitfield32", order="little"), [0x0002, 0x0001], None, 0x00010002),
    (pt("u16", states={3: "online", 99: "fault"}), [0x0063], None, 99),
    (pt("sunssf"), [0xFFFD], None, -3),
    (pt("sunssf"), [0x0002], None, 2),
    # strings: two ASCII bytes per word, high byte first, NUL padded
    (pt("string", words=4), [0x4143, 0x4D45, 0x2D31, 0x0000], None, "ACME-1"),
    (pt("string", words=2), [0x5375, 0x6E53], None, "SunS"),
]


@pytest.mark.parametrize(("point", "words", "sf", "value"), GOLDEN)
def test_golden_decode_and_encode(
    point: Point, words: list[int], sf: int | None, value: float | int | str
) -> None:
    got, q = decode(point, words, sf)
    assert q is Quality.GOOD
    assert got == value
    assert type(got) is type(value)
    assert encode(point, value, sf) == words


def test_fixed_scale_decodes_exactly() -> None:
    # 0.1 would give 4152 * 0.1 = 415.20000000000005; the codec divides by 10 instead
    assert decode(pt("u16", scale=0.1), [4152])[0] == 415.2
    assert decode(pt("u16", sf="SF"), [3], -1)[0] == 0.3
    assert exact_divisor(0.1) == 10 and exact_divisor(-0.01) == -100 and exact_divisor(0.3) == 0


def test_a_subnormal_scale_has_no_divisor_and_still_decodes() -> None:
    # 1 / 2.2e-309 overflows to inf: found by test_fuzz_modbus, it used to raise OverflowError
    # (a profile with such a scale crashed load_profile with a traceback)
    tiny = 2.225073858507203e-309
    assert exact_divisor(tiny) == 0 and exact_divisor(-tiny) == 0
    assert decode(pt("u16", scale=tiny), [2])[0] == 2 * tiny


@pytest.mark.parametrize(
    ("point", "words"),
    [
        (pt("u16"), [0xFFFF]),
        (pt("i16"), [0x8000]),
        (pt("u32"), [0xFFFF, 0xFFFF]),
        (pt("i32"), [0x8000, 0x0000]),
        (pt("i32", order="little"), [0x0000, 0x8000]),
        (pt("bitfield16"), [0xFFFF]),
        (pt("bitfield32"), [0xFFFF, 0xFFFF]),
        (pt("sunssf"), [0x8000]),
        (pt("string", words=2), [0, 0]),
        (pt("f32"), [0x7FC0, 0x0000]),  # NaN
        (pt("f32", sentinel=False), [0x7F80, 0x0000]),  # +inf
        (pt("f32", sentinel=False), [0xFF80, 0x0000]),  # -inf
        (pt("string", words=1), [0xC3A9]),  # not ASCII
        (pt("u16"), [1, 2]),  # wrong word count
    ],
)
def test_not_implemented_and_undecodable_are_invalid(point: Point, words: list[int]) -> None:
    assert decode(point, words, None) == (None, Quality.INVALID)


def test_sentinels_are_values_in_vendor_maps() -> None:
    assert decode(pt("u16", sentinel=False), [0xFFFF]) == (65535.0, Quality.GOOD)
    assert decode(pt("i16", sentinel=False), [0x8000]) == (-32768.0, Quality.GOOD)


def test_scaled_point_without_its_scale_factor_is_invalid() -> None:
    assert decode(pt("u16", sf="SF"), [555], None) == (None, Quality.INVALID)
    assert decode_sf(0x8000) is None
    assert decode_sf(0x000B) is None  # 11 is outside the SunSpec -10..10
    assert decode_sf(0xFFF6) == -10


def test_out_of_range_keeps_the_value() -> None:
    p = pt("u16", sf="SF", rng=(0, 100))
    assert decode(p, [0x04B0], -1) == (120.0, Quality.OUT_OF_RANGE)  # 1200 -> 120.0 %
    assert decode(p, [0x03E8], -1) == (100.0, Quality.GOOD)  # bound inclusive
    assert decode(pt("i16", rng=(-40, 100)), [0xFFD7]) == (-41.0, Quality.OUT_OF_RANGE)
    st = pt("u16", states={1: "off"}, rng=(1, 7))
    assert decode(st, [0x0008]) == (8, Quality.OUT_OF_RANGE)


def test_encode_none_gives_not_implemented_words() -> None:
    assert encode(pt("i16"), None) == [0x8000]
    assert encode(pt("i32", order="little"), None) == [0x0000, 0x8000]
    assert encode(pt("u32"), None) == [0xFFFF, 0xFFFF]
    assert encode(pt("f32"), None) == [0x7FC0, 0x0000]
    assert encode(pt("f32"), math.nan) == [0x7FC0, 0x0000]
    with pytest.raises(EncodeError, match="no 'not implemented' marker"):
        encode(pt("u16", sentinel=False), None)


@pytest.mark.parametrize(
    ("point", "value", "sf", "message"),
    [
        (pt("u16"), -1.0, None, r"raw -1, outside u16"),
        (pt("i16", sf="SF"), 400000.0, 1, r"raw 40000, outside i16"),
        (pt("i16"), -32768.0, None, r"'not implemented' marker"),
        (pt("u16"), math.inf, None, r"cannot encode inf"),
        (pt("u16", sf="SF"), 5.0, None, r"scale factor SF is unknown"),
        (pt("string", words=2), "ACME-1", None, r"longer than 4 bytes"),
        (pt("bitfield16"), 1.5, None, r"must be an integer"),
        (pt("u16"), "x", None, r"expects a number"),
    ],
)
def test_encode_refuses_what_the_type_cannot_hold(
    point: Point, value: float | str, sf: int | None, message: str
) -> None:
    with pytest.raises(EncodeError, match=message) as e:
        encode(point, value, sf)
    assert "point k (K) at register 40100" in str(e.value)


def test_encode_rounds_to_the_register_resolution() -> None:
    assert encode(pt("u16", sf="SF"), 55.54, -1) == [0x022B]  # 555.4 -> 555
    assert encode(pt("i16", scale=1000), -200400.0) == [0xFF38]  # -200.4 -> -200
