"""The fleet page in headless Chromium (the harness of tests/test_dashboard_browser.py) over the
real fleet process and real mosquitto: every site listed with its status, the sum on top with
exact values, links to each site's dashboard, en + zh, and the token login."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from agent.fleet.config import load_fleet
from agent.fleet.serve import Fleet
from tests.conftest import Broker
from tests.fleet_rig import fleet_file, fleet_rig
from tests.test_api import VIEWER, write_tokens
from tests.test_dashboard_browser import ARTIFACTS, Cdp, text, wait_for

pytestmark = pytest.mark.services

ROWS = "[...document.querySelectorAll('#sites tbody tr')]"


def cells(cls: str) -> str:
    """{site id: text of its cell `cls`} as the page shows it."""
    return f"Object.fromEntries({ROWS}.map(r => [r.dataset.site, r.querySelector('.{cls}').textContent]))"


async def test_fleet_page_lists_every_site_and_the_sum(mosquitto: Broker, tmp_path: Path) -> None:
    call = asyncio.to_thread
    async with fleet_rig(mosquitto, tmp_path) as rig:
        rig.kill()
        cdp = await call(Cdp, tmp_path / "chromium")
        try:
            await call(cdp.open, rig.fleet.url + "/")
            await wait_for(cdp, f"{text('conn-text')} === 'live'")
            want = {"hall-a": "online", "hall-b": "online", "hall-e": "never heard", "hall-c": "offline",
                    "hall-d": "degraded"}  # fmt: skip
            want_js = json.dumps(want, separators=(",", ":"))
            await wait_for(cdp, f"JSON.stringify({cells('c-status')}) === '{want_js}'", 20.0)
            await wait_for(cdp, f"{text('s-savings')} === '1,400.00 CNY · 90.25 USD'")
            shown = {k: await call(cdp.js, text(k)) for k in
                     ("s-grid", "s-load", "s-bat", "s-pv", "s-soc", "s-energy", "s-sites", "s-alarms")}  # fmt: skip
            assert shown == {
                "s-grid": "4.00 MW", "s-load": "4.00 MW", "s-bat": "0 W", "s-pv": "0 W", "s-soc": "60.0 %",
                "s-energy": "6.02 MWh", "s-sites": "2 / 5", "s-alarms": "1",
            }  # fmt: skip
            assert await call(cdp.js, "document.getElementById('s-alarms').className") == "sev-critical"
            assert await call(cdp.js, cells("c-grid")) == {
                "hall-a": "2.50 MW", "hall-b": "1.50 MW", "hall-c": "900 kW", "hall-d": "—", "hall-e": "—"
            }  # fmt: skip
            assert await call(cdp.js, cells("c-savings")) == {
                "hall-a": "1,400.00 CNY", "hall-b": "90.25 USD", "hall-c": "—", "hall-d": "—", "hall-e": "—"
            }  # fmt: skip
            assert (await call(cdp.js, cells("c-alarms")))["hall-a"] == "1"
            assert (await call(cdp.js, cells("c-errors")))["hall-d"].startswith(
                "savings: v: schema version 2, this fleet reads 1; state: not JSON"
            )
            links = await call(cdp.js, f"{ROWS}.map(r => r.querySelector('a')?.href ?? null)")
            assert links == ["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/", None, None, None]
            bar = "[...document.querySelectorAll('#s-flow rect')].map(r => [r.getAttribute('width'), r.textContent])"
            assert await call(cdp.js, bar) == [["600", "grid_w: 4.00 MW"]]  # the load all from the grid
            await call(cdp.screenshot, ARTIFACTS / "fleet.png")

            await call(cdp.js, "document.getElementById('lang').click()")
            await wait_for(cdp, f"{cells('c-status')}['hall-c'] === '离线'")
            assert await call(cdp.js, text("conn-text")) == "实时"  # not "connecting" again
            assert await call(cdp.js, "document.querySelector('#sites th').textContent") == "站点"
            await call(cdp.screenshot, ARTIFACTS / "fleet_zh.png")
            await call(cdp.js, "document.getElementById('lang').click()")  # back to English for the next test

            rig.silence("hall-b")
            await wait_for(cdp, f"{cells('c-status')}['hall-b'] === 'stale'", 20.0)
            await wait_for(cdp, f"{text('s-grid')} === '2.50 MW' && {text('s-sites')} === '1 / 5'")
        finally:
            await call(cdp.close)
            shutil.rmtree(tmp_path / "chromium", ignore_errors=True)


async def test_fleet_page_asks_for_a_token_and_reads_with_it(mosquitto: Broker, tmp_path: Path) -> None:
    call = asyncio.to_thread
    write_tokens(tmp_path / "tokens.toml")
    fleet = Fleet(load_fleet(fleet_file(tmp_path, mosquitto, 'tokens_file = "tokens.toml"')))
    await fleet.start()
    cdp = await call(Cdp, tmp_path / "chromium")
    try:
        await call(cdp.open, fleet.url + "/")
        await wait_for(cdp, "!document.getElementById('login').classList.contains('hidden')")
        assert await call(cdp.js, f"{ROWS}.length") == 0
        await call(cdp.js, "document.getElementById('token').focus()")
        await call(cdp.send, "Input.insertText", {"text": "wrong"})
        await call(cdp.js, "document.querySelector('#login button').click()")
        await wait_for(cdp, f"{text('login-err')} === 'Token refused'")
        await call(cdp.js, "document.getElementById('token').focus()")
        await call(cdp.send, "Input.insertText", {"text": VIEWER})
        await call(cdp.js, "document.querySelector('#login button').click()")
        await wait_for(cdp, f"{ROWS}.length === 3 && document.getElementById('login').classList.contains('hidden')")
        assert await call(cdp.js, cells("c-status")) == {
            "hall-a": "never heard", "hall-b": "never heard", "hall-e": "never heard"
        }  # fmt: skip
        assert await call(cdp.js, text("s-sites")) == "0 / 3"
    finally:
        await call(cdp.close)
        shutil.rmtree(tmp_path / "chromium", ignore_errors=True)
        await fleet.stop()
