"""Site file validation: every error names the file, the table and the key; the CLI exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.model.config import load_site, pcs_of
from common.tomlcheck import ConfigError

DEMO = Path(__file__).resolve().parents[1] / "agent" / "sites" / "demo.toml"

MINIMAL = """
[site]
id = "t"
[[meter]]
id = "grid"
role = "grid"
profile = "meter_sunspec_203"
port = 1502
[[pcs]]
id = "p1"
profile = "pcs_sunspec_70x"
port = 1503
rated_w = 100000
clusters = ["c1"]
[[cluster]]
id = "c1"
profile = "bms_sunspec_802"
port = 1504
capacity_wh = 418000
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.toml"
    p.write_text(text)
    return p


def test_demo_site_loads() -> None:
    site = load_site(DEMO)
    assert len(site.clusters) == 12 and len(site.pcs) == 4
    assert site.pcs[3].profile == "pcs_vendor_acme"
    assert pcs_of(site)["c07"] == "pcs3"
    assert site.control.reserve_load_w == 300_000.0
    assert site.stale_after_s == 3.0
    assert site.timezone.key == "Asia/Shanghai"


def test_minimal_defaults(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, MINIMAL))
    assert site.cycle_s == 1.0 and not site.allow_export
    assert site.clusters[0].unit == 1 and site.clusters[0].timeout_s == 0.3


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.replace('id = "t"', 'id = "t"\ncycle_s = 0.1'), "[site]: key 'cycle_s' must be >= 0.2"),
        (lambda s: s.replace("capacity_wh = 418000", "capacity_wh = -5"), "key 'capacity_wh' must be > 0"),
        (lambda s: s.replace("port = 1504", 'port = "x"'), "[[cluster]] #1: key 'port' must be an integer"),
        (lambda s: s.replace('role = "grid"', 'role = "sun"'), "key 'role' must be one of grid, load, pv, rack"),
        (lambda s: s.replace('clusters = ["c1"]', 'clusters = ["c9"]'), "names unknown cluster 'c9'"),
        (lambda s: s.replace("port = 1504", "port = 1503"), "share 127.0.0.1:1503 unit 1"),
        (lambda s: s + "\n[control]\nsoc_min_pct = 96\n", "key 'soc_min_pct' must be below soc_max_pct"),
        (lambda s: s + "\n[control]\nsoc_mni_pct = 5\n", "unknown key(s) 'soc_mni_pct'"),
        (lambda s: s.replace('id = "t"', 'id = "t"\ntimezone = "Mars/Base"'), "key 'timezone' is not a known"),
        (lambda s: s.replace('id = "t"', 'id = "t"\ntariff = "nope.toml"'), "key 'tariff' names a file"),
        (lambda s: s.replace("[site]", "[site\n"), "not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, edit: object, message: str) -> None:
    p = write(tmp_path, edit(MINIMAL))  # type: ignore[operator]
    with pytest.raises(ConfigError) as e:
        load_site(p)
    assert str(p) in str(e.value)
    assert message in str(e.value)


def test_cluster_not_behind_any_pcs(tmp_path: Path) -> None:
    text = MINIMAL + '\n[[cluster]]\nid = "c2"\nprofile = "bms_sunspec_802"\nport = 1505\ncapacity_wh = 1\n'
    with pytest.raises(ConfigError, match="cluster 'c2' is not listed in any"):
        load_site(write(tmp_path, text))


def test_with_clusters_spreads_round_robin() -> None:
    site = load_site(DEMO).with_clusters(6)
    assert [p.clusters for p in site.pcs] == [("c01", "c05"), ("c02", "c06"), ("c03",), ("c04",)]


def test_cli_bad_site_exits_2_without_traceback(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL.replace("capacity_wh = 418000", "capacity_wh = 0"))
    r = subprocess.run(
        [sys.executable, "-m", "agent.cli", "run", "--site", str(p)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert f"{p}" in r.stderr and "capacity_wh" in r.stderr


def test_a_bare_tariff_name_is_a_shipped_tariff(tmp_path: Path) -> None:
    p = write(tmp_path, MINIMAL.replace('id = "t"', 'id = "t"\ntariff = "pge_e20_secondary_2014"'))
    site = load_site(p)
    assert site.tariff_path is not None and site.tariff_path.name == "pge_e20_secondary_2014.toml"
    assert site.tariff_path.is_file()
    bad = write(tmp_path, MINIMAL.replace('id = "t"', 'id = "t"\ntariff = "pge_e99"'))
    shipped = r"key 'tariff' names a file .*pge_e99.toml \(shipped: .*shanghai_ci_two_part"
    with pytest.raises(ConfigError, match=shipped):
        load_site(bad)


PCC_PCS = MINIMAL.replace('profile = "pcs_sunspec_70x"', 'profile = "pcs_vendor_acme_pcc"\ngrid_control = "pcc"')


def test_grid_control_pcc_loads_with_a_profile_a_grid_meter_and_a_ramp_limit(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, PCC_PCS + "[control]\nramp_limit_w_per_s = 200000\n"))
    assert [p.grid_control for p in site.pcs] == ["pcc"]
    assert load_site(write(tmp_path, MINIMAL)).pcs[0].grid_control == "setpoint"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            PCC_PCS.replace('grid_control = "pcc"', 'grid_control = "meter"') + "[control]\nramp_limit_w_per_s = 1\n",
            r"\[\[pcs\]\].*'grid_control'.*one of setpoint, pcc, got 'meter'",
        ),
        (
            PCC_PCS.replace("pcs_vendor_acme_pcc", "pcs_sunspec_70x") + "[control]\nramp_limit_w_per_s = 1\n",
            r"'grid_control'.*profile 'pcs_sunspec_70x' has no grid-power control points \(pcc_enable, ",
        ),
        (PCC_PCS, r"\[\[pcs\]\] 'p1' key 'grid_control' is \"pcc\" but \[control\] ramp_limit_w_per_s is 0"),
        (
            PCC_PCS.replace('role = "grid"', 'role = "load"') + "[control]\nramp_limit_w_per_s = 1\n",
            r"\[\[pcs\]\] 'p1' key 'grid_control' is \"pcc\" but the site has no \[\[meter\]\] with role = \"grid\"",
        ),
    ],
)
def test_grid_control_errors_name_the_pcs_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_site(write(tmp_path, text))


