"""ModbusDevice against real loopback TCP: a pymodbus server serving images from encode_image."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from agent.model.config import DeviceConfig
from drivers import keys as k
from drivers.device import ModbusDevice, WriteError
from drivers.imageserver import ImageServer
from drivers.profile import Profile, RegisterImage, load_profile
from drivers.reading import Quality, Reading

from .fakes import FakeClock

# Engineering values for every point of every shipped profile (all exactly representable).
SAMPLES: dict[str, dict[str, float | int | str]] = {
    "bms_sunspec_802": {
        "capacity_ah": 314.0,
        "connect_cmd": 1.0,
        "capacity_wh": 418000.0,
        "rated_charge_w": 209000.0,
        "rated_discharge_w": 209000.0,
        "soc_pct": 55.5,
        "soh_pct": 98.7,
        "cycles": 1234.0,
        "charge_status": 4.0,
        "state": 3,
        "alarms": 5,
        "voltage_v": 1331.2,
        "cell_v_max": 3.412,
        "cell_v_min": 3.298,
        "current_a": -157.3,
        "max_charge_a": 160.0,
        "max_discharge_a": 314.0,
        "power_w": -209400.0,
        "string_count": 0.0,
        "temp_max_c": 31.5,
        "temp_min_c": -2.5,
    },
    "pcs_sunspec_70x": {
        "operating_state": 1.0,
        "state": 3,
        "alarms": 0,
        "power_w": -315600.0,
        "voltage_v": 400.5,
        "frequency_hz": 49.98,
        "rated_w": 630000.0,
        "rated_charge_w": 630000.0,
        "rated_discharge_w": 630000.0,
        "setpoint_enable": 1.0,
        "setpoint_mode": 1.0,
        "setpoint_w": -315600.0,
        "revert_setpoint_w": 0.0,
        "revert_enable": 1.0,
        "revert_s": 5.0,
        "revert_remaining_s": 3.0,
    },
    "pcs_vendor_acme": {
        "state": 3,
        "power_w": -123400.0,
        "frequency_hz": 50.02,
        "voltage_v": 690.0,
        "rated_w": 630000.0,
        "alarms": 0x00010002,
        "heartbeat": 77.0,
        "setpoint_w": -123400.0,
        "setpoint_enable": 1.0,
        "revert_s": 5.0,
    },
    "pcs_vendor_acme_pcc": {
        "state": 3,
        "power_w": -123400.0,
        "frequency_hz": 50.02,
        "voltage_v": 690.0,
        "rated_w": 630000.0,
        "alarms": 0,
        "heartbeat": 77.0,
        "setpoint_w": -123400.0,
        "setpoint_enable": 1.0,
        "revert_s": 5.0,
        "pcc_enable": 1.0,
        "pcc_target_w": 1234500.0,
        "pcc_ramp_w_per_s": 150000.0,
        "pcc_share": 0.25,
        "pcc_max_discharge_w": 627000.0,
        "pcc_max_charge_w": 418000.0,
        "pcc_grid_min_w": -50000.0,
        "pcc_active": 1.0,
        "pcc_grid_w": 1250000.0,
        "pcc_ref_w": 1234500.0,
        "pcc_sample_ms": 20.0,
    },
    "meter_sunspec_203": {
        "current_a": 7215.0,
        "voltage_v": 230.1,
        "frequency_hz": 50.01,
        "power_w": 5432000.0,
        "energy_export_wh": 1000.0,
        "energy_import_wh": 123456789000.0,
    },
    "pv_sunspec_103": {
        "power_w": 812300.0,
        "frequency_hz": 50.0,
        "energy_export_wh": 98765000.0,
        "state": 4,
        "alarms": 0,
    },
    "rack_load_vendor": {
        "power_w": 5432125.0,
        "rack_row_1_w": 700000.0,
        "rack_row_2_w": 650000.0,
        "rack_row_3_w": 710000.0,
        "rack_row_4_w": 690000.0,
        "rack_row_5_w": 0.0,
        "rack_row_6_w": 1000.0,
        "rack_row_7_w": 65535000.0,
        "rack_row_8_w": 680000.0,
        "energy_import_wh": 987654000.0,
        "voltage_v": 415.2,
        "frequency_hz": 50.01,
        "model_name": "ACME-RLM-8",
    },
}


def cfg(
    port: int, unit: int = 1, profile: str = "bms_sunspec_802", timeout_s: float = 0.2, retries: int = 0
) -> DeviceConfig:
    return DeviceConfig(
        id=f"dev{unit}@{port}",
        kind="cluster",
        profile=profile,
        host="127.0.0.1",
        port=port,
        unit=unit,
        timeout_s=timeout_s,
        retries=retries,
    )


def image(name: str, **sf: int) -> tuple[Profile, RegisterImage]:
    p = load_profile(name)
    return p, p.encode_image(SAMPLES[name], sf)


@pytest.fixture
async def bms_server() -> AsyncIterator[ImageServer]:
    _, img = image("bms_sunspec_802")
    srv = ImageServer({1: img})
    await srv.start()
    yield srv
    await srv.stop()


async def test_every_profile_reads_its_engineering_values() -> None:
    images = {}
    profiles = {}
    for unit, name in enumerate(sorted(SAMPLES), start=1):
        profiles[unit], images[unit] = image(name)
    srv = ImageServer(images)
    port = await srv.start()
    try:
        for unit, prof in profiles.items():
            dev = ModbusDevice(cfg(port, unit, prof.name), prof, stale_after_s=3.0)
            got = await dev.poll()
            await dev.close()
            expected = SAMPLES[prof.name]
            assert set(got) == set(expected), prof.name
            for key, v in expected.items():
                assert got[key].quality is Quality.GOOD, (prof.name, key, got[key])
                assert got[key].value == v, (prof.name, key, got[key])
            assert dev.health.requests == len(prof.blocks)  # one request per block
            assert dev.health.consecutive_failures == 0
    finally:
        await srv.stop()


async def test_bad_values_become_qualities_not_numbers() -> None:
    p = load_profile("bms_sunspec_802")
    values: dict[str, float | int | str | None] = dict(SAMPLES["bms_sunspec_802"])
    values["soc_pct"] = 120.0  # encodable, outside [0, 100]
    values["voltage_v"] = None  # not implemented marker 0xFFFF
    img = p.encode_image(values)
    img.holding[40130] = 0x8000  # CellV_SF "not implemented": both cell voltages are INVALID
    srv = ImageServer({1: img})
    port = await srv.start()
    try:
        dev = ModbusDevice(cfg(port), p, stale_after_s=3.0)
        got = await dev.poll()
        await dev.close()
    finally:
        await srv.stop()
    assert got["soc_pct"] == Reading(120.0, Quality.OUT_OF_RANGE, got["soc_pct"].t)
    assert got["voltage_v"].quality is Quality.INVALID and got["voltage_v"].value is None
    assert got["cell_v_max"].quality is Quality.INVALID
    assert got["cell_v_min"].quality is Quality.INVALID
    assert got["soh_pct"].value == 98.7 and got["soh_pct"].quality is Quality.GOOD


async def test_silent_device_comm_error_then_good_then_stale(bms_server: ImageServer) -> None:
    clock = FakeClock()
    p = load_profile("bms_sunspec_802")
    dev = ModbusDevice(cfg(bms_server.port, timeout_s=0.2), p, stale_after_s=3.0, clock=clock)
    bms_server.mode[1] = "silent"
    t0 = time.perf_counter()
    got = await dev.poll()
    took = time.perf_counter() - t0
    assert all(r.quality is Quality.COMM_ERROR and r.value is None for r in got.values())
    assert 0.15 < took < 0.6  # one timeout, the other blocks are not tried
    assert dev.health.consecutive_failures == 1
    assert dev.id in dev.health.last_error

    bms_server.mode[1] = "ok"
    clock.t += 1.0  # past the 0.5 s backoff
    got = await dev.poll()
    assert got["soc_pct"] == Reading(55.5, Quality.GOOD, 1001.0)

    bms_server.mode[1] = "silent"
    clock.t = 1002.0  # failed poll, 1 s after the good read: still GOOD, original t
    got = await dev.poll()
    assert got["soc_pct"] == Reading(55.5, Quality.GOOD, 1001.0)
    clock.t = 1004.5  # 3.5 s after the good read (> stale_after_s): STALE, value kept
    got = await dev.poll()
    assert got["soc_pct"] == Reading(55.5, Quality.STALE, 1001.0)
    assert got["state"] == Reading(3, Quality.STALE, 1001.0)
    assert dev.health.consecutive_failures == 2
    assert dev.health.last_good_t == 1001.0
    await dev.close()


async def test_backoff_answers_at_once_without_network(bms_server: ImageServer) -> None:
    clock = FakeClock()
    dev = ModbusDevice(cfg(bms_server.port), load_profile("bms_sunspec_802"), 3.0, clock=clock)
    bms_server.mode[1] = "silent"
    await dev.poll()
    assert dev.health.backoff_s == 0.5
    sent = bms_server.requests
    t0 = time.perf_counter()
    got = await dev.poll()  # clock not advanced: still backing off
    assert time.perf_counter() - t0 < 0.1  # no request, so no 0.2 s timeout either
    assert bms_server.requests == sent
    assert got["soc_pct"].quality is Quality.COMM_ERROR
    clock.t += 0.6
    await dev.poll()  # fails again: the delay doubles, capped at 10 s
    assert dev.health.backoff_s == 1.0
    for _ in range(8):
        clock.t += dev.health.backoff_s + 0.01
        await dev.poll()
    assert dev.health.backoff_s == 10.0
    await dev.close()


async def test_exception_response_is_a_quality_not_an_exception(bms_server: ImageServer) -> None:
    clock = FakeClock()
    dev = ModbusDevice(cfg(bms_server.port), load_profile("bms_sunspec_802"), 3.0, clock=clock)
    bms_server.mode[1] = "exception"
    got = await dev.poll()
    assert got["soc_pct"].quality is Quality.COMM_ERROR
    assert "exception response (code 4)" in dev.health.last_error
    assert dev.health.connected  # the device answered: no reconnect, no backoff
    bms_server.mode[1] = "ok"
    got = await dev.poll()
    assert got["soc_pct"] == Reading(55.5, Quality.GOOD, 1000.0)
    bms_server.mode[1] = "exception"
    clock.t = 1004.0
    got = await dev.poll()
    assert got["soc_pct"] == Reading(55.5, Quality.STALE, 1000.0)
    assert dev.health.total_errors == 2
    await dev.close()


async def test_dead_device_costs_the_live_one_nothing() -> None:
    _, img = image("bms_sunspec_802")
    live_srv, dead_srv = ImageServer({1: img}), ImageServer({1: img})
    await live_srv.start()
    await dead_srv.start()
    dead_srv.mode[1] = "silent"
    p = load_profile("bms_sunspec_802")
    live = ModbusDevice(cfg(live_srv.port, timeout_s=0.3, retries=1), p, 3.0)
    dead = ModbusDevice(cfg(dead_srv.port, timeout_s=0.3, retries=1), p, 3.0)
    try:
        await live.poll()  # connect once
        alone = []
        for _ in range(5):
            t0 = time.perf_counter()
            await live.poll()
            alone.append(time.perf_counter() - t0)
        done: dict[str, float] = {}

        async def timed(name: str, d: ModbusDevice) -> dict[str, Reading]:
            r = await d.poll()
            done[name] = time.perf_counter() - t0
            return r

        t0 = time.perf_counter()
        live_r, dead_r = await asyncio.gather(timed("live", live), timed("dead", dead))
        assert live_r["soc_pct"].quality is Quality.GOOD
        assert dead_r["soc_pct"].quality is Quality.COMM_ERROR
        # the live device finishes as fast as alone (loose bound for a shared 2-core machine)
        assert done["live"] < max(alone) + 0.2
        assert done["live"] < 0.3  # never waits for the dead one's 0.6 s
        # the dead one is bounded by timeout x (1 + retries) = 0.6 s, plus margin
        assert 0.55 < done["dead"] < 0.9
        # next cycle: the dead device is backing off and answers at once
        t0 = time.perf_counter()
        await asyncio.gather(timed("live", live), timed("dead", dead))
        assert done["dead"] < 0.2  # no request, so not even one 0.3 s timeout
    finally:
        await live.close()
        await dead.close()
        await live_srv.stop()
        await dead_srv.stop()


async def test_refused_connection_is_fast_and_reconnects_when_server_returns() -> None:
    _, img = image("bms_sunspec_802")
    srv = ImageServer({1: img})
    port = await srv.start()
    clock = FakeClock()
    dev = ModbusDevice(cfg(port), load_profile("bms_sunspec_802"), 3.0, clock=clock)
    got = await dev.poll()
    assert got["soc_pct"] == Reading(55.5, Quality.GOOD, 1000.0)
    await srv.stop()
    clock.t = 1001.0
    t0 = time.perf_counter()
    got = await dev.poll()  # connection lost
    assert time.perf_counter() - t0 < 0.3
    assert got["soc_pct"] == Reading(55.5, Quality.GOOD, 1000.0)
    assert not dev.health.connected
    clock.t = 1002.0
    got = await dev.poll()  # refused (nothing listens)
    assert dev.health.consecutive_failures == 2
    assert "cannot connect" in dev.health.last_error
    srv2 = ImageServer({1: img}, port=port)
    await srv2.start()
    try:
        clock.t = 1010.0
        got = await dev.poll()
        assert got["soc_pct"] == Reading(55.5, Quality.GOOD, 1010.0)
        assert dev.health.connected and dev.health.consecutive_failures == 0
        assert dev.health.backoff_s == 0.0
    finally:
        await dev.close()
        await srv2.stop()


@pytest.fixture
async def pcs_servers() -> AsyncIterator[ImageServer]:
    _, sunspec = image("pcs_sunspec_70x", WSet_SF=1)
    _, acme = image("pcs_vendor_acme")
    srv = ImageServer({1: sunspec, 2: acme})
    await srv.start()
    yield srv
    await srv.stop()


async def test_write_outside_range_is_refused_before_anything_is_sent(pcs_servers: ImageServer) -> None:
    dev = ModbusDevice(cfg(pcs_servers.port, 1, "pcs_sunspec_70x"), load_profile("pcs_sunspec_70x"), 3.0)
    sent = pcs_servers.requests
    with pytest.raises(
        WriteError, match=r"dev1@\d+: point 'setpoint_w' \(WSet, register 40301\).*outside range"
    ):
        await dev.write({"revert_s": 5.0, "setpoint_w": 2_500_000.0})
    with pytest.raises(WriteError, match=r"point 'power_w' \(W, register 40080\) is not writable"):
        await dev.write({"power_w": 1.0})
    with pytest.raises(WriteError, match=r"no point 'bogus'"):
        await dev.write({"bogus": 1.0})
    with pytest.raises(WriteError, match=r"setpoint_w.*not a finite number"):
        await dev.write({"setpoint_w": float("nan")})
    assert pcs_servers.requests == sent  # nothing left the driver
    assert await pcs_servers.get_values(1, "holding", 40301, 2) == [0xFFFF, 0x84B8]  # -31560 (-315600 W)
    await dev.close()


async def test_write_with_scale_factor_verified_by_readback(pcs_servers: ImageServer) -> None:
    dev = ModbusDevice(cfg(pcs_servers.port, 1, "pcs_sunspec_70x"), load_profile("pcs_sunspec_70x"), 3.0)
    # no poll first: the driver must read WSet_SF (served as 1, i.e. tens of W) itself
    await dev.write({"revert_s": 5.0, "setpoint_enable": 1.0, "setpoint_w": -250000.0})
    # -250000 W / 10 = -25000 = 0xFFFF9E58, high word first
    assert await pcs_servers.get_values(1, "holding", 40301, 2) == [0xFFFF, 0x9E58]
    assert await pcs_servers.get_values(1, "holding", 40308, 2) == [0, 5]
    assert await pcs_servers.get_values(1, "holding", 40299, 1) == [1]
    got = await dev.poll()
    assert got["setpoint_w"].value == -250000.0
    requests = dev.health.requests
    await dev.write({"setpoint_w": 100000.0})  # SF cached: one write + one read-back
    assert dev.health.requests == requests + 2
    await dev.close()


async def test_vendor_write_flips_sign_and_word_order(pcs_servers: ImageServer) -> None:
    dev = ModbusDevice(cfg(pcs_servers.port, 2, "pcs_vendor_acme"), load_profile("pcs_vendor_acme"), 3.0)
    # ACME: kW x10, positive = charge, low word first. +100 kW discharge -> -1000 -> 0xFFFFFC18
    # setpoint (100-101), enable (102) and watchdog (103) are contiguous: one request
    before = dev.health.requests
    await dev.write({"setpoint_w": 100000.0, "setpoint_enable": 1.0, "revert_s": 4.0})
    assert dev.health.requests == before + 2
    assert await pcs_servers.get_values(2, "holding", 100, 4) == [0xFC18, 0xFFFF, 1, 4]
    await dev.close()


async def test_grid_power_block_goes_out_in_one_request_and_reads_back() -> None:
    prof, img = image("pcs_vendor_acme_pcc")
    srv = ImageServer({1: img})
    port = await srv.start()
    dev = ModbusDevice(cfg(port, 1, "pcs_vendor_acme_pcc"), prof, 3.0)
    try:
        values = {
            k.PCC_ENABLE: 1.0, k.PCC_TARGET_W: -20000.0, k.PCC_RAMP_W_PER_S: 100000.0, k.PCC_SHARE: 0.333,
            k.PCC_MAX_DISCHARGE_W: 209000.0, k.PCC_MAX_CHARGE_W: 0.0, k.PCC_GRID_MIN_W: 0.0,
        }  # fmt: skip
        before = dev.health.requests
        await dev.write(values)
        assert dev.health.requests == before + 2  # registers 110-121 in one FC16, then the read-back
        # grid target in kW x10, import positive, low word first: -200 -> 0xFF38, 0xFFFF
        assert await srv.get_values(1, "holding", 111, 2) == [0xFF38, 0xFFFF]
        assert await srv.get_values(1, "holding", 115, 1) == [333]
        got = await dev.poll()
        assert got[k.PCC_SHARE].value == 0.333 and got[k.PCC_TARGET_W].value == -20000.0
        with pytest.raises(WriteError, match=r"pcc_share.*register 115.*outside range"):
            await dev.write({k.PCC_SHARE: 1.5})
    finally:
        await dev.close()
        await srv.stop()


async def test_write_not_taken_by_device_fails_verification(pcs_servers: ImageServer) -> None:
    dev = ModbusDevice(cfg(pcs_servers.port, 2, "pcs_vendor_acme"), load_profile("pcs_vendor_acme"), 3.0)
    pcs_servers.mode[2] = "ignore_writes"
    with pytest.raises(WriteError, match=r"setpoint_w at register 100: read back \[1234, 0\]"):
        await dev.write({"setpoint_w": 100000.0})
    pcs_servers.mode[2] = "exception"
    with pytest.raises(WriteError, match=r"exception response"):
        await dev.write({"setpoint_w": 100000.0})
    await dev.close()
