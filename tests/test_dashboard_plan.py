"""The dispatch plan card in headless chromium, against the real agent planning on the simulated site.

The agent starts with three days of demand intervals in its state dir (a warm forecast), solves its
first plan at the first cycle, and the page draws it: the SoC line, the grid-cap steps and the price
bars must sit exactly where the plan's values put them (read back from the SVG's coordinates).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from .agent_harness import agent_on_simulators, sim_site
from .test_dashboard_browser import ARTIFACTS, Cdp, text, wait_for
from .test_live_planning import SIMULATION, preload

pytestmark = pytest.mark.services

# plan.js's drawing area (viewBox units): left axis, right axis, top, plot height
L, R, W, T, PH = 46.0, 58.0, 600.0, 10.0, 140.0


def x_of(t: float, t0: float) -> float:
    return round(L + (W - L - R) * (t - t0) / 86400.0, 1)


async def test_the_plan_chart_draws_the_plans_values(tmp_path: Path) -> None:
    site = sim_site(cycle_s=0.5, simulation=SIMULATION, sections={"planner": {"enabled": True}})
    state = tmp_path / "state"
    preload(state, time.time(), site.timezone)
    async with agent_on_simulators(state, site, demo=True) as h:
        planning = h.rt.planning
        assert planning is not None
        await h.until(lambda: planning.plan is not None, 30.0, "the first plan")
        cdp = await asyncio.to_thread(Cdp, tmp_path / "chromium")
        call = asyncio.to_thread
        try:
            await call(cdp.open, h.url + "/")
            # 90 s: on a loaded 2-core box the page's first draw took over 30 s (CI, 2026-12-05)
            await wait_for(cdp, "document.querySelectorAll('#plan-price rect').length > 0", 90.0)
            deadline = time.monotonic() + 90.0
            while True:  # the page's drawing and the planner's read-out of the same plan
                before = planning.view()
                drawn: dict[str, Any] = await call(
                    cdp.js,
                    "({version: +document.getElementById('plan-chart').dataset.version,"
                    " soc: document.getElementById('plan-soc').getAttribute('points'),"
                    " cap: document.getElementById('plan-cap').getAttribute('d'),"
                    " price: [...document.querySelectorAll('#plan-price rect')].map(r => +r.dataset.price),"
                    f" note: {text('plan-note')}}})",
                )
                if drawn["version"] == before["version"] and len(before["slots"]) == 96:
                    break
                assert time.monotonic() < deadline, (drawn["version"], before["version"], len(before["slots"]))
                await asyncio.sleep(0.5)  # a new plan on its way: the page takes it within 30 s
            slots = before["slots"]
            assert len(slots) == 96 and before["status"] == "plan"
            t0, step = slots[0]["t"], before["step_s"]
            # the SoC at the end of each slot
            soc = [tuple(map(float, p.split(","))) for p in drawn["soc"].split()]
            assert soc == [(x_of(s["t"] + step, t0), round(T + PH * (1 - s["soc_pct"] / 100.0), 1)) for s in slots]
            # one price bar per slot, with the plan's price
            assert drawn["price"] == [s["price"] for s in slots]
            # the cap: a step per slot that has one, on the right axis scaled to 1.1 x the highest cap
            caps = [s["grid_cap_w"] for s in slots if s["grid_cap_w"] is not None]
            hi = max(caps) * 1.1
            ys = [float(y) for y in re.findall(r"[ML][\d.]+,([\d.]+)", drawn["cap"])]
            assert ys == [y for c in caps for y in [round(T + PH * (1 - c / hi), 1)] * 2]
            assert drawn["note"].startswith("solved at ") and drawn["note"].endswith(f" · {before['reason']}")
            await call(cdp.screenshot, ARTIFACTS / "dashboard_plan.png")
            await call(cdp.js, "document.getElementById('lang').click()")
            await wait_for(cdp, "document.querySelector('.plan h2').textContent === '调度计划（未来 24 小时）'")
            await wait_for(cdp, f"{text('plan-note')}.startsWith('求解于')")
            await call(cdp.js, "document.getElementById('lang').click()")
        finally:
            await call(cdp.close)
            shutil.rmtree(tmp_path / "chromium", ignore_errors=True)
