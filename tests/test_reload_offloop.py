"""SIGHUP reload is read and parsed off the control loop (issue 15, item 3).

Before: `Runtime.reload` parsed the site file on the event loop; a hostile 40 KB file stalled the
cycle 4.5 s. The test makes the read itself block, with no timing in it: the site file is a FIFO
that nobody writes until the test has seen the loop cycle on while the reload waits. On the loop,
the read would hold everything (cycles and all) until the writer came.
"""

from __future__ import annotations

import asyncio
import os
import threading
from dataclasses import replace
from pathlib import Path

from tests.agent_harness import agent_on_simulators, sim_site
from tests.loop_rig import site_text

RELEASE_AFTER_S = 20.0  # the writer's own deadline: before the fix the loop is blocked until then


async def test_a_reload_waiting_on_its_file_never_holds_the_cycle(tmp_path: Path) -> None:
    fifo = tmp_path / "site.toml"
    os.mkfifo(fifo)
    site = replace(sim_site(cycle_s=0.25), path=fifo)
    go = threading.Event()
    written = threading.Event()
    content: list[str] = []

    def writer() -> None:  # opening a FIFO for writing waits for the reader, then the text flows
        go.wait(RELEASE_AFTER_S)
        with fifo.open("w") as f:
            written.set()
            f.write(content[0])

    async with agent_on_simulators(tmp_path / "state", site, api=False) as h:
        ports = {d.port: h.sim.ports[d.id] for d in sim_site().devices}
        content.append(site_text(ports, cycle_s=0.25, drop=("c12",)))
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        h.rt.reload()  # what SIGHUP does
        seq = h.rt.loop.seq
        await h.cycles(4)
        assert not written.is_set()  # the loop cycled while the reload still waited for its file
        assert h.rt.loop.seq >= seq + 4
        go.set()
        await h.until(lambda: "c12" not in h.rt.loop.devs.devices, 15.0, "the reload to apply")
        rec = await h.cycles(2)
        assert "c12" not in rec.plan.cluster_setpoints_w
        assert rec.plan.cluster_setpoints_w.keys() == {f"c{i:02d}" for i in range(1, 12)}
        await asyncio.to_thread(t.join, 5.0)
