"""What the control policy needs to know about the tariff: two point look-ups.

agent/economics/tariff.py implements this Protocol; the policy never parses a tariff itself. Both calls
take timezone-aware site-local time, because tariff windows are local.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Prices(Protocol):
    def energy_price(self, t: datetime) -> float:
        """Currency per kWh imported at site-local time `t`."""
        ...

    def demand_rate(self, t: datetime) -> float:
        """Currency per kW-month, summed over every demand charge whose window covers `t` (0 outside)."""
        ...
