"""The plan written to the PCS: grid-power (PCC) mode registers, the setpoint and the revert timer.

Safety at this edge: the revert timer is written at start-up and whenever a PCS comes back (or
a write failed), and every cycle's setpoint write restarts it, so if the agent dies the plant
returns to 0 W by itself. Only a Plan's setpoint is ever written, and a non-finite one never.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from agent.control.commands import pcc_command, setpoint_w
from agent.live.devices import DeviceSet
from agent.model.alarms import AlarmBook
from agent.model.config import SiteConfig
from agent.model.plan import Plan
from agent.model.snapshot import PcsStatus, SiteSnapshot
from drivers import keys as k
from drivers.device import ModbusDevice


def pcc_values(plan: Plan, pcs_id: str) -> tuple[bool, dict[str, float]]:
    """The mode registers of a PCS the site runs in grid-power control: (in the mode, values).

    In the mode only with a complete, finite command (agent.control.commands); otherwise it is
    told to leave it."""
    cmd = pcc_command(plan, pcs_id)
    if cmd is None:
        return False, {k.PCC_ENABLE: 0.0}
    return True, {
        k.PCC_ENABLE: 1.0,
        k.PCC_TARGET_W: cmd.target_w,
        k.PCC_RAMP_W_PER_S: cmd.ramp_w_per_s,
        k.PCC_SHARE: cmd.share,
        k.PCC_MAX_DISCHARGE_W: cmd.max_discharge_w,
        k.PCC_MAX_CHARGE_W: cmd.max_charge_w,
        k.PCC_GRID_MIN_W: cmd.grid_min_w,
    }


class PcsWriter:
    """Writes each cycle's plan to every PCS that answers, and remembers per PCS whether its revert
    timer is armed and whether the last good write put it in grid-power control."""

    def __init__(self, alarms: AlarmBook, wall: Callable[[], datetime]) -> None:
        self.alarms = alarms
        self.wall = wall
        self.revert_ok: set[str] = set()
        self.pcc_on: set[str] = set()  # PCS told to regulate the grid by the last good write
        self.pcc_capable: frozenset[str] = frozenset()

    def configure(self, site: SiteConfig, reopened: set[str]) -> None:
        """PCS the site file runs in grid-power (PCC) control get the mode's registers written every
        cycle, in the mode or out of it; a device opened afresh gets its revert timer again."""
        self.pcc_capable = frozenset(p.id for p in site.pcs if p.grid_control == "pcc")
        self.revert_ok -= reopened

    async def write(self, snap: SiteSnapshot, plan: Plan, devs: DeviceSet, revert_s: float) -> None:
        """`revert_s`: the revert timer to arm, in the PCS's own seconds (agent.model.clock.revert_s)."""
        writes = []
        for p in snap.pcs:
            dev = devs.devices.get(p.id)
            if dev is None or p.status is PcsStatus.OFFLINE:
                self.revert_ok.discard(p.id)
                self.pcc_on.discard(p.id)
                continue
            w = setpoint_w(plan, p.id)  # never a non-finite one
            values: dict[str, float] = {}
            pcc = False
            if p.id in self.pcc_capable:  # (one the PCC watch took out of the mode is told to leave it)
                # Mode commands first (one request, register order), then the setpoint: a PCS leaving
                # the mode holds its output and then follows the setpoint; in the mode the setpoint
                # write only restarts the revert timer. The same timer covers both modes.
                pcc, values = pcc_values(plan, p.id)
            if p.id not in self.revert_ok:
                values |= {k.REVERT_S: revert_s, k.SETPOINT_ENABLE: 1.0}
            values[k.SETPOINT_W] = w
            writes.append(self._write_one(p.id, dev, devs.writable(p.id, values), pcc))
        await asyncio.gather(*writes)

    async def _write_one(self, pid: str, dev: ModbusDevice, values: dict[str, float], pcc: bool) -> None:
        try:
            await dev.write(values)
        except Exception as e:
            self.revert_ok.discard(pid)
            self.pcc_on.discard(pid)
            self.alarms.raise_("write_failed", pid, str(e), self.wall())
            return
        self.revert_ok.add(pid)
        if pcc:
            self.pcc_on.add(pid)
        else:
            self.pcc_on.discard(pid)
        self.alarms.clear("write_failed", pid, self.wall())
