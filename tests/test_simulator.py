"""The simulated site over real loopback Modbus TCP: served values, writes, revert, faults, CLI."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from agent.cli import main as cli_main
from agent.model.config import DeviceConfig, load_site
from drivers import keys as K
from drivers.codec import encode
from drivers.profile import load_profile
from drivers.reading import Quality
from simulators.cli import build_command
from simulators.control import send_command
from simulators.site import SimulatedSite
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "agent" / "sites" / "demo.toml"
SIM_TABLE = """
[simulation]
noise = false
start_hour = 3.0
seed = 1
soc = { c01 = 80 }
revert_s = 30
"""


def _site_file(tmp_path: Path, extra: str = SIM_TABLE) -> Path:
    p = tmp_path / "site.toml"
    p.write_text(DEMO.read_text() + extra)
    return p


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimulatedSite]:
    s = SimulatedSite(load_site(_site_file(tmp_path)), any_port=True, control_port=0)
    await s.start(ticking=False)  # stepped by the test: deterministic
    try:
        yield s
    finally:
        await s.stop()


async def _client(sim: SimulatedSite, dev_id: str) -> AsyncModbusTcpClient:
    c = AsyncModbusTcpClient("127.0.0.1", port=sim.ports[dev_id], timeout=0.3, retries=0)
    assert await c.connect()
    return c


async def read_device(sim: SimulatedSite, dev: DeviceConfig) -> dict[str, tuple[Any, Quality]]:
    """Read every block of the device's profile and decode it with the driver profile."""
    prof = load_profile(dev.profile)
    c = await _client(sim, dev.id)
    try:
        words = {}
        for b in prof.blocks:
            fn = c.read_holding_registers if b.table == "holding" else c.read_input_registers
            r = await fn(b.start, count=b.count, device_id=dev.unit)
            if r.isError():
                raise ModbusException(f"exception {r.exception_code}")
            words[b] = r.registers
        return prof.decode_blocks(words, {})
    finally:
        c.close()


async def write_point(sim: SimulatedSite, dev: DeviceConfig, key: str, value: float) -> None:
    prof = load_profile(dev.profile)
    p = prof.point(key)
    sf = prof.default_sf().get(p.scale_sf) if p.scale_sf else None
    c = await _client(sim, dev.id)
    try:
        r = await c.write_registers(p.addr, encode(p, value, sf), device_id=dev.unit)
        assert not r.isError(), r
    finally:
        c.close()


def dev(sim: SimulatedSite, dev_id: str) -> DeviceConfig:
    return next(d for d in sim.site.devices if d.id == dev_id)


async def test_values_served_match_the_physics(sim: SimulatedSite) -> None:
    sim.advance(1.0)
    c01 = await read_device(sim, dev(sim, "c01"))
    phys = sim.model.plant.clusters["c01"]
    assert c01[K.SOC_PCT] == (pytest.approx(80.0, abs=0.05), Quality.GOOD)
    assert c01[K.MAX_DISCHARGE_A][0] == pytest.approx(phys.max_discharge_a, abs=0.05)
    assert c01[K.VOLTAGE_V][0] == pytest.approx(phys.voltage_v, abs=0.05)
    assert c01[K.CAPACITY_WH][0] == pytest.approx(418_000.0, abs=100)
    assert load_profile("bms_sunspec_802").state_name(int(c01[K.STATE][0])) == K.STATE_STANDBY
    grid = await read_device(sim, dev(sim, "grid"))
    gpu = await read_device(sim, dev(sim, "gpu"))
    m = sim.model
    assert gpu[K.POWER_W][0] == pytest.approx(m.load_meter.power_w, abs=1.0)  # f32 kW
    assert grid[K.POWER_W][0] == pytest.approx(m.grid.power_w, abs=500.0)  # W_SF = 3: kW resolution
    assert 800_000 < m.load_meter.power_w < 8_000_000
    assert m.grid.power_w == pytest.approx(m.load_meter.power_w - m.pv_meter.power_w - m.battery_w)
    assert grid[K.FREQUENCY_HZ][0] == pytest.approx(50.0)


