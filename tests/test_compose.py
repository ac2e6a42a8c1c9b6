"""The deployment set, statically: compose services, pinned images, ports, volumes, env, mounted
files; Grafana dashboards valid and consistent with the provisioned datasource and the schema;
the edge install files."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from agent.economics.ledger import Ledger
from agent.economics.roi import economics_config
from agent.economics.tariff import load_tariff
from agent.fleet.config import load_fleet
from agent.live.hub import PlanTarget
from agent.model.config import load_site
from agent.model.snapshot import Measured
from agent.mqtt import parse_mqtt
from agent.telemetry import parse_telemetry
from agent.telemetry.schema import MEASUREMENTS, ledger_point, points_for
from tests.fakes import ROOT, Cycles

COMPOSE = ROOT / "docker-compose.yml"
DASHBOARDS = sorted((ROOT / "dashboards" / "grafana").glob("*.json"))
PINNED = re.compile(r"^[\w./-]+:(\d+\.\d+(\.\d+)?)([-\w.]*)?$|@sha256:[0-9a-f]{64}$")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def env_example() -> dict[str, str]:
    out = {}
    for line in (ROOT / "deploy" / "env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, v = line.split("=", 1)
            out[k] = v
    return out


def test_services_images_ports_and_volumes() -> None:
    c = compose()
    svc = c["services"]
    assert set(svc) == {"influxdb", "grafana", "mosquitto", "simulators", "agent"}
    assert svc["influxdb"]["image"] == "influxdb:2.7.10"
    for name, s in svc.items():
        assert "image" in s, name
        assert PINNED.search(s["image"]), f"{name}: image {s['image']!r} is not pinned to a version"
        assert "latest" not in s["image"]
        for p in s.get("ports", []):
            assert p.startswith("127.0.0.1:"), f"{name}: port {p} is published beyond loopback"
    assert svc["simulators"]["build"] == "."
    assert svc["agent"]["image"] == svc["simulators"]["image"]
    assert svc["agent"]["network_mode"] == "service:simulators"
    assert svc["agent"]["command"][:3] == ["run", "--site", "/etc/ems/site.toml"]
    assert svc["simulators"]["command"][:3] == ["simulate", "--site", "/etc/ems/site.toml"]
    assert {p.split(":")[-1] for s in svc.values() for p in s.get("ports", [])} == {
        "8086",
        "3000",
        "1883",
        "8080",
    }
    named = set(c["volumes"])
    for name, s in svc.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (ROOT / src).exists(), f"{name}: mounts {src}, which does not exist"
            else:
                assert src in named, f"{name}: volume {src} is not declared"
    assert (ROOT / "Dockerfile").read_text().splitlines()[1].startswith("FROM python:3.11.10-slim")


def test_env_and_secrets_come_from_the_env_file() -> None:
    c = compose()
    env = env_example()
    used = set(re.findall(r"\$\{(\w+)", COMPOSE.read_text()))
    for var in used:
        assert var in env, f"docker-compose.yml uses ${{{var}}}, which deploy/env.example does not define"
    influx = c["services"]["influxdb"]["environment"]
    for k in ("DOCKER_INFLUXDB_INIT_ORG", "DOCKER_INFLUXDB_INIT_BUCKET", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"):
        assert influx[k].startswith("${"), k
    assert c["secrets"] == {
        "influx_token": {"environment": "INFLUX_TOKEN"},
        "mqtt_secret": {"environment": "EMS_MQTT_SECRET"},
    }
    assert set(c["services"]["agent"]["secrets"]) == {"influx_token", "mqtt_secret"}


def test_compose_site_points_at_the_services_and_secrets(tmp_path: Path) -> None:
    site = load_site(ROOT / "deploy" / "compose-site.toml")
    tel, mq = site.sections["telemetry"], site.sections["mqtt"]
    assert tel["url"] == "http://influxdb:8086" and tel["token_file"] == "/run/secrets/influx_token"
    assert mq["host"] == "mosquitto" and mq["secret_file"] == "/run/secrets/mqtt_secret"
    env = env_example()
    assert (tel["org"], tel["bucket"]) == (env["INFLUX_ORG"], env["INFLUX_BUCKET"])
    assert len(site.clusters) == 12 and {d.host for d in site.devices} == {"127.0.0.1"}


def test_edge_install_files(tmp_path: Path) -> None:
    unit = (ROOT / "deploy" / "ems-agent.service").read_text()
    assert "ExecStart=/opt/ems-agent/bin/ems-agent run --site /etc/ems-agent/site.toml" in unit
    assert "Restart=always" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    for section in ("[Unit]", "[Service]", "[Install]"):
        assert section in unit
    # The example site validates completely once its secret files are in place.
    shutil.copy(ROOT / "deploy" / "edge-site.toml", tmp_path / "site.toml")
    (tmp_path / "influx.token").write_text("token-for-the-test\n")
    (tmp_path / "mqtt.secret").write_text("0123456789abcdef0123\n")
    site = load_site(tmp_path / "site.toml")
    tel = parse_telemetry(site, tmp_path / "state")
    mq = parse_mqtt(site)
    assert tel.influx is not None and tel.influx.token == "token-for-the-test"
    assert mq.rack_load_topic == "dc-east-1/pdu/+/power_w" and len(mq.racks) == 8
    conf = (ROOT / "deploy" / "mosquitto.conf").read_text()
    assert "listener 1883" in conf


def _schema_fields(make_hub: Any, tmp: Path) -> dict[str, set[str]]:
    """Every (measurement, field) one fully populated cycle writes, and the ledger's read-out."""
    hub = make_hub()
    hub.site = replace(hub.site, control=replace(hub.site.control, demand_target_w=1e6))
    t = datetime(2026, 7, 1, tzinfo=UTC)
    hub.alarms.raise_("device_comm", "y", "m", t)
    rec = replace(Cycles(hub, t).next(), planned=PlanTarget(55.0, 1e6))  # a dispatch plan tracked
    fields: dict[str, set[str]] = {}
    agent = {"queue_depth": 0.0, "queue_dropped": 0.0, "spool_points": 0.0, "spool_bytes": 0.0}
    agent |= {"spool_dropped": 0.0, "rejected_points": 0.0}
    pts = points_for(rec, "demo", [(hub.alarms.active()[0], True)], agent, {"r": Measured(1.0)}, 1.0, 1e6)
    site = hub.site
    assert site.tariff_path is not None
    report = Ledger(tmp / "ledger.db", load_tariff(site.tariff_path), economics_config(site)).report(12, 4)
    pts.append(ledger_point(report, "demo", t))
    for p in pts:
        fields.setdefault(p.measurement, set()).update(p.fields)
    return fields


