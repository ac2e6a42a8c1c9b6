"""The campus files (agent/campus/config.py): the shipped example loads, and each mistake is refused
with the file and key named."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from agent.campus.allocate import CampusLimits, Share
from agent.campus.config import load_campus, parse_feeder
from agent.campus.coordinator import Coordinator
from agent.model.config import load_site
from common.tomlcheck import ConfigError
from tests.fakes import ROOT

EXAMPLE = ROOT / "agent" / "sites" / "campus_demo"


def test_the_example_campus_loads() -> None:
    c = load_campus(EXAMPLE / "CAMPUS.toml")
    assert c.id == "campus_demo"
    assert c.limits == CampusLimits(3_000_000.0, 300_000.0, 0.0)
    assert c.feeders == ("feeder_a", "feeder_b", "feeder_c")
    assert c.fallback["feeder_c"] == Share(900_000.0, 80_000.0, 0.0)
    assert c.meter.role == "grid" and c.meter.port == 16000
    fc = parse_feeder(load_site(EXAMPLE / "feeder_a.toml"))
    assert fc is not None and fc.stale_after_s == 6.0 and fc.broker.topic_prefix == "ems"
    assert "campus-demo-key" not in repr(fc)  # the key is never shown


@pytest.fixture
def campus(tmp_path: Path) -> Path:
    for f in EXAMPLE.iterdir():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("file", "old", "new", "error"),
    [
        ("CAMPUS.toml", "cycle_s = 1.0", "cycle_s = 0", r"\[campus\]: key 'cycle_s' must be >= 0.2"),
        ("CAMPUS.toml", 'role = "grid"', 'role = "load"', r"\[meter\]: key 'role' must be \"grid\""),
        (
            "CAMPUS.toml",
            "import_limit_w = 3_000_000",
            "import_limit_w = 2_000_000",
            r"sum to 2.7e\+06, above \[campus\] import_limit_w",
        ),
        ("CAMPUS.toml", 'key_file = "campus.key"', 'key_file = "nope.key"', r"\[mqtt\]: key 'key_file' cannot be read"),
        ("CAMPUS.toml", "stale_after_s = 3", "stale_after = 3", r"unknown key\(s\) 'stale_after'"),
        ("CAMPUS.toml", 'site = "feeder_c.toml"', 'site = "feeder_a.toml"', r"names site 'feeder_a' a second time"),
        ("feeder_b.toml", 'id = "campus_demo"', 'id = "other"', r"whose \[campus\] id is 'other'"),
        ("feeder_b.toml", "port = 1883", "port = 1884", r"feeder_b.toml \[campus\] key 'port' is 1884"),
        (
            "feeder_b.toml",
            "fallback_ramp_w_per_s = 80_000",
            "fallback_ramp_w_per_s = 0",
            r"feeder 'feeder_b' has no \[campus\] fallback_ramp",
        ),
        (
            "feeder_b.toml",
            "stale_after_s = 6",
            "stale_after_s = 5.5",
            r"feeder_b.toml \[campus\] key 'stale_after_s' is 5.5 s: it must be at least 6 s",
        ),
        (
            "feeder_b.toml",
            "stale_after_s = 6",
            "stale_after_s = 1",
            r"b.toml \[campus\]: key 'stale_after_s' must be >= 2",
        ),
        (
            "feeder_b.toml",
            'timezone = "Asia/Shanghai"',
            'timezone = "Asia/Shanghai"\ntariff = "shanghai_ci_two_part"',
            r"feeder_b.toml \[site\] tariff is .*shanghai_ci_two_part.toml, but .*feeder_a.toml has None: a"
            r" campus's feeders are billed on one tariff",
        ),
    ],
)
def test_mistakes_are_refused_naming_the_key(campus: Path, file: str, old: str, new: str, error: str) -> None:
    edit(campus / file, old, new)
    with pytest.raises(ConfigError, match=error):
        load_campus(campus / "CAMPUS.toml")


def test_a_feeder_with_another_key_is_refused(campus: Path) -> None:
    (campus / "other.key").write_text("another-campus-key-0123456789\n")
    edit(campus / "feeder_c.toml", 'key_file = "campus.key"', 'key_file = "other.key"')
    with pytest.raises(ConfigError, match=r"feeder_c.toml \[campus\] key 'key_file' holds a different key"):
        load_campus(campus / "CAMPUS.toml")


def test_a_short_key_is_refused_by_the_agent(campus: Path) -> None:
    (campus / "campus.key").write_text("short\n")
    with pytest.raises(ConfigError, match=r"\[campus\]: key 'key_file' must hold a key of at least 16 bytes"):
        parse_feeder(load_site(campus / "feeder_a.toml"))


def test_a_site_without_campus_has_no_link() -> None:
    assert parse_feeder(load_site(ROOT / "agent" / "sites" / "demo.toml")) is None
    assert re.search(r"^\[campus\]", (EXAMPLE / "feeder_a.toml").read_text(), flags=re.M)


def test_coordinate_exits_2_naming_the_key(campus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    edit(campus / "CAMPUS.toml", "ramp_limit_w_per_s = 300_000", "ramp_limit_w_per_s = -1")
    assert main(["coordinate", "--campus", str(campus / "CAMPUS.toml")]) == 2
    assert "[campus]: key 'ramp_limit_w_per_s' must be >= 0" in capsys.readouterr().err


def test_a_reload_may_only_narrow_the_fallback(campus: Path) -> None:
    """SIGHUP re-reads [campus] (agent/live/runtime.py): a lower fallback or a longer stale_after_s
    applies; what the coordinator checked at its start and does not re-read is refused, naming the key."""
    from agent.campus.config import check_reload

    f = campus / "feeder_a.toml"
    old = parse_feeder(load_site(f))

    def reloaded(key: str, value: str) -> None:  # `key` of the [campus] table set to `value`
        head, _, rest = f.read_text().partition("[campus]\n")
        table, nl, tail = rest.partition("\n[")
        table = re.sub(rf"^{key} = .*$", f"{key} = {value}", table, count=1, flags=re.M)
        f.write_text(f"{head}[campus]\n{table}{nl}{tail}")
        check_reload(old, parse_feeder(load_site(f)), str(f))

    reloaded("fallback_import_cap_w", "8e5")  # lower: applies
    reloaded("stale_after_s", "9")  # longer: applies
    with pytest.raises(ConfigError, match=r"feeder_a.toml \[campus\] key 'fallback_import_cap_w': 1e\+06 would widen"):
        reloaded("fallback_import_cap_w", "1e6")
    with pytest.raises(ConfigError, match=r"key 'fallback_import_cap_w': 0 would widen"):  # 0 is no limit
        reloaded("fallback_import_cap_w", "0")
    reloaded("fallback_import_cap_w", "9e5")
    with pytest.raises(ConfigError, match=r"key 'stale_after_s': 5 s is shorter than the running 6 s"):
        reloaded("stale_after_s", "5")
    reloaded("stale_after_s", "6")
    with pytest.raises(ConfigError, match=r"key 'id'.*needs a restart"):
        reloaded("id", '"campus_other"')
    reloaded("id", '"campus_demo"')
    with pytest.raises(ConfigError, match=r"the broker or key_file changed"):
        reloaded("port", "1884")
    with pytest.raises(ConfigError, match=r"\[campus\] removed: joining or leaving a campus needs a restart"):
        check_reload(old, None, str(f))


def test_the_feeders_tariff_is_the_campus_s(campus: Path) -> None:
    """One utility bill: the feeders' common tariff is the coordinator's, for the campus's recharge."""
    assert load_campus(campus / "CAMPUS.toml").tariff_path is None  # the demo's feeders have none
    for f in ("feeder_a.toml", "feeder_b.toml", "feeder_c.toml"):
        edit(campus / f, 'timezone = "Asia/Shanghai"', 'timezone = "Asia/Shanghai"\ntariff = "shanghai_ci_two_part"')
    cfg = load_campus(campus / "CAMPUS.toml")
    assert cfg.tariff_path is not None and cfg.tariff_path.name == "shanghai_ci_two_part.toml"
    assert Coordinator(cfg).prices is not None
