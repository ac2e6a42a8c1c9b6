"""Everything a running agent is made of, wired together: hub, control loop, sinks, API process.

The wiring lives here (not in the loop) so the loop stays a loop and each subsystem stays
testable on its own. Every section of the site file is validated in the constructor, before
anything starts, so a bad key ends `ems-agent run` with exit code 2 and nothing half-running.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.api import Role, TokenStore, api_config
from agent.api.auth import digest
from agent.api.bridge import ApiBridge
from agent.api.channel import Init
from agent.api.process import ApiProcess
from agent.campus.config import FeederConfig, check_reload, parse_feeder
from agent.control import ControllerState, initial_state
from agent.control.envelope import ENVELOPE_DAYS, ring_of
from agent.economics.ledger import Ledger, LedgerSink
from agent.economics.roi import economics_config
from agent.economics.tariff import Tariff, load_tariff
from agent.health.sink import HealthSink, start_health
from agent.live.audit import AuditLog
from agent.live.campus_link import CampusLink, start_campus, stop_campus
from agent.live.fast_lane import FastLane, start_fast_lane
from agent.live.hub import CycleRecord, Hub
from agent.live.limit_store import LimitStore
from agent.live.loop import AgentLoop
from agent.live.plan_config import PlannerConfig, parse_planner
from agent.live.plan_view import disabled_view
from agent.live.statedir import DbFileWatch, prepare_state_dir, rescue_db
from agent.logs import kv
from agent.model.clock import SiteClock, accelerate
from agent.model.config import SiteConfig, load_site
from agent.model.interval import DAY_S, local_slot, slots_per_day
from agent.model.operator import CommandError, OperatorState, SetMaintenance, SiteLimits, apply_command, parse_command
from agent.mqtt import MqttLink, parse_mqtt, start_mqtt, stop_mqtt
from agent.telemetry import InfluxSink, LocalStoreSink, parse_telemetry, start_telemetry

if TYPE_CHECKING:  # the planner loads scipy / HiGHS: imported only when [planner] enables it
    from agent.live.planning import LivePlanning

log = logging.getLogger("ems.runtime")

REPORT_EVERY_S = 10.0
AUDIT_PROBE_S = 5.0  # while the audit log cannot be written, look this often whether it can again
ANY_PORT = -1  # api_port: serve the API on a free loopback port (tests, benchmarks); see `rt.api.port`


# Audit-log action names of the operator's standing decisions -> parse_command names. Overrides are
# not restored: they are time-limited, and one ending at a restart is the safe direction.
_STANDING = {
    "SetMaintenance": "maintenance",
    "SetMode": "set_mode",
    "SetReserve": "set_reserve",
    "Derate": "derate",
}


def restore_operator(state: OperatorState, audit_path: Path, limits: SiteLimits) -> OperatorState:
    """`state` with the accepted maintenance, mode, reserve and derate commands of the audit log replayed.

    Operator state lives in memory; without this a restarted agent (kill -9, power cut, upgrade)
    would forget that an operator isolated a cluster and command it again, or drop a raised
    reserve. The audit log already holds every accepted command, fsynced before it took effect.
    Lines that do not parse (a line torn by a power cut) or no longer apply are skipped.
    """
    if not audit_path.exists():
        return state
    with audit_path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                entry = json.loads(line)
                action = entry["action"]
                name = _STANDING.get(action["command"]) if entry["accepted"] is True else None
                if name is None:
                    continue
                fields = {k: v for k, v in action.items() if k != "command"}
                cmd = parse_command({"command": name, **fields})
                if isinstance(cmd, SetMaintenance):  # kept for a cluster the site file left out for now
                    m = state.maintenance | {cmd.cluster_id} if cmd.on else state.maintenance - {cmd.cluster_id}
                    state = replace(state, maintenance=frozenset(m))
                else:
                    state = apply_command(state, cmd, 0.0, limits)
            except (ValueError, KeyError, TypeError, CommandError):
                continue
    return state


def _seed_state(site: SiteConfig, tariff: Tariff | None, ledger: Ledger | None, now: datetime) -> ControllerState:
    """Controller state seeded with the demand peaks this billing month has already set, and the
    last 24 h's baseline per demand interval of the day.

    Without the peaks a restarted agent would shave down to a peak the utility bills anyway and spend
    energy for nothing (or, worse, think the month's peak is lower than it is); without the profile
    it sizes its shaving level and the grid limit's day need from nothing for a day; without the last
    week's days (ledger_ring) it prices and holds the levels on the last 24 h alone for a week.
    """
    if tariff is None or ledger is None:
        return initial_state(site.control)
    start = tariff.billing_month(now.date())
    profile = ledger.day_profile(now.timestamp(), site.timezone)
    seen = any(v == v for v in profile)  # NaN != NaN: a fresh ledger has nothing to seed
    ring = ledger_ring(ledger, now, site.timezone)
    return initial_state(
        site.control,
        ledger.month_peaks(start),
        (start.year, start.month),
        profile if seen else None,
        ring if any(v == v for v in ring) else None,
    )


def ledger_ring(ledger: Ledger, now: datetime, tz: tzinfo) -> tuple[float, ...]:
    """The last ENVELOPE_DAYS days' baseline per interval from the ledger, in the controller's ring."""
    length = ledger.length_s
    since = now.timestamp() - ENVELOPE_DAYS * DAY_S
    rows = ledger.baseline_intervals(since, now.timestamp())
    keys = ((local_slot(datetime.fromtimestamp(t, tz), length)[0], w) for t, w in rows)
    return ring_of(keys, slots_per_day(length))


class Runtime:
    def __init__(
        self,
        site: SiteConfig,
        state_dir: Path,
        api_port: int | None = None,
        demo: bool = False,
        clock: SiteClock | None = None,
    ) -> None:
        # One clock for everything timed (cycle, revert timers, demand intervals, ledger, health
        # days, telemetry): the real one, or an accelerated simulation's (agent.model.clock).
        self.clock = clock or SiteClock()
        site = accelerate(site, self.clock.speed)
        self.site = site
        self.state_dir = prepare_state_dir(state_dir)  # StateDirError (exit 2) before any file is opened
        self.demo = demo
        # Validate every section up front (each raises ConfigError naming the key).
        self.api_cfg = api_config(site)
        if api_port is not None:
            self.api_cfg = replace(self.api_cfg, port=api_port)
        if demo:
            self.api_cfg = replace(self.api_cfg, open_read=True)
        parse_telemetry(site, state_dir)
        planner_cfg = parse_planner(site)
        if "mqtt" in site.sections:
            parse_mqtt(site)
        econ = economics_config(site)
        self._campus_cfg = parse_feeder(site)
        self.tariff = load_tariff(site.tariff_path) if site.tariff_path is not None else None

        self.hub = Hub(site, AuditLog(state_dir / "audit.jsonl"), clock=self.clock.monotonic)
        self.hub.operator = restore_operator(self.hub.operator, state_dir / "audit.jsonl", self.hub.limits())
        if self.hub.operator != OperatorState(maintenance=site.maintenance):
            op = self.hub.operator
            log.info(
                "operator state restored from the audit log",
                extra=kv(mode=op.mode, maintenance=sorted(op.maintenance), reserve_load_w=op.reserve_load_w),
            )
        self.ledger: Ledger | None = None
        self._econ = econ
        self._ledger_watch = DbFileWatch(econ.db_path or state_dir / "ledger.db")
        self._ledger_alarm = False  # state_file_lost raised: cleared once acknowledged
        if self.tariff is not None:
            self.ledger = Ledger(self._ledger_watch.path, self.tariff, econ)
            self._ledger_watch.reset()
            self.hub.sinks.append(LedgerSink(self.ledger))
            self.hub.providers["ledger"] = lambda: self._report
            self.hub.providers["roi"] = lambda: self._report.get("roi", {})
        tz = site.timezone
        seeded = _seed_state(site, self.tariff, self.ledger, self.clock.wall(tz))
        self._limit_store = LimitStore(self.state_dir)
        seeded = self._restore_limit(seeded)
        self.loop = AgentLoop(
            site,
            self.hub,
            self.tariff,
            clock=self.clock.monotonic,
            wall=lambda: self.clock.wall(tz),
            initial=seeded,
            speed=self.clock.speed,
        )
        # The ledger's report is computed in the loop's thread (its SQLite connection lives there)
        # at most every REPORT_EVERY_S, and API threads read the cached dict.
        self._report: dict[str, Any] = {}
        self._report_t = -math.inf
        self.planning = self._start_planning(planner_cfg)
        self.loop.on_cycle.append(self._refresh_report)
        self.loop.on_cycle.append(self._watch_ledger)
        self.loop.on_cycle.append(self._keep_limit_state)
        self.telemetry: InfluxSink | LocalStoreSink | None = None
        self.health: HealthSink | None = None
        # The demo has no tokens file: one operator token for this run, shown once on the terminal.
        self.demo_token = secrets.token_urlsafe(24) if demo and self.api_cfg.tokens_file is None else None
        self.api: ApiProcess | None = None
        self.mqtt: MqttLink | None = None
        self._audit_watch: asyncio.Task[None] | None = None
        self._stopping = False
        self._reloading: asyncio.Task[None] | None = None
        self._reload_again = False
        self.fast_lane: tuple[FastLane, asyncio.Task[None]] | None = None  # [control] fast_lane_s
        self.campus: tuple[CampusLink, asyncio.Task[None]] | None = None  # [campus]

    def _restore_limit(self, seeded: ControllerState) -> ControllerState:
        """The grid limit's energy bookkeeping as the last run left it (agent/live/limit_store.py),
        when a connection limit is configured; otherwise, or if the file is not usable, the safe start."""
        if self.site.control.grid_import_limit_w <= 0.0:
            return seeded
        ls, why = self._limit_store.load(
            self.clock.wall(self.site.timezone).timestamp(), self.site.control.demand_interval_s
        )
        if why is not None:
            log.warning("grid limit state not restored", extra=kv(error=why))
        if ls is None:
            return seeded
        log.info("grid limit state restored", extra=kv(deficit_wh=round(ls.deficit_wh), seen_s=round(ls.seen_s)))
        return replace(seeded, limit=ls)

    def _fast_lane_view(self) -> dict[str, Any]:
        """GET /api/fast_lane: whether the lane runs, its period, and what it did since it started."""
        if self.fast_lane is None:
            return {"running": False, "fast_lane_s": self.loop.site.control.fast_lane_s}
        lane = self.fast_lane[0]
        return {"running": True, "fast_lane_s": self.loop.site.control.fast_lane_s, **lane.stats.as_dict()}

    def _keep_limit_state(self, rec: CycleRecord) -> None:
        self._save_limit(force=False)

    def _save_limit(self, force: bool) -> None:
        """Written when a demand interval closes and at shutdown: a restart then resumes it."""
        site = self.loop.site
        if site.control.grid_import_limit_w <= 0.0:
            return
        now = self.clock.wall(site.timezone).timestamp()
        try:
            self._limit_store.save(self.loop.cstate.limit, now, site.control.demand_interval_s, force)
        except OSError as e:
            log.warning("grid limit state not saved", extra=kv(path=str(self._limit_store.path), error=str(e)))

    def _start_planning(self, cfg: PlannerConfig) -> LivePlanning | None:
        """Predictive dispatch when [planner] enables it (the solver is loaded only then); the
        read-out GET /api/plan shows either way."""
        if not cfg.enabled or self.tariff is None:
            self.hub.providers["plan"] = disabled_view
            return None
        from agent.live.planning import LivePlanning
        from agent.offline.replay import plan_battery  # the replay's battery model: one for both

        bat = plan_battery(self.site, self.hub.operator)
        planning = LivePlanning(cfg, self.tariff, bat, self.state_dir, self.hub.alarms)
        self.loop.planning = planning
        self.hub.providers["plan"] = planning.view
        return planning

    def _refresh_report(self, rec: CycleRecord) -> None:
        now = time.monotonic()
        if self.ledger is None or now - self._report_t < REPORT_EVERY_S:
            return
        self._report_t = now
        rated_w = sum(p.rated_w for p in self.site.pcs)
        self._report = self.ledger.report(len(self.site.clusters), len(self.site.pcs), rated_w)

    def _watch_ledger(self, rec: CycleRecord) -> None:
        """A ledger database deleted while running is copied back from the open connection and
        reopened, with an alarm (`state_file_lost`, until acknowledged): silent, the next restart
        lost everything recorded since. Runs in the loop's thread, where the ledger's connection lives."""
        ledger, path = self.ledger, self._ledger_watch.path
        if self._ledger_alarm and any(
            a.code == "state_file_lost" and a.acked_by is not None for a in self.hub.alarms.active()
        ):  # an operator has seen it: it was handled when raised, so it clears
            self.hub.alarms.clear("state_file_lost", "ledger", rec.snapshot.t_wall)
            self._ledger_alarm = False
        if ledger is None or self.tariff is None or not self._ledger_watch.lost():
            return
        if path.exists():  # replaced by someone: theirs is not overwritten; this run keeps its own
            msg = f"{path} was replaced while running: this run keeps writing the file it opened"
        else:
            try:
                rescue_db(ledger.db, path)
                ledger.db = Ledger(path, self.tariff, self._econ).db  # a connection set up as the ledger's own
                msg = f"{path} was deleted while running: recreated from the open database, nothing lost"
            except (sqlite3.Error, OSError) as e:
                msg = f"{path} was deleted while running and could not be recreated ({e}): lost at a restart"
            self._ledger_watch.reset()
        self._ledger_alarm = True
        if self.hub.alarms.raise_("state_file_lost", "ledger", msg, rec.snapshot.t_wall):
            log.warning("alarm raised", extra=kv(code="state_file_lost", source="ledger", message=msg))

    def _tokens(self) -> TokenStore | None:
        if self.api_cfg.tokens_file is not None:
            return TokenStore.load(self.api_cfg.tokens_file)
        if self.demo_token is not None:
            return TokenStore([("demo-operator", Role.OPERATOR, digest(self.demo_token))])
        return None

    def reload(self) -> None:
        """SIGHUP: re-read the site file off the control loop, then apply it between two awaits.

        The file is read and parsed in a worker thread: a slow disk, a FIFO or a large file (tomllib
        is pure Python: some 100 ms for the largest file tomlcheck accepts) never holds a cycle; parsed on
        the loop, a hostile 40 KB file once stalled it 4.5 s, close to the 5 s PCS revert. A
        SIGHUP during a reload asks for one more read after it, so the last edit always lands.
        """
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload(), name="site-reload")

    async def _reload(self) -> None:
        again = True
        while again:
            self._reload_again = False
            try:
                site, campus = await asyncio.to_thread(self._read_site)
                self.loop.reload(site)
                self._campus_cfg = campus
                if self.campus is not None and campus is not None:
                    self.campus[0].reconfigure(campus)
            except Exception as e:  # a bad reload keeps the running config
                log.error("site reload refused", extra=kv(error=str(e)))
            again = self._reload_again

    def _read_site(self) -> tuple[SiteConfig, FeederConfig | None]:
        """The site file re-read (in a worker thread), its [campus] table checked against the running
        one (agent.campus.config.check_reload: a fallback share may only narrow): ConfigError if not."""
        site = load_site(self.loop.site.path)
        campus = parse_feeder(site)
        check_reload(self._campus_cfg, campus, str(site.path))
        return site, campus

    async def _watch_audit(self) -> None:
        """Clear `audit_write_failed` when the disk is back, not only at the next command."""
        audit = self.hub.audit
        while True:
            await asyncio.sleep(AUDIT_PROBE_S)
            if audit.failure is not None:
                await asyncio.to_thread(audit.probe)  # it writes and fsyncs: not on the loop's thread

    async def start(self) -> None:
        """Start sinks, MQTT and the API (all need the running event loop); not the control loop."""
        self._audit_watch = asyncio.create_task(self._watch_audit(), name="audit-watch")
        self.mqtt = start_mqtt(self.site, self.hub)
        self.campus = start_campus(self.hub, self._campus_cfg)
        if self.campus is not None:
            self.loop.control_source = self.campus[0]
        rack = self.mqtt.rack if self.mqtt is not None else None
        if rack is not None:
            self.loop.load_source = rack
        self.telemetry = start_telemetry(self.site, self.hub, self.state_dir, racks=rack.per_rack if rack else None)
        self.health = start_health(self.site, self.hub, self.state_dir)
        self.fast_lane = start_fast_lane(self.loop)
        self.hub.providers["fast_lane"] = self._fast_lane_view
        if self.api_cfg.port:
            # The API runs in its own process (its own GIL): serving requests and SSE streams
            # never takes the interpreter from the control loop; the bridge feeds it per cycle.
            tokens = self._tokens()
            if tokens is None and not self.api_cfg.open_read:
                log.warning("api: no tokens_file and open_read = false: every request will be refused")
            level = logging.getLevelName(logging.getLogger().level or logging.WARNING)  # the API logs as we do
            init = Init(self.site, tokens, self.api_cfg.open_read, level, self.clock.speed)
            port = 0 if self.api_cfg.port == ANY_PORT else self.api_cfg.port
            self.api = ApiProcess(ApiBridge(self.hub), init, self.api_cfg.host, port)
            self.api.start()
            log.info("api listening", extra=kv(url=f"{self.api.url}/"))

    async def run(self) -> None:
        await self.start()
        try:
            await self.loop.run()
        finally:
            await self.aclose()

    def stop(self) -> None:
        self.loop.stop()

    def _closers(self) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
        """What aclose() stops, in order: inputs first, then the API, then the sinks that flush."""
        out: list[tuple[str, Callable[[], Awaitable[object]]]] = []
        if (mqtt := self.mqtt) is not None:
            out.append(("mqtt", lambda: stop_mqtt(mqtt)))
        if (campus := self.campus) is not None:
            out.append(("campus", lambda: stop_campus(*campus)))
        if self.api is not None:
            out.append(("api", self.api.stop))
        if (tel := self.telemetry) is not None:
            out.append(("telemetry", lambda: asyncio.to_thread(tel.close)))
        if (health := self.health) is not None:
            out.append(("health", lambda: asyncio.to_thread(health.stop)))
        if (planning := self.planning) is not None:
            out.append(("planner", lambda: asyncio.to_thread(planning.close)))
        out.append(("limit state", lambda: asyncio.to_thread(self._save_limit, True)))
        if (ledger := self.ledger) is not None:

            async def close_ledger() -> None:
                ledger.close()  # on this thread: its SQLite connection belongs to it

            out.append(("ledger", close_ledger))
        return out

    async def aclose(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.loop.stop()
        if self._audit_watch is not None:
            self._audit_watch.cancel()
        if self._reloading is not None:  # its thread finishes its read; the result is not applied
            self._reloading.cancel()
        if self.fast_lane is not None:  # it stops with the loop (loop.stopping); wait for its last tick
            lane, task = self.fast_lane
            lane.stop()
            await asyncio.gather(task, return_exceptions=True)
        # Each part is closed even if one before it fails: a failed API stop must not leave
        # telemetry unflushed or the ledger open.
        failed: list[str] = []
        for name, close in self._closers():
            try:
                await close()
            except Exception:
                failed.append(name)
                log.exception("could not stop cleanly", extra=kv(part=name))
        log.info("agent stopped", extra=kv(site=self.site.id, cycles=self.loop.seq, failed=",".join(failed)))