def test_dashboards_use_the_datasource_and_the_schema(make_hub: Any, tmp_path: Path) -> None:
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/influxdb.yml").read_text())
    uid = ds["datasources"][0]["uid"]
    assert ds["datasources"][0]["jsonData"]["version"] == "Flux"
    prov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/ems.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    schema = _schema_fields(make_hub, tmp_path)
    assert DASHBOARDS
    titles: list[str] = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            titles.append(panel["title"])
            assert panel["datasource"]["uid"] == uid, (path.name, panel["title"])
            for t in panel["targets"]:
                assert t["datasource"]["uid"] == uid
                q = t["query"]
                ms = re.findall(r'r\._measurement == "(\w+)"', q)
                assert len(ms) == 1 and ms[0] in MEASUREMENTS, (panel["title"], ms)
                for f in re.findall(r'r\._field == "(\w+)"', q):
                    assert f in schema[ms[0]], (
                        f"{path.name} '{panel['title']}': {ms[0]}.{f} is not in the schema"
                    )
    text = " ".join(titles).lower()
    for need in ("power flow", "ramp", "15-minute demand", "soc", "limits", "state", "cycle time", "savings"):
        assert need in text, need


def test_fleet_dashboard_sums_the_selected_sites_and_splits_per_site(make_hub: Any, tmp_path: Path) -> None:
    """dashboards/grafana/ems-fleet.json (issue 16): a multi-valued `site` variable (all by default),
    every query over the selected sites, summed panels that sum per window after each site's own
    mean (cycles of different agents are not aligned), per-site panels keyed by the site tag with a
    drill-down into the site dashboard, and savings never summed (sites bill in other currencies)."""
    dash = json.loads((ROOT / "dashboards/grafana/ems-fleet.json").read_text())
    site_dash = json.loads((ROOT / "dashboards/grafana/ems-site.json").read_text())
    var = next(v for v in dash["templating"]["list"] if v["name"] == "site")
    assert var["multi"] is True and var["includeAll"] is True and var["current"]["value"] == ["$__all"]
    assert 'tag: "site"' in var["query"]
    assert dash["uid"] != site_dash["uid"]
    drill = f"/d/{site_dash['uid']}/"
    summed, per_site = [], []
    for panel in dash["panels"]:
        for t in panel["targets"]:
            q = t["query"]
            assert "contains(value: r.site, set: ${site:json})" in q, panel["title"]
            if "sum()" in q:
                assert q.index("aggregateWindow") < q.index('group(columns: ["_field", "_time"])') < q.index("sum()")
                summed.append(panel["title"])
            else:
                assert '"site"' in q.split("keep(columns:")[1], panel["title"]  # one series or row per site
                per_site.append(panel["title"])
                links = panel["fieldConfig"]["defaults"]["links"]
                assert links and all(lk["url"].startswith(drill) and "var-site=${__field.labels.site}" in lk["url"]
                                     for lk in links), panel["title"]  # fmt: skip
        if "savings" in panel["title"].lower():
            assert all("sum()" not in t["query"] for t in panel["targets"]), "savings summed across currencies"
    assert any("power flow" in t.lower() for t in summed) and any("energy stored" in t.lower() for t in summed)
    for need in ("grid import per site", "battery power per site", "soc per site", "alarms per site", "savings"):
        assert any(need in t.lower() for t in per_site), need
    # provisioned like the site dashboard: the provider loads every json in the mounted folder
    assert "./dashboards/grafana:/var/lib/grafana/dashboards:ro" in compose()["services"]["grafana"]["volumes"]