@pytest.mark.parametrize("pcs_id", ["pcs1", "pcs4"])  # SunSpec 70x and the vendor map
async def test_setpoint_written_over_modbus_moves_the_pcs(sim: SimulatedSite, pcs_id: str) -> None:
    d = dev(sim, pcs_id)
    await write_point(sim, d, K.SETPOINT_W, -250_000.0)
    sim.advance(1.0)
    assert sim.model.plant.pcs[pcs_id].power_w == pytest.approx(-250_000.0, rel=1e-3)
    vals = await read_device(sim, d)
    assert vals[K.POWER_W][0] == pytest.approx(-250_000.0, abs=100.0)
    assert vals[K.SETPOINT_W][0] == pytest.approx(-250_000.0, abs=100.0)
    assert sum(c.power_w for c in sim.model.plant.pcs[pcs_id].clusters) == pytest.approx(-250_000.0, rel=1e-3)


async def test_revert_timer_written_over_modbus_returns_pcs_to_zero(sim: SimulatedSite) -> None:
    d = dev(sim, "pcs2")
    await write_point(sim, d, K.REVERT_S, 2.0)
    await write_point(sim, d, K.SETPOINT_W, 300_000.0)
    sim.advance(1.9)
    assert (await read_device(sim, d))[K.POWER_W][0] == pytest.approx(300_000.0, abs=100.0)
    sim.advance(1.0)  # 2.9 s without a write
    vals = await read_device(sim, d)
    assert vals[K.POWER_W][0] == pytest.approx(0.0, abs=100.0)
    assert vals[K.SETPOINT_W][0] == 0.0


async def test_silent_and_removed_devices_time_out(sim: SimulatedSite) -> None:
    sim.silent("pcs3")
    with pytest.raises(ModbusException):
        await read_device(sim, dev(sim, "pcs3"))
    sim.silent("pcs3", False)
    assert (await read_device(sim, dev(sim, "pcs3")))[K.RATED_W][0] == pytest.approx(630_000.0)
    sim.cluster_remove("c05")
    with pytest.raises(ModbusException):
        await read_device(sim, dev(sim, "c05"))
    sim.cluster_remove("c05", False)
    assert (await read_device(sim, dev(sim, "c05")))[K.SOC_PCT][1] is Quality.GOOD


async def test_exception_responses(sim: SimulatedSite) -> None:
    sim.exception("c02", 4)
    c = await _client(sim, "c02")
    try:
        r = await c.read_holding_registers(40072, count=10, device_id=1)
        assert r.isError() and r.exception_code == 4
        sim.exception("c02", None)
        r = await c.read_holding_registers(40072, count=10, device_id=1)
        assert not r.isError()
        r = await c.read_holding_registers(1000, count=2, device_id=1)  # outside the map
        assert r.isError() and r.exception_code == 2
        r = await c.write_registers(40081, [5], device_id=1)  # SoC is read-only
        assert r.isError() and r.exception_code == 2
    finally:
        c.close()


async def test_corrupt_values_reach_the_driver_as_invalid_or_out_of_range(sim: SimulatedSite) -> None:
    sim.corrupt("c03", K.SOC_PCT, math.nan)
    sim.corrupt("c03", K.VOLTAGE_V, 1e9)
    sim.corrupt("gpu", K.POWER_W, math.nan)
    c03 = await read_device(sim, dev(sim, "c03"))
    assert c03[K.SOC_PCT] == (None, Quality.INVALID)
    assert c03[K.VOLTAGE_V][1] is Quality.OUT_OF_RANGE
    assert (await read_device(sim, dev(sim, "gpu")))[K.POWER_W] == (None, Quality.INVALID)
    sim.corrupt("c03", K.SOC_PCT, None)
    assert (await read_device(sim, dev(sim, "c03")))[K.SOC_PCT][1] is Quality.GOOD


