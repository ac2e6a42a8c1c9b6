"""The fleet view: many sites on one page, from the agents' retained MQTT topics.

    ems-agent fleet --fleet FLEET.toml      # agent/fleet/config.py describes the file

- config.py: the fleet file;
- state.py: pure parsing of each site's status/state/alarm/active/savings and the fleet's sums;
- subscriber.py: one aiomqtt client with wildcard subscriptions feeding `FleetState`;
- app.py: GET /api/fleet and the page (agent/static/fleet.html);
- serve.py: the process (subscriber + HTTP server until SIGINT/SIGTERM).
No store of its own: the broker's retained messages are the fleet's memory, and history is in
the telemetry database (the Grafana fleet dashboard, dashboards/grafana/ems-fleet.json).
"""