def test_emqx_override_clusters_the_broker_bridges_the_site_and_runs_the_fleet_view() -> None:
    """docker-compose.emqx.yml (issue 16): two EMQX nodes in one static cluster, the site's
    mosquitto bridged to them (the override replaces its config, same mount target), the fleet
    view on the cluster reading the topics the compose agent publishes."""
    base = compose()
    over: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.emqx.yml").read_text())
    svc = over["services"]
    assert set(svc) == {"emqx1", "emqx2", "mosquitto", "fleet"}
    nodes = {}
    for name in ("emqx1", "emqx2"):
        s = svc[name]
        assert PINNED.search(s["image"]) and s["image"] == svc["emqx1"]["image"], name
        env = s["environment"]
        host = env["EMQX_NODE_NAME"].split("@", 1)[1]
        assert "." in host and s["hostname"] == host and s["networks"]["default"]["aliases"] == [host], name
        assert env["EMQX_CLUSTER__DISCOVERY_STRATEGY"] == "static"
        assert env["EMQX_NODE__COOKIE"] == "${EMQX_COOKIE}" and env["EMQX_DASHBOARD__DEFAULT_PASSWORD"].startswith("${")
        nodes[name] = env["EMQX_NODE_NAME"]
        assert s["healthcheck"]["test"][:2] == ["CMD", "/opt/emqx/bin/emqx"]
    for name in ("emqx1", "emqx2"):
        assert svc[name]["environment"]["EMQX_CLUSTER__STATIC__SEEDS"] == f"[{nodes['emqx1']},{nodes['emqx2']}]"
    published = [p for s in svc.values() for p in s.get("ports", [])]
    assert all(p.startswith("127.0.0.1:") for p in published), published
    base_host_ports = {p.split(":")[1] for s in base["services"].values() for p in s.get("ports", [])}
    assert not base_host_ports & {p.split(":")[1] for p in published}, "a host port used twice"
    for s in svc.values():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            assert (ROOT / src).exists() if src.startswith(".") else src in over["volumes"], v
    env_file = env_example()
    for var in re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.emqx.yml").read_text()):
        assert var in env_file, f"docker-compose.emqx.yml uses ${{{var}}}, which deploy/env.example does not define"

    # the site's broker: same mount target as the base file, so its config is replaced by the bridge's
    target = "/mosquitto/config/mosquitto.conf"
    assert any(v.split(":")[1] == target for v in base["services"]["mosquitto"]["volumes"])
    bridge_mount = next(v for v in svc["mosquitto"]["volumes"] if v.split(":")[1] == target)
    bridge = (ROOT / bridge_mount.split(":")[0]).read_text().splitlines()
    site = load_site(ROOT / "deploy" / "compose-site.toml")
    prefix = site.sections["mqtt"]["topic_prefix"]
    hosts = [nodes["emqx1"], nodes["emqx2"]]
    assert "listener 1883 0.0.0.0" in bridge and "connection fleet" in bridge
    assert f"address {hosts[0].split('@')[1]}:1883 {hosts[1].split('@')[1]}:1883" in bridge
    assert f"topic {prefix}/# out 1" in bridge and "cleansession false" in bridge
    assert not any(line.startswith("topic") and " in " in f" {line} " for line in bridge), "commands bridged in"

    # the fleet view: the agents' image, on a cluster node, the compose agent's prefix and site
    fleet = svc["fleet"]
    assert fleet["image"] == base["services"]["agent"]["image"]
    assert fleet["command"] == ["fleet", "--fleet", "/etc/ems/fleet.toml"]
    src = next(v.split(":")[0] for v in fleet["volumes"] if v.split(":")[1] == "/etc/ems/fleet.toml")
    cfg = load_fleet(ROOT / src)
    assert cfg.host in {h.split("@")[1] for h in hosts} and cfg.port == 1883
    assert cfg.topic_prefix == prefix and [s.id for s in cfg.sites] == [site.id]
    assert fleet["ports"] == [f"127.0.0.1:{cfg.http_port}:{cfg.http_port}"]
    assert fleet["depends_on"]["emqx1"]["condition"] == "service_healthy"
