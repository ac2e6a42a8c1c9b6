"""Config fuzzing: every documented site-file key given a wrong type or an out-of-range value.

Documented keys: README (site, control, defaults, devices), API.md ([api]), TELEMETRY.md
([telemetry], [mqtt]) and agent/economics/roi.py's [economics]. `validate` runs the same checks
`ems-agent run` runs before starting anything (agent/live/runtime.py: load_site, then every section);
each bad value must raise ConfigError naming the file, the table and the key. The last tests run
the real command line and expect exit code 2 with that message and no traceback.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.api import api_config
from agent.economics.roi import economics_config
from agent.economics.tariff import load_tariff
from agent.model.config import load_site
from agent.mqtt import parse_mqtt
from agent.telemetry import parse_telemetry
from common.tomlcheck import ConfigError

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "agent" / "sites" / "demo.toml"
TARIFF = (DEMO.parent / "../economics/tariffs/shanghai_ci_two_part.toml").resolve()

# (table, key, kind, lo, hi): kind is number | positive (a number > lo) | integer | flag | text | texts |
# choice:<a,b>.
# lo/hi are the documented bounds (None: unbounded on that side). Tables "meter", "pcs", "cluster"
# mean the first [[meter]] / [[pcs]] / [[cluster]].
SPEC: list[tuple[str, str, str, float | None, float | None]] = [
    ("site", "id", "text", None, None),
    ("site", "timezone", "text", None, None),
    ("site", "cycle_s", "number", 0.2, 60),
    ("site", "allow_export", "flag", None, None),
    ("site", "stale_after_s", "number", 1.0, None),  # >= cycle_s (1 s in the demo)
    ("site", "tariff", "text", None, None),
    ("control", "soc_min_pct", "number", 0, 100),
    ("control", "soc_max_pct", "number", 0, 100),
    ("control", "reserve_load_w", "number", 0, None),
    ("control", "reserve_minutes", "number", 0, 1440),
    ("control", "ramp_limit_w_per_s", "number", 0, None),
    ("control", "demand_target_w", "number", 0, None),
    ("control", "demand_interval_s", "number", 60, 3600),
    ("control", "tou_enabled", "flag", None, None),
    ("control", "charge_efficiency", "number", 0.5, 1.0),
    ("control", "discharge_efficiency", "number", 0.5, 1.0),
    ("control", "degradation_cost_per_kwh", "number", 0, None),
    ("control", "soc_target_pct", "number", 20, 95),  # within [soc_min_pct, soc_max_pct] of the demo
    ("defaults", "host", "text", None, None),
    ("defaults", "timeout_s", "number", 0.01, 30),
    ("defaults", "retries", "integer", 0, 10),
    ("meter", "id", "text", None, None),
    ("meter", "role", "choice:grid,load,pv,rack", None, None),
    ("meter", "profile", "text", None, None),
    ("meter", "port", "integer", 1, 65535),
    ("meter", "unit", "integer", 0, 247),
    ("meter", "timeout_s", "number", 0.01, 30),
    ("meter", "retries", "integer", 0, 10),
    ("pcs", "rated_w", "positive", 0, None),
    ("pcs", "clusters", "texts", None, None),
    ("pcs", "port", "integer", 1, 65535),
    ("cluster", "capacity_wh", "positive", 0, None),
    ("cluster", "maintenance", "flag", None, None),
    ("cluster", "host", "text", None, None),
    ("api", "host", "text", None, None),
    ("api", "port", "integer", 0, 65535),
    ("api", "tokens_file", "text", None, None),
    ("api", "open_read", "flag", None, None),
    ("mqtt", "enabled", "flag", None, None),
    ("mqtt", "host", "text", None, None),
    ("mqtt", "port", "integer", 1, 65535),
    ("mqtt", "client_id", "text", None, None),
    ("mqtt", "topic_prefix", "text", None, None),
    ("mqtt", "secret_file", "text", None, None),
    ("mqtt", "buffer_messages", "integer", 1, 10_000_000),
    ("mqtt", "keepalive_s", "integer", 1, 3600),
    ("mqtt", "reconnect_min_s", "number", 0.01, 30),  # <= reconnect_max_s (30 by default)
    ("mqtt", "reconnect_max_s", "number", 0.5, 3600),  # >= reconnect_min_s (0.5 by default)
    ("mqtt", "max_skew_s", "number", 1, 3600),
    ("mqtt", "rack_load_topic", "text", None, None),
    ("mqtt", "racks", "texts", None, None),
    ("mqtt", "rack_stale_s", "number", 0.1, 3600),
    ("telemetry", "enabled", "flag", None, None),
    ("telemetry", "url", "text", None, None),
    ("telemetry", "timeout_s", "number", 0.1, 120),
    ("telemetry", "batch_points", "integer", 1, 1_000_000),
    ("telemetry", "flush_interval_s", "number", 0.01, 60),
    ("telemetry", "queue_records", "integer", 1, 1_000_000),
    ("telemetry", "spool_path", "text", None, None),
    ("telemetry", "spool_max_mb", "number", 0.001, 1_000_000),
    ("telemetry", "retry_min_s", "number", 0.01, 30),
    ("telemetry", "retry_max_s", "number", 0.5, 3600),
    ("telemetry", "local_path", "text", None, None),
    ("telemetry", "local_retention_h", "number", 0.01, 24 * 3650),
    ("telemetry", "local_interval_s", "number", 0.0, 3600),
    ("telemetry", "ledger_every_s", "number", 1, 86400),
    ("economics", "degradation_cost_per_kwh", "number", 0, None),
    ("economics", "outage_value_per_min", "number", 0, None),
    ("economics", "capex_per_cluster", "number", 0, None),
    ("economics", "capex_per_pcs", "number", 0, None),
    ("economics", "capex_installation", "number", 0, None),
    ("economics", "annual_opex", "number", 0, None),
    ("economics", "discount_rate", "number", 0, 1),
    ("economics", "project_life_years", "integer", 1, 50),
    ("economics", "min_coverage", "positive", 0, 1),
    ("economics", "max_hold_s", "number", 1.0, None),  # >= cycle_s
    ("economics", "trailing_days", "number", 1, 366),
]
DEVICE_TABLES = ("meter", "pcs", "cluster")
PARTNER = {"retry_min_s": "retry_max_s", "reconnect_min_s": "reconnect_max_s"}


# --- a small TOML writer (no tomli_w here): tables, arrays of tables, scalars, lists ------------
def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        # TOML basic strings take JSON's escapes for control characters; DEL must be escaped too
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_scalar(str(k))} = {_scalar(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def dump_toml(data: dict[str, Any]) -> str:
    out: list[str] = []
    for k, v in data.items():
        if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v)):
            out.append(f"{_scalar(k)} = {_scalar(v)}")
    for k, v in data.items():
        if isinstance(v, dict):
            out.append(f"\n[{k}]")
            out += [f"{_scalar(kk)} = {_scalar(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                out.append(f"\n[[{k}]]")
                out += [f"{_scalar(kk)} = {_scalar(vv)}" for kk, vv in item.items()]
    return "\n".join(out) + "\n"


def base_config() -> dict[str, Any]:
    data = tomllib.loads(DEMO.read_text())
    data["site"]["tariff"] = str(TARIFF)
    for t in ("api", "mqtt", "telemetry", "economics"):
        data.setdefault(t, {})
    return data


def table_of(data: dict[str, Any], table: str) -> dict[str, Any]:
    if table in DEVICE_TABLES:
        first: dict[str, Any] = data[table][0]
        return first
    sub: dict[str, Any] = data[table]
    return sub


def validate(path: Path, state_dir: Path) -> None:
    """What `ems-agent run` checks before it starts anything (agent/live/runtime.py Runtime.__init__)."""
    site = load_site(path)
    api_config(site)
    parse_telemetry(site, state_dir)
    if "mqtt" in site.sections:
        parse_mqtt(site)
    economics_config(site)
    if site.tariff_path is not None:
        load_tariff(site.tariff_path)


def test_the_base_config_and_every_documented_valid_value_pass(tmp_path: Path) -> None:
    """The table above is right: the base passes, and so does each key at each documented bound."""
    p = tmp_path / "site.toml"
    p.write_text(dump_toml(base_config()))
    validate(p, tmp_path)
    for table, key, kind, lo, hi in SPEC:
        if kind not in ("number", "integer", "positive"):
            continue
        for v in (lo, hi) if kind != "positive" else (hi,):
            if v is None:
                continue
            data = base_config()
            table_of(data, table)[key] = int(v) if kind == "integer" else float(v)
            if table == "control" and key in ("soc_min_pct", "soc_max_pct", "soc_target_pct"):
                continue  # the SoC keys are bounded by each other too (checked below)
            if table == "control" and key == "demand_interval_s":
                del data["site"]["tariff"]  # with a tariff it must be the tariff's (tests/test_interval.py)
            if (table, key) in (("site", "cycle_s"), ("control", "ramp_limit_w_per_s")):
                # the demo's fast lane needs a cycle longer than itself and a ramp limit (tests/test_config.py)
                data["control"].pop("fast_lane_s", None)
            p.write_text(dump_toml(data))
            validate(p, tmp_path)


def wrong_values(kind: str, lo: float | None, hi: float | None) -> st.SearchStrategy[Any]:
    not_number = st.one_of(
        st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2), st.just({"a": 1})
    )
    nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])
    if kind in ("number", "positive"):
        outside = []
        if lo is not None:
            outside.append(
                st.floats(max_value=lo, exclude_max=kind == "number", allow_nan=False, allow_infinity=False)
            )
        if hi is not None:
            outside.append(st.floats(min_value=hi, exclude_min=True, allow_nan=False, allow_infinity=False))
        return st.one_of(not_number, nonfinite, *outside)
    if kind == "integer":
        outside = [st.floats()]  # a float is never an integer here, even 3.0
        if lo is not None:
            outside.append(st.integers(max_value=int(lo) - 1, min_value=-(2**63)))
        if hi is not None:
            outside.append(st.integers(min_value=int(hi) + 1, max_value=2**63 - 1))
        return st.one_of(not_number, *outside)
    if kind == "flag":
        return st.one_of(st.integers(), st.text(max_size=5), st.floats(), st.lists(st.booleans(), max_size=2))
    if kind == "texts":
        return st.one_of(
            st.text(max_size=5), st.integers(), st.lists(st.integers(), min_size=1, max_size=2), st.just([""])
        )
    # text and choice: wrong types, the empty string; choices also an unknown word
    bad = st.one_of(st.integers(), st.floats(), st.booleans(), st.lists(st.text(max_size=3), max_size=2), st.just(""))
    if kind.startswith("choice:"):
        choices = kind.split(":")[1].split(",")
        bad = st.one_of(bad, st.text(min_size=1, max_size=8).filter(lambda s: s not in choices))
    return bad


@st.composite
def bad_configs(draw: st.DrawFn) -> tuple[str, str, Any]:
    table, key, kind, lo, hi = draw(st.sampled_from(SPEC))
    return table, key, draw(wrong_values(kind, lo, hi))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(bad=bad_configs())
def test_every_documented_key_wrong_type_or_range_is_a_clear_error(tmp_path: Path, bad: tuple[str, str, Any]) -> None:
    table, key, value = bad
    data = base_config()
    table_of(data, table)[key] = value
    p = tmp_path / "site.toml"
    p.write_text(dump_toml(data))
    with pytest.raises(ConfigError) as e:
        validate(p, tmp_path)
    msg = str(e.value)
    assert msg.startswith(str(p)), msg
    names = {key, PARTNER.get(key, key)}  # a min past its max may be reported on the max
    assert any(f"'{k}'" in msg for k in names), (key, value, msg)
    assert "\n" not in msg and "Traceback" not in msg


@pytest.mark.parametrize("table", ["site", "control", "defaults", "meter", "pcs", "cluster", "api", "mqtt",
                                   "telemetry", "economics"])
def test_an_unknown_key_in_every_table_is_named(tmp_path: Path, table: str) -> None:
    data = base_config()
    table_of(data, table)["cylce_s"] = 1.0  # a typo
    p = tmp_path / "site.toml"
    p.write_text(dump_toml(data))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) 'cylce_s'") as e:
        validate(p, tmp_path)
    assert str(e.value).startswith(str(p))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(junk=st.binary(max_size=300))
def test_a_file_that_is_not_toml_is_a_clear_error(tmp_path: Path, junk: bytes) -> None:
    p = tmp_path / "site.toml"
    p.write_bytes(junk)
    with pytest.raises(ConfigError) as e:
        validate(p, tmp_path)
    assert str(e.value).startswith(str(p))


def test_cross_key_rules_name_the_key(tmp_path: Path) -> None:
    cases = [
        ("control", {"soc_min_pct": 80, "soc_max_pct": 70}, "soc_min_pct"),
        ("control", {"soc_target_pct": 99}, "soc_target_pct"),
        ("mqtt", {"reconnect_min_s": 10, "reconnect_max_s": 5}, "reconnect_max_s"),
        ("telemetry", {"retry_min_s": 10, "retry_max_s": 5}, "retry_max_s"),
        ("telemetry", {"url": "http://127.0.0.1:1"}, "org"),
        ("mqtt", {"rack_load_topic": "dc/#"}, "rack_load_topic"),
        ("site", {"stale_after_s": 0.5}, "stale_after_s"),
        ("economics", {"max_hold_s": 0.5}, "max_hold_s"),
    ]
    for table, values, key in cases:
        data = base_config()
        table_of(data, table).update(values)
        p = tmp_path / "site.toml"
        p.write_text(dump_toml(data))
        with pytest.raises(ConfigError, match=f"'{key}'"):
            validate(p, tmp_path)


# --- the real command line -----------------------------------------------------------------------
@pytest.mark.parametrize(("table", "key", "value"), [("mqtt", "port", 70000)])
def test_ems_agent_run_exits_2_with_the_key_and_no_traceback(tmp_path: Path, table: str, key: str, value: Any) -> None:
    """One run per table family is slow (~5 s: the agent's imports); the site tables are already
    covered by tests/test_config.py, so this one checks a section that Runtime validates."""
    data = base_config()
    table_of(data, table)[key] = value
    p = tmp_path / "bad.toml"
    p.write_text(dump_toml(data))
    env = {**os.environ, "EMS_STATE_DIR": str(tmp_path / "var")}
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--site", str(p), "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "config error" in r.stderr and f"'{key}'" in r.stderr and str(p) in r.stderr
    assert "Traceback" not in r.stderr
