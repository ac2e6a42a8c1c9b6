"""MQTT pieces without a broker: rack-load source, command authentication, the [mqtt] table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from agent.mqtt import AuthError, RackLoad, Verifier, canonical, parse_mqtt, sign
from common.tomlcheck import ConfigError
from drivers.reading import Quality
from tests.fakes import demo_site

KEY = b"k" * 32


def test_rack_load_sums_racks_and_flags_stale_and_missing() -> None:
    src = RackLoad("dc/rack/+/power", stale_s=3.0, expected=("r1", "r2"))
    assert src.reading(0.0).quality is Quality.COMM_ERROR and math.isnan(src.reading(0.0).value)
    assert src.on_message("dc/rack/r1/power", b"120000.5", 10.0)
    assert src.reading(10.0).quality is Quality.COMM_ERROR  # r2 never heard: a partial sum would lie
    assert src.on_message("dc/rack/r2/power", b'{"power_w": 80000}', 11.0)
    m = src.reading(12.0)
    assert (m.value, m.quality, m.age_s) == (200000.5, Quality.GOOD, 2.0)
    m = src.reading(13.5)  # r1 is now 3.5 s old
    assert (m.value, m.quality, m.age_s) == (200000.5, Quality.STALE, 3.5)
    assert src.per_rack(13.5)["r2"].quality is Quality.GOOD
    for topic, payload in [
        ("dc/rack/r1/power", b"-5"),
        ("dc/rack/r1/power", b"NaN"),
        ("dc/rack/r1/power", b'"12"'),
        ("dc/rack/r1/power", b"{bad"),
        ("dc/rack/r9/power", b"1000"),  # not an expected rack
        ("dc/rack/r1/energy", b"1000"),
        ("dc/rack/r1", b"1000"),
    ]:
        assert not src.on_message(topic, payload, 14.0)
    assert src.bad_messages == 7
    assert src.reading(14.0).value == 200000.5  # bad messages changed nothing
    free = RackLoad("pdu/+/w", stale_s=1.0)
    free.on_message("pdu/a/w", b'{"w": 10}', 0.0)
    free.on_message("pdu/b/w", b"5", 0.5)
    assert free.reading(1.0).value == 15.0 and free.reading(1.0).quality is Quality.GOOD


def _msg(**over: Any) -> dict[str, Any]:
    m: dict[str, Any] = {
        "id": "1",
        "actor": "a",
        "ts": 1000.0,
        "nonce": "n-00000001",
        "command": {"command": "x"},
    }
    m.update(over)
    return m


def test_verifier_checks_signature_time_and_nonce() -> None:
    v = Verifier(KEY, max_skew_s=30.0)
    assert "k" * 8 not in repr(v)
    v.verify(sign(KEY, _msg()), now_epoch=1010.0)
    with pytest.raises(AuthError, match="replayed"):
        v.verify(sign(KEY, _msg()), now_epoch=1011.0)
    with pytest.raises(AuthError, match=r"stale: timestamp is \+31.0 s"):
        v.verify(sign(KEY, _msg(nonce="n-00000002", ts=1041.0)), now_epoch=1010.0)
    with pytest.raises(AuthError, match="malformed: 'nonce'"):
        v.verify(sign(KEY, _msg(nonce="short")), now_epoch=1000.0)
    with pytest.raises(AuthError, match="malformed: 'ts'"):
        v.verify(sign(KEY, _msg(nonce="n-00000003", ts="soon")), now_epoch=1000.0)
    forged = sign(KEY, _msg(nonce="n-00000004"))
    forged["actor"] = "root"
    with pytest.raises(AuthError, match="unauthenticated: signature does not match"):
        v.verify(forged, now_epoch=1000.0)
    # After the replay window the nonce is forgotten, but the timestamp check refuses the old message.
    with pytest.raises(AuthError, match="stale"):
        v.verify(sign(KEY, _msg()), now_epoch=1100.0)
    assert canonical({"b": 1, "a": [1.5, "x"], "sig": "zz"}) == b'{"a":[1.5,"x"],"b":1}'


def test_mqtt_config_defaults_and_errors(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_bytes(b"0123456789abcdef\n")
    cfg = parse_mqtt(demo_site({"mqtt": {"secret_file": str(secret), "rack_load_topic": "dc/+/w"}}))
    assert (cfg.host, cfg.port, cfg.client_id, cfg.topic_prefix) == (
        "127.0.0.1",
        1883,
        "ems-agent-demo",
        "ems",
    )
    assert cfg.secret == b"0123456789abcdef" and cfg.rack_stale_s == 3.0
    short = tmp_path / "short"
    short.write_bytes(b"abc")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"secret_file": str(short)}, "key 'secret_file' must hold a secret of at least 16 bytes"),
        ({"secret_file": str(tmp_path / "none")}, "key 'secret_file' cannot be read"),
        ({"rack_load_topic": "dc/rack/power"}, "key 'rack_load_topic' must contain exactly one '+'"),
        ({"rack_load_topic": "dc/+/#"}, "key 'rack_load_topic'"),
        ({"topic_prefix": "ems/#"}, "key 'topic_prefix'"),
        ({"port": 0}, "key 'port'"),
        ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "key 'reconnect_max_s'"),
        ({"secret": "inline"}, "unknown key(s) 'secret'"),
    ]
    for table, msg in cases:
        with pytest.raises(ConfigError) as e:
            parse_mqtt(demo_site({"mqtt": table}))
        assert "[mqtt]" in str(e.value) and msg in str(e.value)
        assert "abc" not in str(e.value).split(":")[-1]
