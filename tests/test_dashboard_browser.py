"""The dashboard in a real browser: headless Debian chromium driven over the DevTools protocol.

The CDP client talks to chromium through `--remote-debugging-pipe` (fds 3/4, NUL-separated
JSON), so no websocket library or browser download is needed. The API runs on a real uvicorn
on a free loopback port, fed one cycle at a time by the test's publisher (real SiteSnapshot and
Plan objects). Screenshots go to artifacts/ (git-ignored).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent.api import ApiServer, TokenStore, create_app
from agent.audit import AuditLog
from agent.config import load_site
from agent.hub import Hub

from .test_api import OPERATOR, VIEWER, write_tokens
from .test_api_feed import DEMO, ROOT, FakeClock, SiteFeed

CHROME = "/usr/bin/chromium"
ARTIFACTS = ROOT / "artifacts"
PERIOD_S = 0.25  # real seconds per published cycle (each is one 1 s site cycle)

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

    def send(
        self, method: str, params: dict[str, Any] | None = None, browser: bool = False
    ) -> dict[str, Any]:
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
        self.session = self.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True
        )["sessionId"]
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
                e["params"]["request"]["url"]
                for e in self.events
                if e.get("method") == "Network.requestWillBeSent"
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


class Site:
    def __init__(self, tmp: Path, open_read: bool = True) -> None:
        self.site = load_site(DEMO)
        self.clock = FakeClock()
        self.hub = Hub(self.site, AuditLog(tmp / "audit.jsonl"), clock=self.clock)
        # A slower grid ramp than the demo site's, so the smoothing is plain to see on the chart.
        self.feed = SiteFeed(
            self.hub, datetime(2026, 11, 24, 14, 0, 0, tzinfo=self.site.timezone), ramp_w_per_s=40_000.0
        )
        tokens = TokenStore.load(write_tokens(tmp / "tokens.toml"))
        self.app = create_app(self.hub, tokens, open_read=open_read)
        self.srv = ApiServer(self.app, "127.0.0.1", 0)


@pytest.fixture(params=[True], ids=["open_read"])
async def running(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Site, Cdp]]:
    s = Site(tmp_path, open_read=request.param)
    for _ in range(90):  # 90 s of history for the chart before the page opens
        s.clock.t += 1
        s.feed.publish()
    server = asyncio.create_task(s.srv.run())
    await s.srv.started()
    feeder = asyncio.create_task(s.feed.run(PERIOD_S, advance=s.clock))
    cdp = await asyncio.to_thread(Cdp, tmp_path / "chromium")
    try:
        yield s, cdp
    finally:
        await asyncio.to_thread(cdp.close)
        feeder.cancel()
        s.srv.stop()
        await asyncio.wait_for(server, 10)
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


async def test_dashboard_live_fault_and_maintenance(running: tuple[Site, Cdp]) -> None:
    s, cdp = running
    call = asyncio.to_thread
    await call(cdp.open, s.srv.url + "/")
    await wait_for(cdp, "document.getElementById('conn-text').textContent === 'live'")
    await wait_for(cdp, "document.querySelectorAll('#tiles .tile').length === 12")

    # Live values change from cycle to cycle.
    seq0 = await call(cdp.js, SEQ)
    load0 = await call(cdp.js, "document.getElementById('v-load').textContent")
    await wait_for(cdp, f"{SEQ} >= {seq0 + 3}")
    load1 = await call(cdp.js, "document.getElementById('v-load').textContent")
    assert load0.endswith("MW") and load1.endswith("MW")
    seen = {load0, load1}
    for _ in range(6):
        await asyncio.sleep(PERIOD_S)
        seen.add(await call(cdp.js, "document.getElementById('v-load').textContent"))
    assert len(seen) > 1, seen
    assert await wait_for(cdp, "document.getElementById('v-soc').textContent.endsWith(' %')")
    assert await call(cdp.js, ORANGE_PIXELS) > 200  # the GPU load line is drawn
    assert await call(cdp.js, "document.getElementById('decided').textContent") == "ramp"
    assert "not available" in await wait_for(cdp, "document.getElementById('savings').textContent")
    await call(cdp.screenshot, ARTIFACTS / "dashboard.png")

    # A cluster that faults shows on its tile within two cycles.
    published = s.feed.seq
    s.feed.faulted.add("c07")
    t0 = time.monotonic()
    await wait_for(cdp, "document.querySelector('.tile[data-id=c07]').classList.contains('st-fault')")
    shown_after_s = time.monotonic() - t0
    assert await call(cdp.js, SEQ) <= published + 2
    assert shown_after_s < 2 * PERIOD_S + 0.5, shown_after_s
    assert "FAULT" in await call(cdp.js, "document.querySelector('.tile[data-id=c07] .state').textContent")
    await wait_for(cdp, "document.getElementById('alarm-list').textContent.includes('c07')")
    await call(cdp.screenshot, ARTIFACTS / "dashboard_fault.png")

    # An operator logs in through the page and puts c04 into maintenance.
    assert await call(cdp.js, "document.getElementById('ops').classList.contains('hidden')")
    await call(cdp.js, "document.getElementById('login-btn').click()")
    await call(cdp.js, "document.getElementById('token').focus()")
    await call(cdp.send, "Input.insertText", {"text": OPERATOR})
    await call(cdp.js, "document.getElementById('login-ok').click()")
    await wait_for(cdp, "!document.getElementById('ops').classList.contains('hidden')")
    assert "olga" in await call(cdp.js, "document.getElementById('user').textContent")
    assert await call(cdp.js, f"sessionStorage.getItem('ems-token') === {json.dumps(OPERATOR)}")
    await call(cdp.js, "document.querySelector('.tile[data-id=c04]').click()")
    await wait_for(
        cdp, "document.getElementById('cluster-dlg').open && !!document.getElementById('cd-maint')"
    )
    await call(cdp.js, "document.getElementById('cd-maint').click()")  # arm
    assert s.hub.operator.maintenance == frozenset()  # one click never isolates a cluster
    await wait_for(cdp, "document.getElementById('cd-maint').textContent.includes('c04')")
    await call(cdp.screenshot, ARTIFACTS / "dashboard_cluster_dialog.png")
    await call(cdp.js, "document.getElementById('cd-maint').click()")  # confirm
    deadline = time.monotonic() + 5
    while s.hub.operator.maintenance != frozenset({"c04"}) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert s.hub.operator.maintenance == frozenset({"c04"})
    assert s.hub.audit.recent(1)[0]["actor"] == "olga"
    await call(cdp.js, "document.getElementById('cd-close').click()")
    await wait_for(cdp, "document.querySelector('.tile[data-id=c04]').classList.contains('st-maintenance')")

    # Language switch, and the page never asked anything of another origin (works offline).
    await call(cdp.js, "document.getElementById('lang').click()")
    await wait_for(cdp, "document.querySelector('.flow h2').textContent === '功率流向'")
    await call(cdp.screenshot, ARTIFACTS / "dashboard_zh.png")
    await call(cdp.js, "document.getElementById('lang').click()")
    urls = await call(cdp.requested_urls)
    assert urls and all(u.startswith(s.srv.url) or u.startswith("data:") for u in urls), urls


@pytest.mark.parametrize("running", [False], ids=["token_read"], indirect=True)
async def test_dashboard_asks_for_a_token_and_a_viewer_cannot_control(running: tuple[Site, Cdp]) -> None:
    s, cdp = running
    call = asyncio.to_thread
    await call(cdp.open, s.srv.url + "/")
    await wait_for(cdp, "document.getElementById('login-dlg').open")  # reads need a token here
    assert await call(cdp.js, "document.querySelectorAll('#tiles .tile').length") == 0
    await call(cdp.js, "document.getElementById('token').focus()")
    await call(cdp.send, "Input.insertText", {"text": VIEWER})
    await call(cdp.js, "document.getElementById('login-ok').click()")
    await wait_for(cdp, "document.getElementById('conn-text').textContent === 'live'")
    await wait_for(cdp, "document.querySelectorAll('#tiles .tile').length === 12")
    assert "viewer" in await call(cdp.js, "document.getElementById('user').textContent")
    assert await call(cdp.js, "document.getElementById('ops').classList.contains('hidden')")
    await call(cdp.js, "document.querySelector('.tile[data-id=c01]').click()")
    await wait_for(cdp, "document.getElementById('cluster-dlg').open")
    assert await call(cdp.js, "document.getElementById('cd-maint')") is None  # no control for a viewer
    s.feed.faulted.add("c03")
    await wait_for(cdp, "document.getElementById('alarm-list').textContent.includes('c03')")
    assert await call(cdp.js, "document.querySelectorAll('#alarm-list button').length") == 0  # no Ack
