"""Fleet page load time with 50 sites publishing to one broker (issue 16).

    .venv/bin/python -m bench.fleet_bench [--sites 50] [--runs 7] [--period-s 1.0]

On loopback, three kinds of process:
- one mosquitto (Debian's), on a free port;
- 50 sites in this process: each the agent's own MQTT link (agent/mqtt/link.py) fed one real cycle
  per --period-s (tests.fakes.Cycles: the control policy on synthetic snapshots of the 12-cluster
  demo site), so every site publishes its whole tree (state, 12 clusters, 4 PCS, plan, alarm
  summary, savings): ~18 messages per site per cycle; a few sites with an alarm, half in CNY, half in USD;
- the fleet view, `ems-agent fleet` in its own process (subscriber + HTTP server), as deployed.

Measured per run, in a fresh headless Chromium (cold cache, so static files are fetched every time):
from navigation start until the page first shows the fleet's data (the page's own
`performance.mark("fleet-data-shown")`, after the /api/fleet answer is rendered), and the /api/fleet
request's own time; the median over --runs. Then /api/fleet alone (sequential GETs, its latency
and size) and the fleet process's CPU over 10 s while the sites publish.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.economics.ledger import Summary
from agent.live.audit import AuditLog
from agent.live.hub import Hub
from agent.mqtt import MqttLink, start_mqtt, stop_mqtt
from tests.conftest import Broker
from tests.fakes import Cycles, demo_site
from tests.test_dashboard_browser import Cdp

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 7, 1, 14, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
SHOWN = "performance.getEntriesByName('fleet-data-shown')"
API_ENTRY = "performance.getEntriesByType('resource').find(e => e.name.endsWith('/api/fleet'))"


def mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.access(exe, os.X_OK):
        raise SystemExit("mosquitto is not installed (apt-get install mosquitto)")
    return exe


def site_hub(i: int, broker: Broker, tmp: Path) -> Hub:
    sid = f"site-{i:02d}"
    mqtt = {"host": broker.host, "port": broker.port, "client_id": f"ems-{sid}", "buffer_messages": 100_000}
    hub = Hub(replace(demo_site({"mqtt": mqtt}), id=sid), AuditLog(tmp / f"{sid}.jsonl"), clock=time.monotonic)
    currency = "CNY" if i % 2 == 0 else "USD"
    td = Summary("to_date", 1000.0 + i, 250.0, 50.0, 0.0, 120.0, 130.0, 86400.0, 0.0, 96, 0)
    report = {"currency": currency, "tariff": "t", "savings_to_date": td.net_savings, "to_date": td.as_dict()}
    hub.providers["ledger"] = lambda: report
    if i % 10 == 3:
        hub.alarms.raise_("pcs_fault", "pcs2", "tripped", T0)
    return hub


def get(url: str) -> tuple[float, int, dict[str, Any]]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read()
    return time.perf_counter() - t, len(body), json.loads(body)


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def page_load(url: str, tmp: Path, n_sites: int) -> dict[str, float]:
    """One cold page load in a fresh Chromium: ms from navigation start to the data shown."""
    user = tmp / f"chromium-{time.monotonic_ns()}"
    cdp = Cdp(user)
    try:
        cdp.open(url + "/")
        deadline = time.monotonic() + 30
        while not cdp.js(f"{SHOWN}.length > 0 && document.querySelectorAll('#sites tbody tr').length"):
            if time.monotonic() > deadline:
                raise RuntimeError("the fleet page did not show its data within 30 s")
            time.sleep(0.02)
        rows = cdp.js("document.querySelectorAll('#sites tbody tr').length")
        if rows != n_sites:
            raise RuntimeError(f"the page shows {rows} sites, not {n_sites}")
        shown = float(cdp.js(f"{SHOWN}[0].startTime"))
        api = cdp.js(f"(() => {{ const e = {API_ENTRY}; return [e.startTime, e.responseEnd]; }})()")
        doc = float(cdp.js("performance.getEntriesByType('navigation')[0].responseEnd"))
        return {"shown_ms": shown, "html_ms": doc, "api_start_ms": float(api[0]), "api_ms": float(api[1] - api[0])}
    finally:
        cdp.close()
        shutil.rmtree(user, ignore_errors=True)


async def feed(cycles: list[Cycles], period_s: float, stop: asyncio.Event) -> None:
    k = 0
    while not stop.is_set():
        k += 1
        for i, cyc in enumerate(cycles):
            cyc.next(load_w=1_000_000.0 + 10_000.0 * i + 1_000.0 * (k % 7))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    broker = Broker(mosquitto_exe(), tmp)
    broker.start()
    links: list[MqttLink] = []
    stop = asyncio.Event()
    fleet: subprocess.Popen[str] | None = None
    try:
        hubs = [site_hub(i, broker, tmp) for i in range(args.sites)]
        for hub in hubs:
            link = start_mqtt(hub.site, hub)
            assert link is not None
            links.append(link)
        feeder = asyncio.create_task(feed([Cycles(h, T0) for h in hubs], args.period_s, stop))
        (tmp / "fleet.toml").write_text(
            f'[fleet]\nstale_after_s = 10\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n'
            '[http]\nport = 0\nopen_read = true\n'
        )
        fleet = subprocess.Popen(
            [sys.executable, "-m", "agent.cli", "--log-level", "WARNING", "fleet", "--fleet", str(tmp / "fleet.toml")],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert fleet.stdout is not None
        line = await asyncio.to_thread(fleet.stdout.readline)
        url = line.strip().removeprefix("fleet view: ").rstrip("/")
        deadline = time.monotonic() + 60
        while True:
            _, _, body = await asyncio.to_thread(get, url + "/api/fleet")
            if body["sum"]["in_sum"] == args.sites:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {body['sum']['in_sum']} of {args.sites} sites online after 60 s")
            await asyncio.sleep(0.2)

        loads = []
        for _ in range(args.runs):
            loads.append(await asyncio.to_thread(page_load, url, tmp, args.sites))
        lat, size = [], 0
        for _ in range(args.api_requests):
            dt, size, body = await asyncio.to_thread(get, url + "/api/fleet")
            lat.append(dt * 1000.0)
        c0, t0 = proc_cpu_s(fleet.pid), time.monotonic()
        await asyncio.sleep(10.0)
        cpu_pct = 100.0 * (proc_cpu_s(fleet.pid) - c0) / (time.monotonic() - t0)
        stop.set()
        await feeder
        sent = sum(link.sent for link in links)
        lat.sort()
        return {
            "sites": args.sites,
            "period_s": args.period_s,
            "runs": loads,
            "page_shown_ms_median": statistics.median(r["shown_ms"] for r in loads),
            "page_shown_ms_max": max(r["shown_ms"] for r in loads),
            "api_in_page_ms_median": statistics.median(r["api_ms"] for r in loads),
            "api_get_ms_p50": statistics.median(lat),
            "api_get_ms_p99": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))],
            "api_body_bytes": size,
            "fleet_cpu_pct_of_one_core": cpu_pct,
            "messages_published": sent,
            "sum_check": {"sites_online": body["sum"]["in_sum"], "savings_to_date": body["sum"]["savings_to_date"]},
        }
    finally:
        stop.set()
        if fleet is not None:
            fleet.terminate()
            fleet.wait(15)
        for link in links:
            await stop_mqtt(link)
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=50)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--period-s", type=float, default=1.0, help="each site's cycle (publishing) period")
    p.add_argument("--api-requests", type=int, default=200)
    out = asyncio.run(main(p.parse_args()))
    for r in out["runs"]:
        print(f"run: data shown {r['shown_ms']:.0f} ms (html {r['html_ms']:.0f} ms, /api/fleet {r['api_ms']:.0f} ms)")
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    cli()