def test_ramp_headroom_is_read_and_must_not_be_negative(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, MINIMAL + "[control]\nramp_limit_w_per_s = 200000\nramp_headroom_w = 400000\n"))
    assert site.control.ramp_headroom_w == 400_000.0
    assert load_site(write(tmp_path, MINIMAL)).control.ramp_headroom_w == 0.0
    with pytest.raises(ConfigError, match=r"\[control\].*ramp_headroom_w"):
        load_site(write(tmp_path, MINIMAL + "[control]\nramp_headroom_w = -1\n"))


LOAD_METER = '[[meter]]\nid = "gpu"\nrole = "load"\nprofile = "rack_load_vendor"\nport = 1505\n'


def test_fast_lane_is_off_unless_set(tmp_path: Path) -> None:
    assert load_site(write(tmp_path, MINIMAL)).control.fast_lane_s == 0.0
    text = MINIMAL + LOAD_METER + "[control]\nramp_limit_w_per_s = 200000\nfast_lane_s = 0.2\n"
    site = load_site(write(tmp_path, text))
    assert site.control.fast_lane_s == 0.2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            MINIMAL + LOAD_METER + "[control]\nramp_limit_w_per_s = 1\nfast_lane_s = 0.01\n",
            r"\[control\].*'fast_lane_s'.*must be 0 \(off\) or at least 0.05 s, got 0.01",
        ),
        (
            MINIMAL + LOAD_METER + "[control]\nramp_limit_w_per_s = 1\nfast_lane_s = 2\n",
            r"\[control\].*'fast_lane_s'.*must be >= 0 and <= 1",
        ),
        (
            MINIMAL.replace("[site]\n", "[site]\ncycle_s = 0.5\n") + LOAD_METER
            + "[control]\nramp_limit_w_per_s = 1\nfast_lane_s = 0.5\n",
            r"\[control\] fast_lane_s = 0.5 must be shorter than \[site\] cycle_s \(0.5 s\)",
        ),
        (
            MINIMAL + LOAD_METER + "[control]\nfast_lane_s = 0.2\n",
            r"\[control\] fast_lane_s = 0.2 but \[control\] ramp_limit_w_per_s is 0",
        ),
        (
            MINIMAL + "[control]\nramp_limit_w_per_s = 1\nfast_lane_s = 0.2\n",
            r"fast_lane_s = 0.2 needs a \[\[meter\]\] with role = \"grid\" and one with role = \"load\"",
        ),
    ],
)
def test_fast_lane_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_site(write(tmp_path, text))
