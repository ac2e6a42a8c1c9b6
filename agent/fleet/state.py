"""The fleet's picture of its sites, from the agents' retained MQTT topics (pure: no I/O, `now` given).

Each agent publishes `<prefix>/<site>/status|state|alarm/active|savings` (agent/mqtt/topics.py).
`receive` folds one message into the site's `SiteState`; `fleet_view` turns them into the body of
GET /api/fleet with the sums. A malformed or foreign payload never raises: the site keeps its last
good values and carries the error, naming the topic and field, until a good message of that kind
arrives. Ages are the fleet's own monotonic time since a message was received, so a site whose
clock is wrong still shows whether it is alive.

Site status, most severe first:
- "offline": the agent's status topic says so (its clean stop, or the broker's will when it died);
- "missing": a site named in the fleet file that has never published;
- "degraded": its last message of some kind could not be read (see `errors`);
- "stale": no state message for `stale_after_s` (agent hung, broker link down, or a cable);
- "online".
Only "online" sites' power is summed: the others' last values are not the present. Savings to date
are cumulative, so every site's last good figures count, summed per currency (never CNY + USD).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

from agent.model.alarms import Severity, worst

SCHEMA_VERSION = 1  # the agent's topics.SCHEMA_VERSION this parser reads
KINDS = ("status", "state", "alarm/active", "savings")
MAX_PAYLOAD_BYTES = 64 * 1024  # an agent's summary topics are < 1 KB; a giant one is not parsed
POWER_KEYS = ("grid_w", "load_w", "pv_w", "battery_w")
STATE_KEYS = (*POWER_KEYS, "soc_pct", "energy_wh", "capacity_wh")
SUMMED_KEYS = (*POWER_KEYS, "energy_wh", "capacity_wh")  # the fleet's SoC is energy over capacity, not a sum
SAVINGS_KEYS = ("net_savings", "energy_savings", "demand_savings", "degradation_cost", "discharge_kwh", "charge_kwh")


class PayloadError(ValueError):
    """A message that cannot be read; the text names the field at fault."""


@dataclass(frozen=True, slots=True)
class SiteState:
    id: str
    status: str | None = None  # what the agent's status topic says ("online"/"offline"), None: never heard
    state: dict[str, float | None] = field(default_factory=dict)  # STATE_KEYS, null = not measured
    mode: str | None = None
    t: str | None = None  # the site's own time of its last state (ISO, site offset)
    state_rx: float | None = None  # fleet monotonic time the last good state arrived
    alarms_active: int | None = None
    alarms_worst: str | None = None
    alarm_codes: tuple[str, ...] = ()
    savings: dict[str, Any] | None = None  # {"currency", "tariff", SAVINGS_KEYS...}
    errors: dict[str, str] = field(default_factory=dict)  # kind -> what was wrong with its last message
    messages: int = 0


def split_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """(site, kind) of a fleet topic under `prefix`, or None for anything else (other subtopics)."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    site, _, kind = topic[len(head) :].partition("/")
    return (site, kind) if site and kind in KINDS else None


def _obj(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"{len(raw)} bytes, more than {MAX_PAYLOAD_BYTES} (not read)")
    try:
        obj = json.loads(raw)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise PayloadError(f"not JSON ({str(e)[:80]})") from None
    except RecursionError:  # a hostile nesting depth
        raise PayloadError("not JSON (nested too deep)") from None
    if not isinstance(obj, dict):
        raise PayloadError(f"not a JSON object (a {type(obj).__name__})")
    if obj.get("v") != SCHEMA_VERSION:
        raise PayloadError(f"v: schema version {obj.get('v')!r}, this fleet reads {SCHEMA_VERSION}")
    return obj


def _number(obj: dict[str, Any], key: str) -> float | None:
    """A finite number or null (a value the agent did not measure)."""
    if key not in obj:
        raise PayloadError(f"{key}: missing")
    return None if obj[key] is None else _finite(obj, key)


def _finite(obj: dict[str, Any], key: str) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise PayloadError(f"{key}: {v!r} is not a finite number")
    return float(v)


def _text(obj: dict[str, Any], key: str, choices: tuple[str, ...] = ()) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or (choices and v not in choices):
        want = f"one of {', '.join(choices)}" if choices else "a string"
        raise PayloadError(f"{key}: {v!r} is not {want}")
    return v


