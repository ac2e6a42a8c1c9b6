"""A simulated site on loopback: physics stepped in (scaled) real time behind Modbus TCP servers.

    sim = SimulatedSite(load_site("agent/sites/demo.toml"), speed=10, any_port=True)
    await sim.start()          # servers listening, physics ticking
    sim.ports["pcs1"]          # where each device answers
    sim.cluster_fault("c03")   # ... fault injection (see the methods below)
    await sim.stop()

Every tick (`tick_s` simulated seconds) the physics advances and each device's register image
is refreshed from it; values written over Modbus (setpoint, enable, revert timer) go straight
into the physics. Servers always bind 127.0.0.1, whatever host the site file names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from agent.model.clock import SiteClock
from agent.model.config import DeviceConfig, SiteConfig
from drivers import keys as K
from drivers.profile import load_profile
from simulators.control import ControlServer
from simulators.faults import EXCEPTION_CODES, CommFaults, parse_value
from simulators.image import DeviceImage, image_for
from simulators.load import Inference, LoadModel, Offset, SyntheticTraining, TraceReplay, WithCooling
from simulators.model import SiteModel
from simulators.physics import BatteryPlant, ClusterParams, PccCommand
from simulators.pv import ClearSkyPv
from simulators.server import PortServer, ServedUnit
from simulators.simconfig import SimulationConfig, parse_simulation

log = logging.getLogger("ems.sim")

MAX_CATCHUP_TICKS = 200  # ticks stepped per wake-up at most; more due are stepped as one long tick


def build_model(site: SiteConfig, sim: SimulationConfig, day_offset_s: float) -> SiteModel:
    """The pure physics of `site` as configured by its [simulation] table."""
    eta_c, eta_d = site.control.charge_efficiency, site.control.discharge_efficiency
    params = {
        c.id: ClusterParams(capacity_wh=c.capacity_wh, eta_charge=eta_c, eta_discharge=eta_d) for c in site.clusters
    }
    soc = {c.id: sim.soc.get(c.id, sim.soc_pct) for c in site.clusters}
    wiring = {p.id: (p.rated_w, list(p.clusters)) for p in site.pcs}
    plant = BatteryPlant.build(wiring, params, soc, sim.tau_s, sim.revert_s, sim.seed, sim.noise, sim.pcc_sample_s)
    it: LoadModel
    if sim.load == "synthetic":
        it = SyntheticTraining(nodes=sim.nodes, seed=sim.seed)
    elif sim.load == "trace":
        it = TraceReplay(nodes=sim.nodes)
    else:
        it = Inference(sim.inference_peak_w, sim.inference_trough_w, seed=sim.seed, day_offset_s=day_offset_s)
    load = Offset(WithCooling(it, sim.pue, sim.cooling_tau_s, sim.other_load_w))
    pv = ClearSkyPv(sim.pv_peak_w, day_offset_s=day_offset_s) if site.meter("pv") and sim.pv_peak_w else None
    return SiteModel(plant, load, pv, voltage_v=sim.grid_voltage_v, frequency_hz=sim.frequency_hz)


class SimulatedSite:
    def __init__(
        self,
        site: SiteConfig,
        speed: float | None = None,
        any_port: bool = False,
        control_port: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        epoch: float | None = None,
    ):
        """`any_port`: listen on free ports instead of the configured ones (tests); see `ports`.

        `epoch` (Unix s) with `speed` is the site clock the agent is given too (agent.model.clock):
        the simulated time of day starts at the epoch's (unless [simulation] start_hour says)."""
        self.site = site
        self.sim = parse_simulation(site)
        self.speed = self.sim.speed if speed is None else speed
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.any_port = any_port
        self.control_port = self.sim.control_port if control_port is None else control_port
        self._clock = clock
        if self.sim.start_hour is not None:
            day_offset = self.sim.start_hour * 3600.0
        else:
            now = SiteClock(self.speed, time.time() if epoch is None else epoch).wall(site.timezone)
            day_offset = now.hour * 3600.0 + now.minute * 60.0 + now.second
        self.model = build_model(site, self.sim, day_offset)
        self.faults: dict[str, CommFaults] = {d.id: CommFaults() for d in site.devices}
        self.images: dict[str, DeviceImage] = {d.id: image_for(d) for d in site.devices}
        self._devices = {d.id: d for d in site.devices}
        racks = [m for m in site.meters if m.role == "rack"]
        self._rack_share = 1.0 / len(racks) if racks else 1.0
        # grid-power (PCC) command registers as last written, per PCS whose profile has them
        self._pcc_regs: dict[str, dict[str, float]] = {
            d.id: {key: 0.0 for key in K.PCC_COMMAND_KEYS}
            for d in site.pcs
            if set(K.PCC_COMMAND_KEYS) <= load_profile(d.profile).writable_keys()
        }
        self.servers: list[PortServer] = []
        self.ports: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._control: Any = None
        self.model.step(self.sim.tick_s)  # meters show the site from the first read
        self.refresh()

    # --- values served ------------------------------------------------------------------------
    def values(self, dev: DeviceConfig) -> dict[str, float | int | str]:
        """What device `dev` reports right now (canonical keys), before communication faults."""
        m = self.model
        if dev.kind == "cluster":
            return m.plant.clusters[dev.id].measure()
        if dev.kind == "pcs":
            up = m.grid_up
            vals = m.plant.pcs[dev.id].measure(m.t, m.voltage_v, m.frequency_hz if up else 0.0)
            regs = self._pcc_regs.get(dev.id)
            if regs is not None:  # the command registers hold what was written; the mode is the PCS's
                vals |= {key: v for key, v in regs.items() if key != K.PCC_ENABLE}
            return vals
        vals = m.meter_values(dev.role)
        if dev.role == "rack":  # several rack meters share the IT load equally
            for k in (K.POWER_W, K.CURRENT_A, K.ENERGY_IMPORT_WH, K.ENERGY_EXPORT_WH):
                vals[k] = float(vals[k]) * self._rack_share
        return vals

    def refresh(self) -> None:
        for dev in self.site.devices:
            self.images[dev.id].refresh(self.values(dev), self.faults[dev.id].corrupt)

    def _on_write(self, dev: DeviceConfig) -> Callable[[dict[str, float]], None]:
        def write(decoded: dict[str, float]) -> None:
            if dev.kind == "cluster" and K.CONNECT_CMD in decoded:
                cmd = decoded[K.CONNECT_CMD]
                if cmd not in (K.CONNECT, K.DISCONNECT):
                    raise ValueError(f"{dev.id}: connect_cmd must be 1 (connect) or 2 (disconnect), got {cmd!r}")
                self.model.plant.clusters[dev.id].set_connected(cmd == K.CONNECT)
                self.images[dev.id].refresh(self.values(dev), self.faults[dev.id].corrupt)
                return
            if dev.kind != "pcs":
                return  # meters have nothing writable in the physics
            pcs = self.model.plant.pcs[dev.id]
            if K.REVERT_S in decoded:
                r = decoded[K.REVERT_S]
                if not (math.isfinite(r) and r >= 0):
                    raise ValueError(f"{dev.id}: revert_s must be >= 0, got {r!r}")
                pcs.revert_s = r
            if "revert_enable" in decoded:
                pcs.revert_enabled = bool(decoded["revert_enable"])
            if "revert_setpoint_w" in decoded:
                pcs.revert_to_w = decoded["revert_setpoint_w"]
            if "setpoint_mode" in decoded and decoded["setpoint_mode"] != 1:
                raise ValueError(f"{dev.id}: only setpoint_mode 1 (watts) is simulated")
            if K.SETPOINT_ENABLE in decoded:
                pcs.enabled = bool(decoded[K.SETPOINT_ENABLE])
            regs = self._pcc_regs.get(dev.id)
            pcc = [key for key in K.PCC_COMMAND_KEYS if key in decoded]
            if pcc and regs is not None:
                regs.update({key: decoded[key] for key in pcc})
                if regs[K.PCC_ENABLE] not in (0.0, 1.0):
                    raise ValueError(f"{dev.id}: pcc_enable must be 0 or 1, got {regs[K.PCC_ENABLE]!r}")
                pcc_cmd = (
                    PccCommand(
                        regs[K.PCC_TARGET_W], regs[K.PCC_RAMP_W_PER_S], regs[K.PCC_SHARE],
                        regs[K.PCC_MAX_DISCHARGE_W], regs[K.PCC_MAX_CHARGE_W], regs[K.PCC_GRID_MIN_W],
                    )
                    if regs[K.PCC_ENABLE] == 1.0
                    else None
                )  # fmt: skip
                pcs.write_pcc(pcc_cmd, self.model.t)
            if K.SETPOINT_W in decoded:
                if pcs.pcc_on:  # in grid-power mode the setpoint is only held (and is the heartbeat)
                    pcs.setpoint_w = decoded[K.SETPOINT_W]
                    pcs.last_write_t = self.model.t
                else:
                    pcs.write_setpoint(decoded[K.SETPOINT_W], self.model.t)
            self.images[dev.id].refresh(self.values(dev), self.faults[dev.id].corrupt)

        return write

    # --- running ------------------------------------------------------------------------------
    def advance(self, sim_seconds: float) -> None:
        """Step the physics by whole ticks covering `sim_seconds`, then refresh the images."""
        tick = self.sim.tick_s
        n = max(0, round(sim_seconds / tick))
        for _ in range(n):
            self.model.step(tick)
        self.refresh()

    async def start(self, ticking: bool = True) -> None:
        """Open the servers and the control socket; `ticking=False` leaves stepping to `advance`
        (deterministic tests)."""
        by_port: dict[int, dict[int, ServedUnit]] = {}
        for dev in self.site.devices:
            present = self._present(dev)
            unit = ServedUnit(dev.id, self.images[dev.id], self.faults[dev.id], present, self._on_write(dev))
            by_port.setdefault(dev.port, {})[dev.unit] = unit
        try:
            for port, units in by_port.items():
                srv = PortServer(0 if self.any_port else port, units)
                await srv.start()
                self.servers.append(srv)
                for u in units.values():
                    self.ports[u.device_id] = srv.port
            self._control = ControlServer(self.command, self.control_port)
            await self._control.start()
            self.control_port = self._control.port
        except BaseException:
            await self.stop()
            raise
        if ticking:
            self._task = asyncio.create_task(self._run())

    def _present(self, dev: DeviceConfig) -> Callable[[], bool]:
        if dev.kind == "cluster":
            c = self.model.plant.clusters[dev.id]
            return lambda: not c.removed
        return lambda: True

    async def _run(self) -> None:
        """Follow the real clock x speed in whole ticks. Behind by more than MAX_CATCHUP_TICKS (a
        host stall, or more ticks a second than the host can step) it steps longer ticks rather
        than skipping: the physics never falls behind the site clock the agent runs on."""
        tick = self.sim.tick_s
        start = self._clock()
        done = 0  # ticks stepped
        while True:
            due = int((self._clock() - start) * self.speed / tick)
            if due - done > MAX_CATCHUP_TICKS:
                self.model.step((due - done - MAX_CATCHUP_TICKS) * tick)  # first-order physics: stable
                done = due - MAX_CATCHUP_TICKS
            while done < due:
                self.model.step(tick)
                done += 1
            self.refresh()
            # wake for the next tick, but at most ~50 times a second: at high speed several ticks
            # are stepped per wake-up and the register images are refreshed once
            next_real = start + (done + 1) * tick / self.speed
            await asyncio.sleep(min(max(next_real - self._clock(), 0.02), 0.1))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._control is not None:
            await self._control.stop()
            self._control = None
        for srv in self.servers:
            await srv.stop()
        self.servers.clear()

    # --- fault injection ----------------------------------------------------------------------
    def _dev(self, device_id: str, kind: str | None = None) -> DeviceConfig:
        dev = self._devices.get(device_id)
        if dev is None or (kind is not None and dev.kind != kind):
            what = f"{kind} " if kind else "device "
            raise KeyError(f"no {what}{device_id!r} in {self.site.path}")
        return dev

    def cluster_fault(self, cluster_id: str, on: bool = True) -> None:
        c = self.model.plant.clusters[self._dev(cluster_id, "cluster").id]
        c.fault() if on else c.clear_fault()

    def cluster_remove(self, cluster_id: str, removed: bool = True) -> None:
        """Pull the cluster out (no power, no answer) or put it back."""
        c = self.model.plant.clusters[self._dev(cluster_id, "cluster").id]
        c.remove() if removed else c.re_add()

    def pcs_trip(self, pcs_id: str, on: bool = True) -> None:
        p = self.model.plant.pcs[self._dev(pcs_id, "pcs").id]
        p.trip() if on else p.reset()

    def pcs_ct(self, pcs_id: str, gain: float) -> None:
        """The PCS's grid meter reads `gain` x the grid (-1: CT reversed; 1: as wired correctly)."""
        if not math.isfinite(gain):
            raise ValueError(f"'gain' must be a finite number, got {gain!r}")
        self.model.plant.pcs[self._dev(pcs_id, "pcs").id].ct_gain = gain

    def silent(self, device_id: str, on: bool = True) -> None:
        self.faults[self._dev(device_id).id].silent = on

    def exception(self, device_id: str, code: int | None = 4) -> None:
        self.faults[self._dev(device_id).id].set_exception(code)

    def corrupt(self, device_id: str, key: str, value: float | None) -> None:
        """Serve `value` (NaN, out of range ...) for point `key`; None restores the physics value."""
        dev = self._dev(device_id)
        if key not in self.values(dev):
            raise KeyError(f"device {device_id!r} has no point {key!r}")
        f = self.faults[dev.id]
        if value is None:
            f.corrupt.pop(key, None)
        else:
            f.corrupt[key] = value
        self.refresh()

    def grid(self, up: bool) -> None:
        self.model.grid_up = up

    def load_offset(self, w: float) -> None:
        if not math.isfinite(w):
            raise ValueError(f"load offset must be finite, got {w!r}")
        self.model.load.offset_w = w

    def clear(self) -> None:
        """Undo every injected fault."""
        for f in self.faults.values():
            f.clear()
        for c in self.model.plant.clusters.values():
            c.clear_fault()
            c.re_add()
        for p in self.model.plant.pcs.values():
            p.reset()
            p.ct_gain = 1.0
        self.model.grid_up = True
        self.model.load.offset_w = 0.0

    def status(self) -> dict[str, Any]:
        m = self.model
        return {
            "t_s": round(m.t, 3),
            "grid_up": m.grid_up,
            "grid_w": round(m.grid.power_w, 1),
            "load_w": round(m.load_meter.power_w, 1),
            "pv_w": round(m.pv_meter.power_w, 1),
            "battery_w": round(m.battery_w, 1),
            "unserved_w": round(m.unserved_w, 1),
            "pcs": {p.id: {"power_w": round(p.power_w, 1), "state": p.state()} for p in m.plant.pcs.values()},
            "clusters": {c.id: {"soc_pct": round(c.soc_pct, 3), "state": c.state()} for c in m.plant.clusters.values()},
            "ports": self.ports,
            "control_port": self.control_port,
        }

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Run one control command (the JSON-lines socket and `ems-agent sim-fault` use this)."""
        name = cmd.get("cmd")
        dev = str(cmd.get("id", ""))
        on = bool(cmd.get("on", True))
        if name == "cluster_fault":
            self.cluster_fault(dev, on)
        elif name == "cluster_remove":
            self.cluster_remove(dev, on)
        elif name == "pcs_trip":
            self.pcs_trip(dev, on)
        elif name == "pcs_ct":
            gain = cmd.get("gain", -1.0) if on else 1.0
            if isinstance(gain, bool) or not isinstance(gain, (int, float)):
                raise ValueError(f"'gain' must be a number, got {gain!r}")
            self.pcs_ct(dev, float(gain))
        elif name == "silent":
            self.silent(dev, on)
        elif name == "exception":
            code = cmd.get("code", 4) if on else None
            if code is not None and not isinstance(code, int):
                raise ValueError(f"'code' must be one of {sorted(EXCEPTION_CODES)}, got {code!r}")
            self.exception(dev, code)
        elif name == "corrupt":
            raw = cmd.get("value")
            self.corrupt(dev, str(cmd.get("key", "")), None if raw is None or not on else parse_value(raw))
        elif name == "grid":
            up = cmd.get("up")
            if not isinstance(up, bool):
                raise ValueError(f"'up' must be true (restore) or false (outage), got {up!r}")
            self.grid(up)
        elif name == "load_offset":
            w = cmd.get("w")
            if isinstance(w, bool) or not isinstance(w, (int, float)):
                raise ValueError(f"'w' must be a number of watts, got {w!r}")
            self.load_offset(float(w))
        elif name == "clear":
            self.clear()
        elif name != "status":
            raise ValueError(f"unknown command {name!r}")
        return self.status()
