"""The campus messages on MQTT: each agent's report up, the coordinator's share down, both signed.

Topics (prefix and campus id from the files):

    <prefix>/campus/<campus>/report/<site>   agent -> coordinator, every cycle (QoS 0, not retained)
    <prefix>/campus/<campus>/share/<site>    coordinator -> agent, every cycle (QoS 0, not retained)
    <prefix>/campus/<campus>/coordinator     the coordinator's state (retained; "offline" as its will)

Payloads are signed like operator commands (agent/mqtt/auth.py: HMAC-SHA256 over the canonical
JSON, `ts`, `nonce`) with the campus key, so a forged, stale or replayed message is refused by the
same Verifier. Both carry the site id inside the signed body: a share captured from one site's
topic and replayed onto another's does not verify as that site's. Neither is retained: a latest
value is all either side uses, and a retained one would only be refused as stale on reconnect.

    report: {"v": 1, "site": "f1", "ts": ..., "nonce": ..., "good": true, "net_load_w": ...,
             "grid_w": ..., "discharge_w": ..., "charge_w": ..., "energy_wh": ...,
             "share_age_s": ..., "interval_wh": ..., "sig": ...}   (share_age_s: since the last valid
             share it had; interval_wh: its import so far this demand interval; optional
             "forecast_w": its demand forecast for the rest of the interval, "raise_w": the charge
             raise its time-of-use plan priced: agent/campus/bound.py; "budget_wh", "power_w",
             "spread": what the campus's economic levels are sized on, agent/campus/levels.py;
             "battery_w": the battery power its cycle commanded, W, discharge positive:
             agent/campus/allocate.py in_flight; "round_trip", "wear_per_kwh": its battery's
             charge x discharge efficiency and wear per kWh discharged, what the campus's level of
             a day the all-hours charge bills alone is worked out with, agent/campus/levels.py)
    share:  {"v": 1, "site": "f1", "seq": 17, "ts": ..., "nonce": ..., "import_cap_w": ...,
             "ramp_w_per_s": ..., "demand_target_w": ..., "keep_wh": ..., "sig": ...}
             (keep_wh: its part of the campus's keep for the demand target, AC Wh; absent or
             below 0: none, the agent keeps its own; agent/campus/keep.py. "recharge": 1 / 0 the
             campus recharges for its demand target now or not, -1 or absent: not decided, the
             agent's own rule; agent/campus/recharge.py. "demand_w": its part of the campus's
             demand bound, W, > 0 discharge, < 0 charge room; absent: none; agent/campus/bound.py.
             "at_net_w": the feeder's net load, W, that part was made on; absent: the part as it is;
             "room_w": how far the campus was under needing a discharge then, W; absent: not sent)
"""

from __future__ import annotations

import json
import math
import secrets
from typing import Any

from agent.campus.allocate import NOT_SENT, UNDECIDED, FeederState, Share
from agent.mqtt.auth import sign

MAX_MESSAGE_BYTES = 2048
MAX_W = 1e12  # any power above this (a TW) is a corrupted value, not a campus
POWER_FIELDS = ("net_load_w", "grid_w", "discharge_w", "charge_w", "energy_wh")
REPORT_FIELDS = (*POWER_FIELDS, "share_age_s", "interval_wh")
NO_SHARE_S = 1e6  # share_age_s of an agent that has not had a share since it started
SHARE_FIELDS = ("import_cap_w", "ramp_w_per_s", "demand_target_w")


class MessageError(ValueError):
    """A campus message is malformed; the text names the field."""


def report_topic(prefix: str, campus: str, site: str) -> str:
    return f"{prefix}/campus/{campus}/report/{site}"


def share_topic(prefix: str, campus: str, site: str) -> str:
    return f"{prefix}/campus/{campus}/share/{site}"


def state_topic(prefix: str, campus: str) -> str:
    return f"{prefix}/campus/{campus}/coordinator"


def _nonce() -> str:
    return secrets.token_hex(12)


def signed_report(secret: bytes, f: FeederState, ts: float) -> bytes:
    """A feeder's report, signed. Non-finite values (a bad meter) are sent as 0 with good = false:
    the coordinator then gives the feeder its fallback share."""
    vals = [f.net_load_w, f.grid_w, f.discharge_w, f.charge_w, f.energy_wh]
    good = f.fresh and all(math.isfinite(v) for v in vals)
    body: dict[str, Any] = {"v": 1, "site": f.site_id, "ts": ts, "nonce": _nonce(), "good": good}
    for k, v in zip(POWER_FIELDS, vals, strict=True):
        body[k] = round(v, 3) if good else 0.0
    body["share_age_s"] = round(min(f.share_age_s, NO_SHARE_S), 3)
    body["interval_wh"] = round(f.interval_wh, 3) if good and math.isfinite(f.interval_wh) else 0.0
    if good and math.isfinite(f.forecast_w):  # its demand forecast, where its loop gives one (bound.py)
        body["forecast_w"] = round(f.forecast_w, 3)
    if good and math.isfinite(f.raise_w) and f.raise_w > 0.0:
        body["raise_w"] = round(f.raise_w, 3)
    if good and math.isfinite(f.battery_w):  # in flight when the coordinator answers (allocate.in_flight)
        body["battery_w"] = round(f.battery_w, 3)
    if good:  # what the campus's economic levels are sized on (agent/campus/levels.py)
        for k, v in (
            ("budget_wh", f.budget_wh),
            ("power_w", f.power_w),
            ("spread", f.spread),
            ("round_trip", f.round_trip),
            ("wear_per_kwh", f.wear_per_kwh),
        ):
            if math.isfinite(v):
                body[k] = round(v, 6)
    return json.dumps(sign(secret, body), separators=(",", ":")).encode()