async def test_cluster_fault_and_pcs_trip_show_as_fault_state(sim: SimulatedSite) -> None:
    sim.cluster_fault("c07")
    sim.pcs_trip("pcs4")
    sim.advance(0.5)
    c07 = await read_device(sim, dev(sim, "c07"))
    assert load_profile("bms_sunspec_802").state_name(int(c07[K.STATE][0])) == K.STATE_FAULT
    assert (c07[K.MAX_CHARGE_A][0], c07[K.MAX_DISCHARGE_A][0]) == (0.0, 0.0)
    pcs4 = await read_device(sim, dev(sim, "pcs4"))
    assert load_profile("pcs_vendor_acme").state_name(int(pcs4[K.STATE][0])) == K.STATE_FAULT
    await write_point(sim, dev(sim, "pcs4"), K.SETPOINT_W, 200_000.0)
    sim.advance(1.0)
    assert sim.model.plant.pcs["pcs4"].power_w == 0.0


async def test_grid_outage_and_load_step(sim: SimulatedSite) -> None:
    sim.load_offset(500_000.0)
    sim.grid(False)
    sim.advance(0.5)
    grid = await read_device(sim, dev(sim, "grid"))
    assert (grid[K.VOLTAGE_V][0], grid[K.FREQUENCY_HZ][0], grid[K.POWER_W][0]) == (0.0, 0.0, 0.0)
    m = sim.model
    assert m.load_meter.power_w == pytest.approx(m.load.inner.at(m.t) + 500_000.0)
    assert m.battery_w + m.unserved_w == pytest.approx(m.load_meter.power_w - m.pv_meter.power_w)
    assert m.battery_w > 0.0


async def test_control_socket_and_sim_fault_command(sim: SimulatedSite) -> None:
    ans = await send_command(sim.control_port, {"cmd": "cluster_fault", "id": "c09"})
    assert ans["ok"] and ans["status"]["clusters"]["c09"]["state"] == K.STATE_FAULT
    bad = await send_command(sim.control_port, {"cmd": "cluster_fault", "id": "c99"})
    assert not bad["ok"] and "c99" in bad["error"]
    port = str(sim.control_port)
    rc = await asyncio.to_thread(cli_main, ["sim-fault", "--port", port, "cluster-fault", "c09", "--clear"])
    assert rc == 0 and sim.model.plant.clusters["c09"].faulted is False
    rc = await asyncio.to_thread(cli_main, ["sim-fault", "--port", port, "grid-outage"])
    assert rc == 0 and sim.model.grid_up is False
    assert build_command("corrupt", ["c01", "soc_pct", "nan"], False) == {
        "cmd": "corrupt", "id": "c01", "on": True, "key": "soc_pct", "value": "nan"
    }  # fmt: skip
    rc = await asyncio.to_thread(cli_main, ["sim-fault", "--port", port, "corrupt", "c01", "soc_pct", "nan"])
    assert rc == 0 and math.isnan(sim.faults["c01"].corrupt[K.SOC_PCT])


def _scan_sunspec(port: int) -> dict[int, Any]:
    import sunspec2.modbus.client as sc  # type: ignore[import-untyped]

    d = sc.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=2)
    try:
        d.scan()
        return {int(k): v for k, v in d.models.items() if isinstance(k, int) or str(k).isdigit()}
    finally:
        d.close()


async def test_standard_sunspec_client_can_scan_the_bms_and_pcs(sim: SimulatedSite) -> None:
    sim.advance(1.0)
    bms = await asyncio.to_thread(_scan_sunspec, sim.ports["c01"])
    assert {1, 802, 803} <= set(bms)
    assert bms[802][0].SoC.cvalue == pytest.approx(80.0, abs=0.05)
    pcs = await asyncio.to_thread(_scan_sunspec, sim.ports["pcs1"])
    assert {1, 701, 702, 704} <= set(pcs)


