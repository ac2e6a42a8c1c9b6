"""CPU and wall time of one control cycle, deterministic: the real AgentLoop against the in-process
simulated demo site (12 clusters, 4 PCS) over loopback Modbus TCP, stepped (tests/loop_rig.py).

    .venv/bin/python -m bench.cycle_cost [--steps 300]

Process CPU includes the simulator's servers (same process, same work before and after a change),
so two trees compare like for like; the figure is per agent cycle plus one physics step.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from tests.loop_rig import Rig

WARMUP = 20


async def measure(steps: int) -> tuple[float, float]:
    """(CPU ms, wall ms) per step."""
    with tempfile.TemporaryDirectory(prefix="ems-cycle-") as d:
        rig = await Rig.open(Path(d))
        try:
            await rig.run(WARMUP)
            c0, w0 = time.process_time(), time.perf_counter()
            await rig.run(steps)
            c1, w1 = time.process_time(), time.perf_counter()
        finally:
            await rig.close()
    return (c1 - c0) / steps * 1000, (w1 - w0) / steps * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    cpu, wall = asyncio.run(measure(args.steps))
    print(f"cpu {cpu:.2f} ms/step  wall {wall:.2f} ms/step  ({args.steps} steps)")


if __name__ == "__main__":
    main()