def signed_share(secret: bytes, site: str, share: Share, seq: int, ts: float) -> bytes:
    body: dict[str, Any] = {"v": 1, "site": site, "seq": seq, "ts": ts, "nonce": _nonce()}
    for k in (*SHARE_FIELDS, "keep_wh"):
        body[k] = round(float(getattr(share, k)), 3)
    body["recharge"] = share.recharge
    if math.isfinite(share.demand_w):
        body["demand_w"] = round(share.demand_w, 3)
        for k, v in (("at_net_w", share.at_net_w), ("room_w", share.room_w)):
            if math.isfinite(v):
                body[k] = round(v, 3)
    return json.dumps(sign(secret, body), separators=(",", ":")).encode()


def decode(payload: bytes) -> dict[str, Any]:
    """The JSON object of a message (MessageError if it is not one, or too large)."""
    if len(payload) > MAX_MESSAGE_BYTES:
        raise MessageError(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MessageError("not valid JSON") from None
    if not isinstance(msg, dict):
        raise MessageError("message must be a JSON object")
    return msg


def _watts(msg: dict[str, Any], key: str) -> float:
    v = msg.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or abs(v) > MAX_W:
        raise MessageError(f"'{key}' must be a finite number, got {v!r}")
    return float(v)


def _site(msg: dict[str, Any], site: str) -> None:
    if msg.get("site") != site:
        raise MessageError(f"'site' is {msg.get('site')!r}, not {site!r} (the topic's)")


def parse_report(msg: dict[str, Any], site: str) -> FeederState:
    """A verified report as FeederState (MessageError naming the field). Ages are the caller's."""
    _site(msg, site)
    vals = {k: _watts(msg, k) for k in REPORT_FIELDS}
    for k in ("discharge_w", "charge_w", "energy_wh", "share_age_s", "interval_wh"):
        if vals[k] < 0.0:
            raise MessageError(f"'{k}' must be >= 0, got {vals[k]!r}")
    good = msg.get("good")
    if not isinstance(good, bool):
        raise MessageError(f"'good' must be true or false, got {good!r}")
    fc = _watts(msg, "forecast_w") if "forecast_w" in msg else math.nan  # absent: not reported
    raised = _watts(msg, "raise_w") if "raise_w" in msg else 0.0
    if raised < 0.0:
        raise MessageError(f"'raise_w' must be >= 0, got {raised!r}")
    budget = _watts(msg, "budget_wh") if "budget_wh" in msg else 0.0  # absent: an agent before issue 16w
    power = _watts(msg, "power_w") if "power_w" in msg else 0.0
    for k, v in (("budget_wh", budget), ("power_w", power)):
        if v < 0.0:
            raise MessageError(f"'{k}' must be >= 0, got {v!r}")
    spread = _watts(msg, "spread") if "spread" in msg else math.nan
    # absent: an agent before they were reported (the campus then works out no week's level)
    rt = _watts(msg, "round_trip") if "round_trip" in msg else math.nan
    if rt == rt and not 0.0 < rt <= 1.0:
        raise MessageError(f"'round_trip' must be > 0 and <= 1, got {rt!r}")
    wear = _watts(msg, "wear_per_kwh") if "wear_per_kwh" in msg else math.nan
    if wear < 0.0:
        raise MessageError(f"'wear_per_kwh' must be >= 0, got {wear!r}")
    battery = _watts(msg, "battery_w") if "battery_w" in msg else math.nan  # absent: not reported
    return FeederState(
        site,
        fresh=good,
        forecast_w=fc,
        raise_w=raised,
        budget_wh=budget,
        power_w=power,
        spread=spread,
        battery_w=battery,
        round_trip=rt,
        wear_per_kwh=wear,
        **vals,
    )


def parse_share(msg: dict[str, Any], site: str) -> tuple[int, Share]:
    """A verified share: (its sequence number, the share). MessageError naming the field."""
    _site(msg, site)
    seq = msg.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise MessageError(f"'seq' must be an integer >= 0, got {seq!r}")
    vals = {k: _watts(msg, k) for k in SHARE_FIELDS}
    for k, v in vals.items():
        if v < 0.0:
            raise MessageError(f"'{k}' must be >= 0, got {v!r}")
    keep = _watts(msg, "keep_wh") if "keep_wh" in msg else NOT_SENT  # a coordinator without it: none
    recharge = msg.get("recharge", UNDECIDED)  # a coordinator without a tariff: the agent's own rule
    if isinstance(recharge, bool) or recharge not in (UNDECIDED, 0, 1):
        raise MessageError(f"'recharge' must be -1, 0 or 1, got {recharge!r}")
    return seq, Share(
        vals["import_cap_w"],
        vals["ramp_w_per_s"],
        vals["demand_target_w"],
        keep if keep >= 0.0 else NOT_SENT,
        int(recharge),
        _watts(msg, "demand_w") if "demand_w" in msg else math.nan,  # absent: none, the agent's own bound
        _watts(msg, "at_net_w") if "at_net_w" in msg else math.nan,  # absent: the part as it is
        _room(msg),
    )


def _room(msg: dict[str, Any]) -> float:
    """The share's "room_w" (absent: NaN, not sent); MessageError if it is below 0."""
    if "room_w" not in msg:
        return math.nan
    v = _watts(msg, "room_w")
    if v < 0.0:
        raise MessageError(f"'room_w' must be >= 0, got {v!r}")
    return v
