"""The devices the loop polls and writes, opened from the site file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.live.assemble import StateNamer
from agent.model.config import DeviceConfig, SiteConfig
from drivers.device import ModbusDevice
from drivers.profile import Profile, load_profile


@dataclass
class DeviceSet:
    """The devices the loop polls, rebuilt when the site file is reloaded."""

    devices: dict[str, ModbusDevice]
    profiles: dict[str, Profile]

    def namer(self) -> StateNamer:
        profiles = self.profiles

        def name(dev_id: str, code: int) -> str | None:
            p = profiles.get(dev_id)
            return p.state_name(code) if p is not None else None

        return name

    def writable(self, dev_id: str, values: dict[str, float]) -> dict[str, float]:
        """`values` without the keys the device's profile cannot write."""
        keys = self.profiles[dev_id].writable_keys()
        return {key: v for key, v in values.items() if key in keys}


def open_device(cfg: DeviceConfig, site: SiteConfig, clock: Callable[[], float]) -> tuple[ModbusDevice, Profile]:
    profile = load_profile(cfg.profile)
    return ModbusDevice(cfg, profile, stale_after_s=site.stale_after_s, clock=clock), profile
