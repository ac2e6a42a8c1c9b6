"""Shipped profiles: canonical keys, SunSpec layouts checked against pysunspec2, and the loader's
errors for malformed files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import sunspec2  # type: ignore[import-untyped]
import sunspec2.modbus.client as ss_client  # type: ignore[import-untyped]

from common.tomlcheck import ConfigError
from drivers import keys as k
from drivers.imageserver import ImageServer
from drivers.profile import load_profile, profile_names
from drivers.reading import Quality
from tests.test_device import SAMPLES

SUNSPEC_JSON = Path(sunspec2.__file__).parent / "models" / "json"
SUNSPEC_PROFILES = ["bms_sunspec_802", "pcs_sunspec_70x", "meter_sunspec_203", "pv_sunspec_103"]
TYPE_MAP = {
    "uint16": "u16",
    "enum16": "u16",
    "int16": "i16",
    "uint32": "u32",
    "acc32": "u32",
    "int32": "i32",
    "bitfield16": "bitfield16",
    "bitfield32": "bitfield32",
    "sunssf": "sunssf",
    "string": "string",
    "float32": "f32",
}
CANONICAL = {
    "cluster": {
        k.SOC_PCT, k.SOH_PCT, k.VOLTAGE_V, k.CURRENT_A, k.POWER_W, k.CELL_V_MAX, k.CELL_V_MIN,
        k.TEMP_MAX_C, k.TEMP_MIN_C, k.MAX_CHARGE_A, k.MAX_DISCHARGE_A, k.STATE, k.ALARMS, k.CYCLES,
    },
    "pcs": {k.POWER_W, k.SETPOINT_W, k.SETPOINT_ENABLE, k.REVERT_S, k.RATED_W, k.STATE, k.FREQUENCY_HZ},
}  # fmt: skip
METERS = {
    "meter_sunspec_203": {k.POWER_W, k.VOLTAGE_V, k.FREQUENCY_HZ, k.ENERGY_IMPORT_WH, k.ENERGY_EXPORT_WH},
    "rack_load_vendor": {k.POWER_W} | {f"rack_row_{i}_w" for i in range(1, 9)},
    "pv_sunspec_103": {k.POWER_W, k.STATE},
}


def test_all_demo_profiles_ship_with_the_canonical_keys() -> None:
    assert set(profile_names()) >= set(SAMPLES)
    for name in SAMPLES:
        p = load_profile(name)
        need = CANONICAL.get(p.kind) or METERS[name]
        assert need <= set(p.points), (name, need - set(p.points))
        if p.kind == "pcs":
            assert p.writable_keys() >= {k.SETPOINT_W, k.SETPOINT_ENABLE, k.REVERT_S}
        for point in p.points.values():
            assert all(s in k.STATE_NAMES for s in point.states.values())
    assert load_profile("pcs_vendor_acme").state_name(15) == k.STATE_FAULT
    assert load_profile("bms_sunspec_802").state_name(3) == k.STATE_ONLINE
    assert load_profile("bms_sunspec_802").state_name(42) is None
    assert load_profile("bms_sunspec_802") is load_profile("bms_sunspec_802")  # cached


def _model_points(mid: int) -> tuple[dict[int, dict[str, Any]], int]:
    """pysunspec2's points of a model's fixed part by offset (incl. ID/L), and L."""
    d = json.loads((SUNSPEC_JSON / f"model_{mid}.json").read_text())
    by_off: dict[int, dict[str, Any]] = {}
    off = 0
    for p in d["group"]["points"]:
        by_off[off] = p
        off += p["size"]
    for g in d["group"].get("groups", []):
        count = g.get("count", 1)
        if not isinstance(count, int):
            continue  # repeating groups counted by a point (803 strings): 0 here
        for _ in range(count):
            for p in g["points"]:
                off += p["size"]
    return by_off, off - 2


@pytest.mark.parametrize("name", SUNSPEC_PROFILES)
def test_sunspec_layout_matches_pysunspec2(name: str) -> None:
    prof = load_profile(name)
    assert prof.sunspec_base == 40000
    for m in prof.models:
        _, length = _model_points(m.id)
        assert m.length == length, (name, m.id)
    for p in list(prof.points.values()) + list(prof.sf_points.values()):
        model = next(m for m in prof.models if m.data_start <= p.addr < m.data_end)
        spec = _model_points(model.id)[0][p.addr - model.addr]
        assert spec["name"] == p.name, (name, p.addr)
        assert TYPE_MAP[spec["type"]] == p.type, (name, p.name)
        assert spec["size"] == p.words
        if p.scale_sf is not None:
            assert spec.get("sf") == prof.sf_points[p.scale_sf].name, (name, p.name)
        else:
            assert "sf" not in spec, (name, p.name)
        if p.writable:
            assert spec.get("access") == "RW", (name, p.name)


@pytest.mark.parametrize("name", SUNSPEC_PROFILES)
async def test_a_standard_sunspec_client_scans_the_served_image(name: str) -> None:
    """pysunspec2 (an independent implementation) finds the models and reads our values."""
    prof = load_profile(name)
    srv = ImageServer({1: prof.encode_image(SAMPLES[name])})
    port = await srv.start()

    def scan() -> dict[int, dict[str, Any]]:
        dev = ss_client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
        try:
            dev.scan()
            out: dict[int, dict[str, Any]] = {}
            for mid in [m.id for m in prof.models]:
                model = dev.models[mid][0]
                out[mid] = {pn: pt.cvalue for pn, pt in model.points.items()}
            return out
        finally:
            dev.close()

    try:
        found = await asyncio.to_thread(scan)
    finally:
        await srv.stop()
    assert sorted(found) == sorted(m.id for m in prof.models)
    for key, v in SAMPLES[name].items():
        p = prof.points[key]
        model = next(m for m in prof.models if m.data_start <= p.addr < m.data_end)
        theirs = found[model.id][p.name]
        assert theirs == pytest.approx(v, rel=1e-12), (name, key, theirs, v)


def test_decode_image_round_trips_every_profile() -> None:
    for name, values in SAMPLES.items():
        p = load_profile(name)
        img = p.encode_image(values)
        got = p.decode_image(img)
        assert {key: v for key, (v, q) in got.items() if q is Quality.GOOD} == values
        assert p.value_in(k.POWER_W, img) == (values[k.POWER_W], Quality.GOOD)


def test_encode_image_headers_and_defaults() -> None:
    p = load_profile("pcs_sunspec_70x")
    img = p.encode_image({}, {"WSet_SF": 1})
    h = img.holding
    assert [h[40000], h[40001]] == [0x5375, 0x6E53]  # "SunS"
    assert [h[40002], h[40003]] == [1, 66]
    assert [h[40070], h[40071]] == [701, 153]
    assert [h[40225], h[40226]] == [702, 50]
    assert [h[40277], h[40278]] == [704, 65]
    assert [h[40344], h[40345]] == [0xFFFF, 0]
    assert h[40332] == 1  # WSet_SF override; W_SF default 2 = 0x0002
    assert h[40186] == 2
    assert h[40080] == 0x8000  # W without a value: i16 "not implemented"
    assert h[40307] == 1  # revert_enable default
    with pytest.raises(KeyError, match="no point"):
        p.encode_image({"bogus": 1.0})


GOOD_HEAD = """
[device]
kind = "pcs"
[[block]]
name = "b"
start = 100
count = 10
"""


def _write(tmp_path: Path, body: str, head: str = GOOD_HEAD) -> Path:
    f = tmp_path / "bad.toml"
    f.write_text(head + body)
    return f


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[[point]]\nkey="a"\nname="A"\naddr=100\ntype="u32"\n[[point]]\nkey="b"\nname="B"\naddr=101\ntype="u16"\n',
            r"point b \(B\) overlaps point a \(A\) at register 101",
        ),
        ('[[point]]\nkey="a"\nname="A"\naddr=100\ntype="u24"\n', r"point 'A': unknown type 'u24'"),
        (
            '[[point]]\nkey="a"\nname="A"\naddr=100\ntype="u16"\nscale_sf="A_SF"\n',
            r"point a \(A\): scale_sf 'A_SF' names no sunssf point",
        ),
        (
            '[[point]]\nkey="a"\nname="A"\naddr=100\ntype="u16"\nrange=[5, 1]\n',
            r"point 'a' \(A\): key 'range' has min > max",
        ),
        (
            '[[point]]\nkey="a"\nname="A"\naddr=200\ntype="u16"\n',
            r"point 'a' \(A\): key 'addr' register 200 lies outside every \[\[block\]\]",
        ),
        (
            '[[point]]\nkey="a"\nname="A"\naddr=109\ntype="u32"\n',
            r"registers 109..110 run past the end of block 'b'",
        ),
        ('[[point]]\nkey="a"\nname="A"\naddr=100\ntype="u16"\nscael=3\n', r"#1: unknown key\(s\) 'scael'"),
        (
            '[[point]]\nkey="a"\nname="A"\naddr=100\ntype="u16"\n[point.states]\n1="running"\n',
            r"key '1' must be one of online, standby, fault, off",
        ),
        (
            '[[point]]\nkey="a"\nname="A"\naddr=100\ntype="u16"\n[[point]]\nkey="a"\nname="B"\naddr=101\ntype="u16"\n',
            r"point key 'a' is used by 'A' and 'B'",
        ),
        ('[[point]]\nkey="a"\nname="A"\naddr=100\ntype="u16"\nscale=0\n', r"key 'scale' must not be 0"),
        (
            '[[point]]\nname="A_SF"\naddr=100\ntype="sunssf"\n',
            r"default' of a sunssf point must be the served scale factor",
        ),
        ('[[point]]\nkey="a"\nname="A"\naddr=100\ntype="string"\n', r"key 'words' is required"),
    ],
)
def test_malformed_profiles_name_file_point_and_problem(tmp_path: Path, body: str, message: str) -> None:
    f = _write(tmp_path, body)
    with pytest.raises(ConfigError, match=message) as e:
        load_profile(f)
    assert str(f) in str(e.value)


def test_block_and_table_errors(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"\[\[block\]\] #1: key 'count' must be between 1 and 125, got 126"
    ):
        load_profile(
            _write(tmp_path, "", '[device]\nkind="meter"\n[[block]]\nname="b"\nstart=0\ncount=126\n')
        )
    two = (
        '[device]\nkind="meter"\n[[block]]\nname="a"\nstart=0\ncount=10\n'
        '[[block]]\nname="b"\nstart=5\ncount=10\n'
    )
    with pytest.raises(ConfigError, match=r"\[\[block\]\] 'b' overlaps \[\[block\]\] 'a'"):
        load_profile(_write(tmp_path, "", two))
    inp = '[device]\nkind="pcs"\n[[block]]\nname="b"\ntable="input"\nstart=0\ncount=2\n'
    with pytest.raises(
        ConfigError, match=r"key 'writable' is set but block 'input' registers cannot be written"
    ):
        load_profile(
            _write(tmp_path, '[[point]]\nkey="a"\nname="A"\naddr=0\ntype="u16"\nwritable=true\n', inp)
        )
    with pytest.raises(ConfigError, match=r"\[device\]: key 'kind' must be one of cluster, pcs, meter"):
        load_profile(_write(tmp_path, "", '[device]\nkind="bms"\n'))
    with pytest.raises(ConfigError, match=r"nonexistent_profile.toml: file not found"):
        load_profile("nonexistent_profile")
    spec = (
        '[device]\nkind="meter"\n[sunspec]\n[[sunspec.model]]\nid=1\nlength=66\n'
        '[[block]]\nname="b"\nstart=40070\ncount=4\n'
    )
    with pytest.raises(
        ConfigError, match=r"point a \(A\) at register 40070 lies outside the data of every SunSpec model"
    ):
        load_profile(_write(tmp_path, '[[point]]\nkey="a"\nname="A"\naddr=40070\ntype="u16"\n', spec))
