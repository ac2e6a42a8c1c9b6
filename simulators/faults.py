"""Communication faults a simulated device can show (the physical ones live in physics.py).

- silent:    the device stops answering (client time-outs);
- exception: every request gets a Modbus exception response with this code;
- corrupt:   a point is served with a bad value (NaN -> the encoding's "not a number"/"not
             implemented" word, or an out-of-range number) instead of the physics value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# Modbus exception codes a test may ask for (pymodbus.constants.ExcCodes values).
EXCEPTION_CODES = {
    1: "illegal function",
    2: "illegal address",
    3: "illegal value",
    4: "device failure",
    6: "busy",
}


@dataclass(slots=True)
class CommFaults:
    silent: bool = False
    exception: int | None = None
    corrupt: dict[str, float] = field(default_factory=dict)

    def set_exception(self, code: int | None) -> None:
        if code is not None and code not in EXCEPTION_CODES:
            raise ValueError(f"exception code must be one of {sorted(EXCEPTION_CODES)}, got {code!r}")
        self.exception = code

    def clear(self) -> None:
        self.silent = False
        self.exception = None
        self.corrupt.clear()


def parse_value(raw: object) -> float:
    """A corrupt value from JSON/CLI: a number, or "nan" / "inf" / "-inf"."""
    if isinstance(raw, bool):
        raise ValueError(f"corrupt value must be a number or 'nan', got {raw!r}")
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):
        try:
            v = float(raw)
        except ValueError:
            raise ValueError(f"corrupt value must be a number or 'nan', got {raw!r}") from None
        if math.isnan(v) or math.isinf(v) or raw.strip():
            return v
    raise ValueError(f"corrupt value must be a number or 'nan', got {raw!r}")
