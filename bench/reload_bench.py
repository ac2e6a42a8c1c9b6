"""Issue 15 item 3: how long a SIGHUP reload stalls the control loop.

The agent (`Runtime`: loop, sinks; no API) runs in this process against the simulated demo site
(real pymodbus servers on loopback) at a 0.25 s cycle. The site file is overwritten with each
case, `Runtime.reload()` is called as the SIGHUP handler calls it, and the loop's own cycle start
times are recorded. Stall = the longest gap between two cycle starts minus one period.

Cases: the issue's 40 KB dotted key (20,000 parts), and a valid site file padded to ~250 KB with
a long [simulation] array (the largest file the limits accept, the slowest kind for tomllib).

    .venv/bin/python bench/reload_bench.py
    PYTHONPATH=/path/to/old/checkout .venv/bin/python bench/reload_bench.py   # the code before
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from agent.live.runtime import Runtime
from agent.model.config import load_site
from simulators.site import SimulatedSite

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "agent" / "sites" / "demo.toml"
CYCLE_S = 0.25


def site_text(ports: dict[str, int]) -> str:
    """The demo site at CYCLE_S with each device moved to its simulator port."""
    text = DEMO.read_text().replace("cycle_s = 1.0", f"cycle_s = {CYCLE_S}")
    out: list[str] = []
    dev = ""
    for line in text.splitlines():
        m = re.match(r'^id = "([^"]+)"$', line)
        if m:
            dev = m.group(1)
        if line.startswith("port = ") and dev in ports:
            line = f"port = {ports[dev]}"
        out.append(line)
    return "\n".join(out) + "\n"


def cases(valid: str) -> dict[str, str]:
    pad = "\n[simulation]\npad = [" + "1," * 120_000 + "]\n"
    return {
        "dotted key 40 KB (20,000 parts)": valid + ".".join(["a"] * 20_000) + " = 1\n",
        f"valid site padded to {len(valid + pad) // 1024} KB": valid + pad,
    }


async def measure(rt: Runtime, path: Path, text: str, after: int) -> tuple[float, int]:
    starts: list[float] = []
    rt.loop.on_cycle.append(lambda rec: starts.append(time.monotonic()))
    while len(starts) < 4:
        await asyncio.sleep(0.05)
    path.write_text(text)
    before = rt.hub.stats.overruns
    rt.reload()
    n = len(starts)
    while len(starts) < n + after:
        await asyncio.sleep(0.05)
    rt.loop.on_cycle.pop()
    gaps = [b - a for a, b in zip(starts[n - 1 :], starts[n:], strict=False)]
    return max(gaps) - CYCLE_S, rt.hub.stats.overruns - before


async def main(after: int) -> None:
    logging.basicConfig(level=logging.ERROR)
    base = replace(load_site(DEMO), cycle_s=CYCLE_S, stale_after_s=3 * CYCLE_S,
                   simulation={"seed": 1, "start_hour": 14.0, "soc_pct": 60.0, "revert_s": 30.0})  # fmt: skip
    sim = SimulatedSite(base, any_port=True, control_port=0)
    await sim.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "site.toml"
            valid = site_text(sim.ports)
            path.write_text(valid)
            rt = Runtime(load_site(path), Path(tmp) / "state", api_port=0)
            task = asyncio.create_task(rt.run())
            for name, text in cases(valid).items():
                stall, overruns = await measure(rt, path, text, after)
                print(f"{name}: longest stall {stall * 1000:.0f} ms over the {CYCLE_S} s period, {overruns} overruns")
                path.write_text(valid)
                rt.reload()
                await asyncio.sleep(2.0)
            rt.stop()
            await task
    finally:
        await sim.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--after", type=int, default=12, help="cycles recorded after the reload")
    asyncio.run(main(ap.parse_args().after))
