"""The agent's side of campus coordination: its report up every cycle, the coordinator's share down.

The link is its own MQTT connection (the site's [campus] broker and key; agent/campus/config.py),
a task on the agent's event loop. The control loop never waits on it: each cycle `submit` (a Hub
sink) leaves the newest report in a one-message slot the sender publishes (an older report is
worthless, so none is buffered), and `control` hands the loop this cycle's ControlConfig from what
the receiver last stored.

A share is applied only if it verifies (HMAC with the campus key, timestamp within stale_after_s
of this host's clock, a nonce not seen before: agent/mqtt/auth.py), names this site, and is newer
than the one applied; anything else is refused, counted by kind and logged (at most once per
kind every LOG_EVERY_S). Without a valid share for stale_after_s (coordinator or broker gone, or
none yet since start) the agent holds the fallback share of its site file and raises
`campus_fallback`; the first valid share after that clears it. Until the first share arrives
the agent starts on its fallback (the conservative side) and raises the alarm only once
stale_after_s has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

import aiomqtt

from agent.campus.allocate import Share
from agent.campus.config import FeederConfig
from agent.campus.link import finish, first_of, keep_connected, payload_bytes
from agent.campus.messages import MessageError, decode, parse_share, report_topic, share_topic, signed_report
from agent.control.campus_share import feeder_state, with_share
from agent.live.hub import CycleRecord, Hub
from agent.logs import kv
from agent.model.config import ControlConfig
from agent.mqtt.auth import AuthError, Verifier

log = logging.getLogger("ems.campus")

ALARM = "campus_fallback"
SOURCE = "campus"
LOG_EVERY_S = 10.0


class CampusLink:
    def __init__(
        self,
        cfg: FeederConfig,
        hub: Hub,
        clock: Callable[[], float] = time.monotonic,
        epoch: Callable[[], float] = time.time,
    ) -> None:
        """`clock`: the loop's monotonic clock (share ages); `epoch`: Unix time for message timestamps
        (the real one: the coordinator checks them against its own host's)."""
        self.cfg = cfg
        self.hub = hub
        self.site_id = hub.site.id
        self.clock = clock
        self.epoch = epoch
        b = cfg.broker
        self.report_topic = report_topic(b.topic_prefix, cfg.campus, self.site_id)
        self.share_topic = share_topic(b.topic_prefix, cfg.campus, self.site_id)
        # shares signed before this process started are refused: its nonce memory is new
        self.verifier = Verifier(b.secret, cfg.stale_after_s, not_before=epoch())
        self.started = clock()
        self.share: Share | None = None  # the newest verified share ...
        self.share_t = -float("inf")  # ... when it arrived (clock)
        self.share_ts = -float("inf")  # ... and its own timestamp (Unix s)
        self.share_seq = -1
        self.on_fallback = True
        self.alarmed = False
        self.accepted = 0
        self.refused: dict[str, int] = {}
        self._logged: dict[str, float] = {}
        self._report: bytes | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self.connected = False
        self.sent = 0

    # --- the loop's side (never waits) ---------------------------------------------------------
    def control(self, base: ControlConfig, now_wall: datetime) -> ControlConfig:
        """This cycle's ControlConfig: `base` with the newest valid share, or with the fallback share
        when none arrived within stale_after_s (raising campus_fallback; cleared when one does)."""
        now = self.clock()
        share = self._fresh(now)
        if share is not None:
            if self.on_fallback:
                self.on_fallback = False
                if self.alarmed:
                    self.alarmed = False
                    self.hub.alarms.clear(ALARM, SOURCE, now_wall)
                log.info("campus share applied: following the coordinator", extra=kv(campus=self.cfg.campus))
            return with_share(base, share)
        silent_s = now - max(self.share_t, self.started)
        self.on_fallback = True
        if silent_s > self.cfg.stale_after_s and not self.alarmed:
            self.alarmed = True
            fb = self.cfg.fallback
            msg = (
                f"no valid share from the campus {self.cfg.campus!r} coordinator for {silent_s:.1f} s"
                f" (stale_after_s {self.cfg.stale_after_s:g}): holding the fallback share (import cap"
                f" {fb.import_cap_w:g} W, ramp {fb.ramp_w_per_s:g} W/s, demand target {fb.demand_target_w:g} W)"
            )
            self.hub.alarms.raise_(ALARM, SOURCE, msg, now_wall)
            log.warning("campus fallback", extra=kv(campus=self.cfg.campus, silent_s=round(silent_s, 1)))
        return with_share(base, self.cfg.fallback)

    def _fresh(self, now: float) -> Share | None:
        """The newest valid share if it arrived within stale_after_s, else None (the fallback holds)."""
        return self.share if self.share is not None and now - self.share_t <= self.cfg.stale_after_s else None

    def submit(self, rec: CycleRecord) -> None:
        """Hub sink: this cycle's report replaces any not yet sent."""
        control, op = self.hub.site.control, self.hub.operator
        f = feeder_state(
            self.site_id,
            rec.snapshot,
            control,
            op,
            interval_wh=rec.interval_grid_wh,
            forecast_w=rec.campus_forecast_w,
            raise_w=rec.campus_raise_w,
            spread=rec.campus_spread,
            battery_w=sum(rec.plan.pcs_setpoints_w.values()),  # what this cycle commanded (allocate.in_flight)
        )
        f = replace(f, share_age_s=self.clock() - self.share_t)  # inf before the first: NO_SHARE_S
        self._report = signed_report(self.cfg.broker.secret, f, self.epoch())
        self._wake.set()

    # --- messages in -----------------------------------------------------------------------------
    def on_share(self, payload: bytes) -> bool:
        """One message from the share topic: applied (True) or refused, counted and logged."""
        try:
            msg = decode(payload)
            self.verifier.verify(msg, self.epoch())
            seq, share = parse_share(msg, self.site_id)
            ts = float(msg["ts"])
            if ts <= self.share_ts:
                raise AuthError("stale", f"older than the share applied (seq {seq} after {self.share_seq})")
        except AuthError as e:
            self._refuse(e.kind, str(e))
            return False
        except MessageError as e:
            self._refuse("malformed", str(e))
            return False
        self.share, self.share_t, self.share_ts, self.share_seq = share, self.clock(), ts, seq
        self.accepted += 1
        return True

    def _refuse(self, kind: str, reason: str) -> None:
        self.refused[kind] = self.refused.get(kind, 0) + 1
        now = self.clock()
        if now - self._logged.get(kind, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._logged[kind] = now
            log.warning("campus share refused", extra=kv(kind=kind, reason=reason, refused=self.refused[kind]))

    # --- the connection --------------------------------------------------------------------------
    def _connected(self, up: bool) -> None:
        self.connected = up

    async def run(self) -> None:
        await keep_connected(self.cfg.broker, self._session, self._stop, "campus link", self._connected)

    async def _session(self, client: aiomqtt.Client) -> None:
        await client.subscribe(self.share_topic, qos=0)
        await first_of(self._sender(client), self._receiver(client), self._stop.wait())

    async def _sender(self, client: aiomqtt.Client) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            report, self._report = self._report, None
            if report is not None:
                await client.publish(self.report_topic, report, qos=0)
                self.sent += 1

    async def _receiver(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = payload_bytes(message)
            try:
                self.on_share(payload)
            except Exception:  # one hostile message must never end the session (a bug: log it)
                log.exception("campus message could not be handled", extra=kv(size=len(payload)))

    def stop(self) -> None:
        self._stop.set()

    def reconfigure(self, cfg: FeederConfig) -> None:
        """A reloaded [campus] table (SIGHUP), already checked by agent.campus.config.check_reload:
        its fallback share and stale_after_s hold from the next cycle; the connection is unchanged."""
        if cfg == self.cfg:
            return
        self.cfg = cfg
        self.verifier.max_skew_s = cfg.stale_after_s
        fb = cfg.fallback
        log.info(
            "campus fallback reloaded",
            extra=kv(
                stale_after_s=cfg.stale_after_s,
                import_cap_w=fb.import_cap_w,
                ramp_w_per_s=fb.ramp_w_per_s,
                demand_target_w=fb.demand_target_w,
            ),
        )

    def status(self) -> dict[str, Any]:
        """The link's read-out (GET /api/campus): connected or not, on the fallback or following the
        coordinator, the share in force and its age, what was accepted, refused (by kind) and sent."""
        now = self.clock()
        share = self._fresh(now)
        held = share if share is not None else self.cfg.fallback
        return {
            "campus": self.cfg.campus,
            "connected": self.connected,
            "on_fallback": share is None,
            # the campus's demand decisions in it: recharge -1 and demand_w None where none were sent
            "share": {k: (v if v == v else None) for k, v in asdict(held).items()},
            "share_age_s": now - self.share_t if self.share is not None else None,  # None: none yet
            "share_seq": self.share_seq,
            "stale_after_s": self.cfg.stale_after_s,
            "accepted": self.accepted,
            "refused": dict(self.refused),
            "sent": self.sent,
        }


def start_campus(hub: Hub, cfg: FeederConfig | None) -> tuple[CampusLink, asyncio.Task[None]] | None:
    """The link for a site with a [campus] table, running on the current loop and a Hub sink."""
    if cfg is None:
        return None
    link = CampusLink(cfg, hub)
    hub.sinks.append(link)
    hub.providers["campus"] = link.status
    return link, asyncio.get_running_loop().create_task(link.run(), name="campus-link")


async def stop_campus(link: CampusLink, task: asyncio.Task[None], timeout_s: float = 3.0) -> None:
    link.stop()
    await finish(task, timeout_s)