def test_cli_rejects_a_bad_site_file_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _site_file(tmp_path, '\n[simulation]\nload = "quantum"\n')
    assert cli_main(["simulate", "--site", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "'load'" in err and "quantum" in err
    missing = tmp_path / "nope.toml"
    assert cli_main(["simulate", "--site", str(missing)]) == 2
    assert "file not found" in capsys.readouterr().err


def test_simulate_command_serves_until_interrupted(tmp_path: Path) -> None:
    text = DEMO.read_text()
    for old in sorted({d.port for d in load_site(DEMO).devices}):
        text = text.replace(f"port = {old}\n", f"port = {free_port()}\n")
    site = tmp_path / "site.toml"
    site.write_text(text + SIM_TABLE)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "simulate", "--site", str(site), "--speed", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "control" in line:
                break
        if not any("c12" in ln for ln in lines):
            proc.kill()
            pytest.fail(f"simulate printed {lines!r}; stderr: {proc.communicate(timeout=15)[1]}")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "simulator stopped" in out

    bad = tmp_path / "bad.toml"
    bad.write_text(text + "\n[simulation]\ntau_s = -1\n")
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "simulate", "--site", str(bad)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "tau_s" in r.stderr and str(bad) in r.stderr


async def _until(sim: SimulatedSite, t: float, timeout_s: float = 5.0) -> None:
    """Wait (real time) until the ticking simulation reaches simulated time `t`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while sim.model.t < t:
        assert loop.time() < deadline, f"simulation stuck at t={sim.model.t:.2f} s"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.03)  # let the ticker refresh the images after that step


async def test_real_time_ticking_with_speed_up_and_revert(tmp_path: Path) -> None:
    # Speed 5 and a 4 s revert timer leave ~0.6 real s between the two reads below: enough for a
    # busy CI machine not to see the revert early.
    s = SimulatedSite(load_site(_site_file(tmp_path)), speed=5.0, any_port=True, control_port=0)
    await s.start()
    try:
        loop = asyncio.get_running_loop()
        real0, t0 = loop.time(), s.model.t
        d = dev(s, "pcs3")
        await write_point(s, d, K.REVERT_S, 4.0)
        await write_point(s, d, K.SETPOINT_W, 150_000.0)
        t_write = s.model.t
        await _until(s, t_write + 1.0)
        assert (await read_device(s, d))[K.POWER_W][0] == pytest.approx(150_000.0, abs=100.0)
        await _until(s, t_write + 5.0)  # 4 s revert timer expired, nobody rewrote
        assert (await read_device(s, d))[K.POWER_W][0] == pytest.approx(0.0, abs=100.0)
        rate = (s.model.t - t0) / (loop.time() - real0)
        assert 3.0 < rate < 6.25  # ~5 simulated seconds per real second
    finally:
        await s.stop()


async def test_the_agents_own_driver_polls_and_writes_every_device(sim: SimulatedSite) -> None:
    from dataclasses import replace

    from drivers.device import ModbusDevice

    sim.advance(0.5)
    devices = {
        d.id: ModbusDevice(replace(d, port=sim.ports[d.id]), load_profile(d.profile), stale_after_s=3.0)
        for d in sim.site.devices
    }
    try:
        readings = {i: await d.poll() for i, d in devices.items()}
        for dev_id, r in readings.items():
            bad = {k: v.quality for k, v in r.items() if k in (K.POWER_W, K.SOC_PCT, K.STATE) and not v.ok}
            assert not bad, (dev_id, bad)
        assert readings["c01"][K.SOC_PCT].number() == pytest.approx(80.0, abs=0.05)
        for pcs_id in ("pcs1", "pcs4"):
            await devices[pcs_id].write({K.SETPOINT_W: 120_000.0})  # verified by read-back
        sim.advance(1.0)
        for pcs_id in ("pcs1", "pcs4"):
            assert (await devices[pcs_id].poll())[K.POWER_W].number() == pytest.approx(120_000.0, abs=100.0)
    finally:
        for d in devices.values():
            await d.close()