def _parse(s: SiteState, kind: str, raw: bytes, now: float) -> SiteState:
    obj = _obj(raw)
    if kind == "status":
        return replace(s, status=_text(obj, "status", ("online", "offline")))
    if kind == "state":
        values = {k: _number(obj, k) for k in STATE_KEYS}
        mode = obj.get("mode")
        t = obj.get("t")
        return replace(
            s,
            state=values,
            mode=mode if isinstance(mode, str) else None,
            t=t if isinstance(t, str) else None,
            state_rx=now,
        )
    if kind == "alarm/active":
        n = _finite(obj, "active")
        if n < 0 or n != int(n):
            raise PayloadError(f"active: {n!r} is not a count")
        worst = obj.get("worst")
        if worst is not None and worst not in Severity.__members__.values():
            raise PayloadError(f"worst: {worst!r} is not a severity ({', '.join(Severity)})")
        codes = obj.get("codes", [])
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            raise PayloadError("codes: not a list of alarm codes")
        return replace(s, alarms_active=int(n), alarms_worst=worst, alarm_codes=tuple(codes))
    # savings
    currency = _text(obj, "currency")
    if not (len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise PayloadError(f"currency: {currency!r} is not an ISO 4217 code")
    tariff = obj.get("tariff")
    figures = {k: _number(obj, k) for k in SAVINGS_KEYS}
    return replace(s, savings={"currency": currency, "tariff": tariff if isinstance(tariff, str) else None, **figures})


def receive(s: SiteState, kind: str, raw: bytes, now: float) -> SiteState:
    """`s` with one message of `kind` applied, or with the error that message had (never raises)."""
    s = replace(s, messages=s.messages + 1)
    try:
        out = _parse(s, kind, raw, now)
    except PayloadError as e:
        return replace(s, errors={**s.errors, kind: f"{kind}: {e}"})
    return replace(out, errors={k: v for k, v in out.errors.items() if k != kind})


@dataclass(frozen=True, slots=True)
class SiteInfo:
    """A site the fleet file names: its label and the URL of its own dashboard."""

    id: str
    name: str
    url: str | None


def site_status(s: SiteState, now: float, stale_after_s: float) -> str:
    if s.status == "offline":
        return "offline"
    if s.messages == 0:
        return "missing"
    if s.errors:
        return "degraded"
    if s.state_rx is None or now - s.state_rx > stale_after_s:
        return "stale"
    return "online"


def site_view(s: SiteState, info: SiteInfo | None, now: float, stale_after_s: float) -> dict[str, Any]:
    status = site_status(s, now, stale_after_s)
    return {
        "id": s.id,
        "name": info.name if info is not None else s.id,
        "url": info.url if info is not None else None,
        "status": status,
        "age_s": now - s.state_rx if s.state_rx is not None else None,
        "t": s.t,
        **{k: s.state.get(k) for k in STATE_KEYS},
        "mode": s.mode,
        "alarms_active": s.alarms_active,
        "alarms_worst": s.alarms_worst,
        "alarm_codes": list(s.alarm_codes),
        "savings": s.savings,
        "errors": sorted(s.errors.values()),
        "in_sum": status == "online",
    }


def _value(sev: Severity | None) -> str | None:
    return sev.value if sev is not None else None


def fleet_sum(sites: list[dict[str, Any]]) -> dict[str, Any]:
    """The fleet's totals over site views: power and energy of the online sites (a value a site did
    not measure is left out and that site named under `unmeasured`), alarms of every site, and
    savings to date per currency."""
    live = [v for v in sites if v["in_sum"]]
    sums: dict[str, float | None] = {}
    unmeasured: dict[str, list[str]] = {}
    for k in SUMMED_KEYS:
        known = [v[k] for v in live if v[k] is not None]
        missing = [v["id"] for v in live if v[k] is None]
        sums[k] = math.fsum(known) if known else None
        if missing:
            unmeasured[k] = missing
    both = [v for v in live if v["energy_wh"] is not None and v["capacity_wh"]]
    cap = math.fsum(v["capacity_wh"] for v in both)
    sums["soc_pct"] = 100.0 * math.fsum(v["energy_wh"] for v in both) / cap if cap > 0 else None
    savings: dict[str, float] = {}
    for v in sites:
        sv = v["savings"]
        if sv is not None and sv["net_savings"] is not None:
            savings[sv["currency"]] = savings.get(sv["currency"], 0.0) + sv["net_savings"]
    counts: dict[str, int] = {}
    for v in sites:
        counts[v["status"]] = counts.get(v["status"], 0) + 1
    return {
        "sites": len(sites),
        "in_sum": len(live),
        "by_status": counts,
        **sums,
        "unmeasured": unmeasured,
        "alarms_active": sum(v["alarms_active"] or 0 for v in sites),
        "alarms_worst": _value(worst(Severity(v["alarms_worst"]) for v in sites if v["alarms_worst"] is not None)),
        "savings_to_date": dict(sorted(savings.items())),
    }


def fleet_view(
    states: dict[str, SiteState], listed: tuple[SiteInfo, ...], now: float, stale_after_s: float
) -> dict[str, Any]:
    """GET /api/fleet: the listed sites in the fleet file's order, then every other site heard of
    (by id), and the sums."""
    info = {i.id: i for i in listed}
    order = [i.id for i in listed] + sorted(k for k in states if k not in info)
    sites = [site_view(states.get(sid, SiteState(sid)), info.get(sid), now, stale_after_s) for sid in order]
    return {"stale_after_s": stale_after_s, "sites": sites, "sum": fleet_sum(sites)}
