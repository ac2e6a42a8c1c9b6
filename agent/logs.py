"""Structured logs: one line per event, `key=value` pairs after the message, quiet in steady state."""

from __future__ import annotations

import logging
import sys
from typing import Any


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname:<7} {record.name}: "
        base += record.getMessage()
        fields: dict[str, Any] = getattr(record, "fields", {})
        if fields:
            base += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            base += "\n" + self.formatException(record.exc_info)
        return base


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pymodbus logs every timeout and late reply at ERROR with a hex dump of its last frames; the
    # driver already turns those into value qualities, device health and one structured line per
    # state change (drivers/device.py), so pymodbus' own lines are only noise on a busy site.
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


def kv(**fields: Any) -> dict[str, Any]:
    """`log.info("msg", extra=kv(device="c01"))` -> `msg device=c01`."""
    return {"fields": fields}
