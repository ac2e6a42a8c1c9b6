"""The dashboard in a real browser against the real agent running on the simulated site.

Headless Debian chromium is driven over the DevTools protocol through `--remote-debugging-pipe`
(fds 3/4, NUL-separated JSON), so no websocket library or browser download is needed. The
agent is the real Runtime (control loop, ledger, telemetry spool, API on uvicorn) polling the
simulators over loopback Modbus TCP (tests/agent_harness.py), with a short cycle for speed.
Faults are injected in the simulator, never in the agent. Screenshots go to artifacts/
(git-ignored).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from .agent_harness import SIMULATION as SIMULATION_DEFAULTS
from .agent_harness import AgentOnSim, agent_on_simulators, sim_site
from .test_api import OPERATOR, VIEWER, write_tokens

CHROME = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CYCLE_S = 0.25  # the agent's control period here (the demo site's is 1 s)
# The measured H100 training trace, looped: the GPU load moves by MW within seconds.
SIMULATION = {**SIMULATION_DEFAULTS, "load": "trace"}

pytestmark = pytest.mark.services
if not os.path.exists(CHROME):
    if os.environ.get("EMS_REQUIRE_SERVICES") == "1":
        raise RuntimeError(f"EMS_REQUIRE_SERVICES=1 but {CHROME} is missing")
    pytest.skip(f"{CHROME} not installed", allow_module_level=True)


class PageError(RuntimeError):
    pass


class Cdp:
    """A minimal synchronous DevTools client over chromium's debugging pipe."""

    def __init__(self, user_dir: Path) -> None:
        to_chrome_r, self._w = os.pipe()
        self._r, from_chrome_w = os.pipe()

        def fds() -> None:  # in the child: chromium reads fd 3 and writes fd 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [
                CHROME,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={user_dir}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=fds,
            pass_fds=(3, 4),  # kept open after the close-all, which runs after preexec_fn
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._id = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._results: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._results[-1] = {"error": "chromium closed the pipe"}
                    self._cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cond:
                    if "id" in msg:
                        self._results[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cond.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, browser: bool = False) -> dict[str, Any]:
        with self._lock:
            self._id += 1
            mid = self._id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if self.session is not None and not browser:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + 20
        with self._cond:
            while mid not in self._results:
                if -1 in self._results:
                    raise RuntimeError(self._results[-1]["error"])
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"CDP {method} got no answer")
                self._cond.wait(left)
            res = self._results.pop(mid)
        if "error" in res:
            raise RuntimeError(f"CDP {method}: {res['error']}")
        result: dict[str, Any] = res.get("result", {})
        return result

    def open(self, url: str, width: int = 1680, height: int = 1050) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)[
            "sessionId"
        ]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        self.send("Network.enable")
        self.send("Page.enable")
        self.send("Page.navigate", {"url": url})

    def js(self, expr: str) -> Any:
        r = self.send("Runtime.evaluate", {"expression": expr, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in r:
            raise PageError(f"page JS failed: {expr}: {r['exceptionDetails']['exception']['description']}")
        return r["result"].get("value")

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def requested_urls(self) -> list[str]:
        with self._cond:
            return [
                e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"
            ]

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", browser=True)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self._w)


@pytest.fixture(params=[True], ids=["open_read"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[AgentOnSim, Cdp]]:
    """`True`: as `ems-agent demo` (open reads, one operator token); `False`: a tokens file."""
    demo = bool(request.param)
    sections = {} if demo else {"api": {"tokens_file": str(write_tokens(tmp_path / "tokens.toml"))}}
    site = sim_site(cycle_s=CYCLE_S, simulation=SIMULATION, sections=sections)
    async with agent_on_simulators(tmp_path / "state", site, demo=demo) as h:
        cdp = await asyncio.to_thread(Cdp, tmp_path / "chromium")
        try:
            yield h, cdp
        finally:
            await asyncio.to_thread(cdp.close)
            shutil.rmtree(tmp_path / "chromium", ignore_errors=True)


async def wait_for(cdp: Cdp, expr: str, timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            v = await asyncio.to_thread(cdp.js, expr)
        except PageError:
            v = None  # the page is still loading
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {expr}")
        await asyncio.sleep(0.05)


SEQ = "+(document.getElementById('cycle').textContent.match(/#(\\d+)/)||[0,0])[1]"
ORANGE_PIXELS = """(() => { const c = document.getElementById('chart'); const d = c.getContext('2d')
  .getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i]-230) < 12 && Math.abs(d[i+1]-159) < 12 && d[i+2] < 30) n++;
  return n; })()"""


def text(id_: str) -> str:
    return f"document.getElementById('{id_}').textContent"


def tile(cid: str) -> str:
    return f"document.querySelector('.tile[data-id={cid}]')"


# Records, as the page renders it, the cycle number on screen when a tile first shows a state
# (a MutationObserver runs right after the render that replaced the tiles, before any repaint).
WATCH_TILE = (
    "((cid, cls) => { window.__first = null; new MutationObserver(() => {"
    " const t = document.querySelector(`.tile[data-id=${cid}]`);"
    f" if (window.__first === null && t && t.classList.contains(cls)) window.__first = {SEQ};"
    " }).observe(document.getElementById('tiles'), { childList: true }); return true; })"
)


def watts_shown(v: str) -> float:
    """'5.12 MW' / '863 kW' / '12 W' as the page formats power -> watts."""
    number, unit = v.split()
    return float(number) * {"MW": 1e6, "kW": 1e3, "W": 1.0}[unit]


async def login(cdp: Cdp, token: str) -> None:
    call = asyncio.to_thread
    await call(cdp.js, "document.getElementById('token').focus()")
    await call(cdp.send, "Input.insertText", {"text": token})
    await call(cdp.js, "document.getElementById('login-ok').click()")


async def test_dashboard_live_fault_and_maintenance(running: tuple[AgentOnSim, Cdp]) -> None:
    h, cdp = running
    hub = h.rt.hub
    call = asyncio.to_thread
    await call(cdp.open, h.url + "/")
    await wait_for(cdp, f"{text('conn-text')} === 'live'")
    await wait_for(cdp, "document.querySelectorAll('#tiles .tile').length === 12")
    assert await call(cdp.js, text("v-online")) == "12 / 12"
    assert [await call(cdp.js, f"{tile(f'c{i:02d}')}.className") for i in (1, 12)] == ["tile st-online"] * 2

    # Live values change from cycle to cycle, and the page shows what the agent measured.
    seq0 = await call(cdp.js, SEQ)
    assert seq0 > 0
    loads = {await call(cdp.js, text("v-load"))}
    socs = {await call(cdp.js, text("v-soc"))}
    deciders: set[str] = set()  # what the agent's plans said over these cycles
    # 3 s at least: the simulated training job swings the GPU load by MW, but the looped trace holds
    # flat for up to 55 s (its idle start, a checkpoint): on a loaded machine the test once sampled only
    # such a stretch, so it samples on through the longest one before it asks for three values
    n = 0
    while n < 12 or (len(loads) <= 2 and n < 12 + int(60.0 / CYCLE_S)):
        n += 1
        await h.cycles(1)
        if h.rt.hub.latest is not None:
            deciders.add(h.rt.hub.latest.plan.decided_by)
        await asyncio.sleep(0.05)
        loads.add(await call(cdp.js, text("v-load")))
        socs.add(await call(cdp.js, text("v-soc")))
    assert await call(cdp.js, SEQ) >= seq0 + 10
    assert len(loads) > 2, loads
    assert all(v.endswith(" %") for v in socs), socs
    load_w = [watts_shown(v) for v in loads]
    assert min(load_w) > 300e3 and max(load_w) < 10e6, loads  # the simulated hall: 0.7 to ~6 MW
    shown = await call(cdp.js, text("v-soc"))  # the site SoC, as the simulated BMSs report it
    clusters = h.sim.model.plant.clusters.values()
    assert abs(float(shown.split()[0]) - sum(c.soc_pct for c in clusters) / len(clusters)) < 0.5, shown
    decided = await call(cdp.js, text("decided"))
    sources = await call(cdp.js, "[...document.querySelectorAll('#bounds tbody tr')].map(r => r.cells[0].textContent)")
    if h.rt.hub.latest is not None:  # the cycle the page may be showing by now
        deciders.add(h.rt.hub.latest.plan.decided_by)
    # A bound (highlighted in the table) or a target such as tou_discharge, depending on the
    # hour the test runs at: either way, what the agent decided.
    assert decided and (decided in sources or decided in deciders), (decided, sources, deciders)
    await wait_for(cdp, f"{ORANGE_PIXELS} > 200")  # the GPU load line is drawn
    # The ledger's read-out as rows with units (it once printed nested JSON, wider than the screen).
    savings = await wait_for(cdp, f"{text('savings')}.includes('tariff') && {text('savings')}")
    assert "Shanghai general C&I two-part" in savings and "{" not in savings, savings
    assert "net savings0 CNY" in savings, savings
    # Seconds into a run the ROI card says it cannot annualise yet: no NPV of minus the capex.
    roi = await wait_for(cdp, f"{text('roi')}.includes('capex') && {text('roi')}")
    assert "Not enough data yet to annualise" in roi and "npv—" in roi, roi
    assert await call(cdp.js, "document.documentElement.scrollWidth") <= 1680
    assert await call(cdp.js, "document.getElementById('ops').classList.contains('hidden')")
    await call(cdp.screenshot, ARTIFACTS / "dashboard.png")

    # A cluster fault injected in the simulator shows on its tile within two cycles.
    assert await call(cdp.js, f"{WATCH_TILE}('c07', 'st-fault')")
    injected_at = h.rt.loop.seq  # cycles whose snapshot the agent has built so far
    t0 = time.monotonic()
    h.sim.cluster_fault("c07")
    await wait_for(cdp, "window.__first !== null")
    shown_after_s = time.monotonic() - t0
    first = await call(cdp.js, "window.__first")
    assert injected_at < first <= injected_at + 2, (injected_at, first)
    assert shown_after_s < 2 * CYCLE_S + 1.0, shown_after_s
    assert await call(cdp.js, f"{tile('c07')}.querySelector('.state').textContent") == "✕ FAULT"
    await wait_for(cdp, f"{text('v-online')} === '11 / 12'")
    await wait_for(cdp, f"{text('alarm-list')}.includes('CRITICAL · c07: BMS reports a fault')")
    assert hub.latest is not None and hub.latest.plan.cluster_setpoints_w.get("c07", 0.0) == 0.0
    await call(cdp.screenshot, ARTIFACTS / "dashboard_fault.png")

    # An operator logs in through the page and puts c04 into maintenance (two clicks).
    assert h.rt.demo_token is not None
    await call(cdp.js, "document.getElementById('login-btn').click()")
    await login(cdp, h.rt.demo_token)
    await wait_for(cdp, "!document.getElementById('ops').classList.contains('hidden')")
    assert await call(cdp.js, text("user")) == "demo-operator · operator"
    await call(cdp.js, f"{tile('c04')}.click()")
    await wait_for(cdp, "document.getElementById('cluster-dlg').open && !!document.getElementById('cd-maint')")
    assert await call(cdp.js, text("cd-maint")) == "Put into maintenance"
    await call(cdp.js, "document.getElementById('cd-maint').click()")  # arm
    await wait_for(cdp, f"{text('cd-maint')} === 'Confirm: Put into maintenance (c04)'")
    await h.cycles(2)
    assert hub.operator.maintenance == frozenset()  # one click never isolates a cluster
    await call(cdp.screenshot, ARTIFACTS / "dashboard_cluster_dialog.png")
    await call(cdp.js, "document.getElementById('cd-maint').click()")  # confirm
    await h.until(lambda: hub.operator.maintenance == frozenset({"c04"}), 5.0, "c04 in maintenance")
    assert hub.audit.recent(1)[0]["actor"] == "demo-operator"
    await wait_for(cdp, f"{text('cd-maint')} === 'Return to service'")
    await call(cdp.js, "document.getElementById('cd-close').click()")
    await wait_for(cdp, f"{tile('c04')}.classList.contains('st-maintenance')")
    assert await call(cdp.js, f"{tile('c04')}.querySelector('.state').textContent") == "⚒ MAINT"
    await wait_for(cdp, f"{text('v-online')} === '10 / 12'")
    # The control loop itself leaves the cluster alone now. With ramp support on, a PCS still giving
    # or taking power when one of its clusters is isolated ramps out at the ramp limit first (issue 14
    # item 3, agent/control/fleet.py): c04's command only falls, cycle after cycle, to 0 W. How many
    # cycles that takes depends on what the battery was doing (the time of day on the tariff).
    seen: list[float] = []
    for _ in range(60):
        rec = await h.cycles(1)
        assert rec.maintenance == {"c04"}
        seen.append(abs(rec.plan.cluster_setpoints_w.get("c04", 0.0)))
        if seen[-1] == 0.0:
            break
    assert seen[-1] == 0.0, seen
    assert all(b <= a for a, b in itertools.pairwise(seen)), seen
    await call(cdp.screenshot, ARTIFACTS / "dashboard_maintenance.png")

    # the chart says what its smoothing figure means (issue 14 item 6)
    assert "second-to-second steps are than the GPU load" in await call(cdp.js, text("smoothing-means"))

    # Language switch, and the page never asked anything of another origin (works offline).
    await call(cdp.js, "document.getElementById('lang').click()")
    await wait_for(cdp, "document.querySelector('.flow h2').textContent === '功率流向'")
    await wait_for(cdp, f"{tile('c04')}.querySelector('.state').textContent === '⚒ 检修'")
    # the health card too, its heading and what it says about the history (drawn from its data)
    await wait_for(cdp, "document.querySelector('.health h2 span').textContent === '电池簇健康'")
    await wait_for(cdp, f"/[\u4e00-\u9fff]/.test({text('health-note')})")
    await wait_for(cdp, f"{text('savings')}.includes('累计节省') && {text('roi')}.includes('净现值')")
    await wait_for(cdp, f"{text('smoothing-means')}.includes('逐秒变化')")
    await call(cdp.screenshot, ARTIFACTS / "dashboard_zh.png")
    await call(cdp.js, "document.getElementById('lang').click()")
    urls = await call(cdp.requested_urls)
    assert urls and all(u.startswith(h.url) or u.startswith("data:") for u in urls), urls


@pytest.mark.parametrize("running", [False], ids=["token_read"], indirect=True)
async def test_dashboard_asks_for_a_token_and_a_viewer_cannot_control(running: tuple[AgentOnSim, Cdp]) -> None:
    h, cdp = running
    call = asyncio.to_thread
    await call(cdp.open, h.url + "/")
    await wait_for(cdp, "document.getElementById('login-dlg').open")  # reads need a token here
    assert await call(cdp.js, "document.querySelectorAll('#tiles .tile').length") == 0
    await login(cdp, "not-a-token")
    await wait_for(cdp, f"{text('login-err')} === 'Token refused'")
    await call(cdp.js, "document.getElementById('token').value = ''")
    await login(cdp, VIEWER)
    await wait_for(cdp, f"{text('conn-text')} === 'live'")
    await wait_for(cdp, "document.querySelectorAll('#tiles .tile').length === 12")
    assert await call(cdp.js, text("user")) == "wall · viewer (read only)"
    assert await call(cdp.js, "document.getElementById('ops').classList.contains('hidden')")
    await call(cdp.js, f"{tile('c01')}.click()")
    await wait_for(cdp, "document.getElementById('cluster-dlg').open")
    assert await call(cdp.js, "document.getElementById('cd-maint')") is None  # no control for a viewer
    h.sim.pcs_trip("pcs2")
    await wait_for(cdp, f"{text('alarm-list')}.includes('pcs2')")
    assert await call(cdp.js, "document.querySelectorAll('#alarm-list button').length") == 0  # no Ack
    assert h.rt.hub.operator.maintenance == frozenset()
    assert OPERATOR not in await call(cdp.js, "document.documentElement.outerHTML")
