"""Campus coordination: several agents (feeders) under one utility meter.

`allocate.py` splits the campus's import cap, ramp limit and demand target into one share per
feeder (pure); the coordinator process (`ems-agent coordinate`) reads the campus meter and the
agents' reports over MQTT and publishes each agent's signed share; the agents apply it
(agent/live/campus_link.py) or, without a valid one, the fallback share of their site file.
"""
