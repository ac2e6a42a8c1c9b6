"""The campus coordinator process (`ems-agent coordinate --campus CAMPUS.toml`).

Every cycle (1 s by default): read the campus meter over Modbus TCP (the same driver and meter
profiles as a site's grid meter), take the newest verified report of every feeder, allocate the
campus limits (agent/campus/allocate.py: a feeder whose report is stale or missing, or which
reports that it has heard no share for stale_after_s, gets its fallback share) and publish each
feeder's share, signed with the campus key (agent/campus/messages.py): its import cap and ramp the
least of its last SHARE_WINDOW allocations (allocate.hold_down), its demand target the newest split
of the interval's energy left (allocate.split_demand), so agents applying them a cycle apart
still hold the limits together (allocate's module doc). Its own state
goes to `<prefix>/campus/<id>/coordinator` (retained JSON; "offline" as the will) and the log is
quiet in steady state: a line when a feeder goes stale or comes back, when the campus import goes
above its limit or back under it, when the broker connection drops or returns.

The cycle never waits on MQTT: shares go into a slot the sender publishes, the newest replacing any
not yet sent (a late share is refused as stale anyway). Reports arrive on their own task and are
verified (signature, timestamp within stale_after_s, nonce) before they count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt

from agent.campus.allocate import (
    NOT_SENT,
    SHARE_WINDOW,
    UNDECIDED,
    FeederState,
    Share,
    allocate,
    to_send,
    usable,
)
from agent.campus.config import CampusConfig
from agent.campus.demand import CampusDemand
from agent.campus.demand import start as demand_start
from agent.campus.demand import step as demand_step
from agent.campus.levels import Level
from agent.campus.link import finish, first_of, keep_connected, payload_bytes
from agent.campus.messages import (
    MessageError,
    decode,
    parse_report,
    report_topic,
    share_topic,
    signed_share,
    state_topic,
)
from agent.campus.saved import CampusStore
from agent.control.begin import month_index
from agent.control.demand import MARGIN
from agent.economics.tariff import load_tariff
from agent.logs import kv
from agent.mqtt.auth import AuthError, Verifier
from drivers import keys as K
from drivers.device import ModbusDevice
from drivers.profile import load_profile

log = logging.getLogger("ems.campus")

LOG_EVERY_S = 10.0


class Coordinator:
    def __init__(
        self,
        cfg: CampusConfig,
        clock: Callable[[], float] = time.monotonic,
        epoch: Callable[[], float] = time.time,
        state_path: Path | None = None,
    ) -> None:
        """`state_path`: the campus demand state kept across a restart (agent/campus/saved.py; None: not kept)."""
        self.cfg = cfg
        self.clock = clock
        self.epoch = epoch
        b = cfg.broker
        self.meter = ModbusDevice(cfg.meter, load_profile(cfg.meter.profile), cfg.stale_after_s, clock=clock)
        # reports signed before this process started are refused: its nonce memory is new
        self.verifier = Verifier(b.secret, cfg.stale_after_s, not_before=epoch())
        self.report_prefix = report_topic(b.topic_prefix, cfg.id, "")
        self.state_topic = state_topic(b.topic_prefix, cfg.id)
        self.reports: dict[str, tuple[FeederState, float]] = {}  # site -> (report, arrival on clock)
        self.report_ts: dict[str, float] = {}  # site -> the newest report's own timestamp
        self.seq = 0
        self.shares: dict[str, Share] = {}  # what was sent this cycle
        self._recent: deque[dict[str, Share]] = deque(maxlen=SHARE_WINDOW)  # the last allocations
        # the campus's demand state (agent/campus/demand.py): its day profile for the fixed target's
        # keep and recharge, its interval state for the economic levels; as the last run left it this
        # month (agent/campus/saved.py), else empty (no keep sent for half a day, no economic level
        # before an interval closes: levels.py)
        self.store = CampusStore(state_path) if state_path is not None else None
        self.demand = self._restored()
        self.level = Level(math.inf, MARGIN, NOT_SENT, UNDECIDED)  # the newest decisions
        self.keep_wh = NOT_SENT
        # the campus's tariff (its feeders'): the recharge for demand and the economic levels are
        # decided on it; without one each agent keeps its own recharge rule, and an economic campus
        # bills nothing (no campus demand target, as a site without a tariff)
        self.prices = load_tariff(cfg.tariff_path) if cfg.tariff_path is not None else None
        self._last_cycle = math.nan
        self.stale: set[str] = set(cfg.feeders)  # feeders on their fallback (all, until they report)
        self.campus_w = math.nan
        self.over_limit = False
        self.over_limit_cycles = 0
        self.refused: dict[str, int] = {}
        self._logged: dict[str, float] = {}
        self._outbox: dict[str, bytes] = {}  # topic -> newest payload not yet sent
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self.connected = False

    def _month(self) -> int:
        t = datetime.fromtimestamp(self.epoch(), self.cfg.timezone)
        return month_index(t)

    def _restored(self) -> CampusDemand:
        length = self.cfg.demand_interval_s
        if self.store is None:
            return demand_start(length)
        st, why = self.store.load(self.cfg.id, self._month(), length)
        if st is not None:
            log.info("campus demand state restored", extra=kv(campus=self.cfg.id, path=str(self.store.path)))
            return st
        if why is not None:
            log.warning("campus demand state not used: starting empty", extra=kv(campus=self.cfg.id, reason=why))
        return demand_start(length)

    def save(self, force: bool = False) -> None:
        """The campus demand state to its file when an interval has opened (or `force`); a failed
        write is logged and the cycle goes on (the state is kept in memory)."""
        if self.store is None:
            return
        try:
            self.store.save(self.demand, self.cfg.id, self._month(), self.cfg.demand_interval_s, force)
        except OSError as e:
            log.warning("campus demand state not saved", extra=kv(path=str(self.store.path), error=str(e)))

    # --- reports in ------------------------------------------------------------------------------
    def on_report(self, topic: str, payload: bytes) -> bool:
        """One message on a report topic: stored (True) or refused, counted and logged."""
        site = topic.removeprefix(self.report_prefix)
        try:
            if site not in self.cfg.feeders:
                raise MessageError(f"{site!r} is not a feeder of campus {self.cfg.id!r}")
            msg = decode(payload)
            self.verifier.verify(msg, self.epoch())
            f = parse_report(msg, site)
            ts = float(msg["ts"])
            if ts <= self.report_ts.get(site, -math.inf):
                raise AuthError("stale", "older than the report already held")
        except AuthError as e:
            self._refuse(e.kind, site, str(e))
            return False
        except MessageError as e:
            self._refuse("malformed", site, str(e))
            return False
        self.reports[site] = (f, self.clock())
        self.report_ts[site] = ts
        return True

    def _refuse(self, kind: str, site: str, reason: str) -> None:
        self.refused[kind] = self.refused.get(kind, 0) + 1
        now = self.clock()
        if now - self._logged.get(kind, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged[kind] = now
            log.warning("campus report refused", extra=kv(kind=kind, site=site, reason=reason))

    # --- one cycle -------------------------------------------------------------------------------
    def feeders(self, now: float) -> list[FeederState]:
        """Every configured feeder: its newest report with its age, or a stale placeholder."""
        out = []
        length = self.cfg.demand_interval_s
        for site in self.cfg.feeders:
            got = self.reports.get(site)
            if got is None:
                out.append(FeederState(site, 0.0, 0.0, 0.0, 0.0, 0.0, fresh=False, age_s=math.inf))
            else:
                f, t = got
                # its import counted in an interval that has ended is not this interval's
                same = self.report_ts[site] // length == self.epoch() // length
                out.append(replace(f, age_s=max(0.0, now - t), interval_wh=f.interval_wh if same else 0.0))
        return out

    async def cycle(self) -> dict[str, Share]:
        """One cycle: meter, allocation, the shares queued for sending (returned)."""
        readings = await self.meter.poll()
        r = readings.get(K.POWER_W)
        self.campus_w = r.number() if r is not None else math.nan
        now = self.clock()
        feeders = self.feeders(now)
        # the agents' demand intervals are aligned on their local clock; a 15-min (or any whole
        # divisor of 30 min) interval starts at the same instants in UTC for every usual zone offset
        length = self.cfg.demand_interval_s
        epoch = self.epoch()
        left = length - epoch % length
        dt = now - self._last_cycle if now > self._last_cycle else self.cfg.cycle_s  # NaN on the first
        self._last_cycle = now
        local = datetime.fromtimestamp(epoch, self.cfg.timezone)
        lim = self.cfg.limits
        # the campus's demand decisions (agent/campus/demand.py: at the file's fixed target, or its
        # economic level per demand window) for the interval of the agents' next cycle, when they
        # apply this share (an agent plans its interval at its first cycle in it: decided on the
        # interval before, it would be one late)
        at = datetime.fromtimestamp(epoch + self.cfg.cycle_s, self.cfg.timezone)
        self.demand, lv = demand_step(
            self.demand, feeders, local, at, dt, length, lim.demand_target_w, self.prices, self.cfg.stale_after_s
        )
        self.level = lv
        self.keep_wh = lv.keep_wh
        self.save()
        target = lv.target_w if lv.target_w < math.inf else 0.0  # none known yet: no campus target
        self._recent.append(
            allocate(
                replace(lim, demand_target_w=target),
                feeders,
                fallback=self.cfg.fallback,
                stale_after_s=self.cfg.stale_after_s,
                interval_left_s=left,
                interval_s=length,
                keep_wh=lv.keep_wh,
                recharge=lv.recharge,
                margin=lv.margin,
                # the agents' cycle between the reports and this share (allocate.in_flight)
                in_flight_s=self.cfg.cycle_s,
            )
        )
        shares = to_send(self._recent)
        self.seq += 1
        self.shares = shares
        ts = self.epoch()
        b = self.cfg.broker
        for site, share in shares.items():
            self._outbox[share_topic(b.topic_prefix, self.cfg.id, site)] = signed_share(
                b.secret, site, share, self.seq, ts
            )
        self._note_changes(feeders)
        self._outbox[self.state_topic] = json.dumps(self.state(feeders), separators=(",", ":")).encode()
        self._wake.set()
        return shares

    def _note_changes(self, feeders: list[FeederState]) -> None:
        """Log a feeder going stale or coming back, and the campus import crossing its limit."""
        stale = {f.site_id for f in feeders if not usable(f, self.cfg.stale_after_s)}
        for site in sorted(stale - self.stale):
            log.warning("feeder on its fallback share: no fresh report", extra=kv(campus=self.cfg.id, site=site))
        for site in sorted(self.stale - stale):
            log.info("feeder reporting: following its allocated share", extra=kv(campus=self.cfg.id, site=site))
        self.stale = stale
        limit = self.cfg.limits.import_limit_w
        over = limit > 0.0 and self.campus_w > limit  # NaN (meter unreadable) is not over
        if over:
            self.over_limit_cycles += 1
        if over != self.over_limit:
            self.over_limit = over
            level = logging.WARNING if over else logging.INFO
            msg = "campus import above its limit" if over else "campus import back within its limit"
            log.log(level, msg, extra=kv(campus=self.cfg.id, import_w=round(self.campus_w), limit_w=limit))

    def state(self, feeders: list[FeederState]) -> dict[str, Any]:
        lim = self.cfg.limits
        return {
            "v": 1,
            "status": "online",
            "campus": self.cfg.id,
            "ts": round(self.epoch(), 3),
            "seq": self.seq,
            "import_w": round(self.campus_w, 1) if math.isfinite(self.campus_w) else None,
            "limits": {
                "import_limit_w": lim.import_limit_w,
                "ramp_limit_w_per_s": lim.ramp_limit_w_per_s,
                "demand_target_w": lim.demand_target_w,
            },
            # the campus's demand level for the agents' next cycle (the file's fixed target, or the
            # economic level of that interval's window: agent/campus/levels.py; None: none yet)
            "demand_level_w": round(self.level.target_w, 1) if math.isfinite(self.level.target_w) else None,
            "keep_wh": round(self.keep_wh, 1),  # the campus's, for its demand target (< 0: none sent)
            "over_limit_cycles": self.over_limit_cycles,
            "feeders": {
                f.site_id: {
                    "fallback": f.site_id in self.stale,
                    "age_s": round(f.age_s, 2) if math.isfinite(f.age_s) else None,
                    "net_load_w": round(f.net_load_w, 1),
                    "import_cap_w": round(self.shares[f.site_id].import_cap_w, 1),
                    "ramp_w_per_s": round(self.shares[f.site_id].ramp_w_per_s, 1),
                    "demand_target_w": round(self.shares[f.site_id].demand_target_w, 1),
                    "keep_wh": round(self.shares[f.site_id].keep_wh, 1),
                }
                for f in feeders
            },
            "refused": dict(self.refused),
            "connected": self.connected,
        }

    # --- running ---------------------------------------------------------------------------------
    async def run(self) -> None:
        link = asyncio.create_task(self._link(), name="campus-mqtt")
        period = self.cfg.cycle_s
        next_t = self.clock()
        log.info(
            "coordinator started",
            extra=kv(campus=self.cfg.id, feeders=",".join(self.cfg.feeders), cycle_s=period),
        )
        try:
            while not self._stop.is_set():
                try:
                    await self.cycle()
                except Exception:  # never end the campus over one cycle; the agents fall back if this persists
                    log.exception("coordinator cycle failed")
                next_t += period
                now = self.clock()
                if now > next_t:
                    next_t = now  # behind: no burst of catch-up cycles
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, next_t - now))
        finally:
            self.save(force=True)
            self._stop.set()
            self._wake.set()  # the sender sends what is queued, then the session says "offline"
            await finish(link, 3.0)
            await self.meter.close()

    def stop(self) -> None:
        self._stop.set()

    def _connected(self, up: bool) -> None:
        self.connected = up

    async def _link(self) -> None:
        offline = json.dumps({"v": 1, "status": "offline", "campus": self.cfg.id}).encode()
        will = aiomqtt.Will(self.state_topic, offline, qos=1, retain=True)
        await keep_connected(self.cfg.broker, self._session, self._stop, "coordinator", self._connected, will)

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.report_prefix + "+", qos=0)
        await first_of(self._sender(client), self._receiver(client))
        offline = {"v": 1, "status": "offline", "campus": self.cfg.id}  # a clean stop says so itself
        await client.publish(self.state_topic, json.dumps(offline).encode(), qos=1, retain=True)

    async def _sender(self, client: aiomqtt.Client) -> None:
        while not self._stop.is_set():
            await self._wake.wait()
            self._wake.clear()
            out, self._outbox = self._outbox, {}
            for topic, payload in out.items():
                await client.publish(topic, payload, qos=0, retain=topic == self.state_topic)

    async def _receiver(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = payload_bytes(message)
            try:
                self.on_report(message.topic.value, payload)
            except Exception:  # one hostile message must never end the session (a bug: log it)
                log.exception("campus report could not be handled", extra=kv(size=len(payload)))
